"""tlcourse for PyTorch. Importing this module imports torch; ``tlcourse.keras`` mirrors its names."""
from tlcourse._coexist import load_triton_before_tensorflow as _load_triton_first

_load_triton_first()
import sys as _sys

import torch as _torch

from tlcourse.config import cache_dir as _cache_dir
from tlcourse.config import when_seeded as _when_seeded

# torchvision and torch.hub keep downloaded weights under the course's one cache root.
_torch.hub.set_dir(str(_cache_dir("torch")))
_when_seeded(_torch.manual_seed)

# Public names, one line per module; tlcourse.keras exports the same ones.
from tlcourse.torch.lite0 import LITE0_BLOCKS, build_lite0, lite0_blocks  # noqa: E402,F401
from tlcourse.torch.preprocess import preprocess  # noqa: E402,F401
from tlcourse.torch.train import evaluate, fit, predict  # noqa: E402,F401
from tlcourse.torch.features import extract_features, register_backbone  # noqa: E402,F401
from tlcourse.torch.freezing import blocks, freeze, restore_trainable_flags, summary, trainable_flags, unfreeze  # noqa: E402,F401
from tlcourse.torch.heads import swap_head  # noqa: E402,F401
from tlcourse.torch.staged import Stage, apply_stage, fit_staged  # noqa: E402,F401
from tlcourse.torch.conservative import L2, L2SP  # noqa: E402,F401
from tlcourse.torch.layerwise import layerwise_optimizer  # noqa: E402,F401
from tlcourse.torch.cached import block_inputs, maps_transform, upper_blocks  # noqa: E402,F401
from tlcourse.torch.backbones import backbone, backbone_preprocess  # noqa: E402,F401
from tlcourse.torch.zoo import count_gflops, imagenet_metadata, measure_latency, weight_layers, zoo_table  # noqa: E402,F401
from tlcourse.torch.dann import DANN, GradientReversal, build_dann, build_dann_digits, dann_features, fit_dann, reverse_gradient  # noqa: E402,F401

from tlcourse import frameworks as _frameworks  # noqa: E402

_frameworks.register(lambda model: isinstance(model, _torch.nn.Module), _sys.modules[__name__])
