"""Bottleneck features from a PyTorch backbone; ``tlcourse.keras.features`` mirrors it.

>>> model = build_lite0()                                   # ImageNet weights
>>> train = extract_features(model, ds.train, size=96)     # (N, 1280), cached on disk
>>> probe = extract_features(model, ds.train, ["block4", "block7"], size=96)   # one pass, a dict

A *layer* is a block name of the backbone's block map below its ``head`` (for EfficientNet-Lite0:
``stem``, ``block1`` ... ``block7``, ``top``). Its features are the block's output averaged over
height and width, one vector per image: at ``top``, the pooled vector the classifier reads (1280
numbers for Lite0). In a block map of your own without a ``head`` block, the last block holds the
classifier, and its features are the classifier's input.

How it runs: the model is put in eval mode (restored afterwards), forward hooks catch the
requested blocks' outputs, and the pass stops as soon as the deepest one has been seen, all under
``torch.inference_mode``. Hooks rather than re-running the blocks by hand mean any backbone works
whose block map names the modules its own ``forward`` calls.

Other backbones: pass ``blocks=`` (an ordered ``{name: module or [modules]}``, input to output), or
register the model class once with :func:`register_backbone`, giving its block map, input size
and preprocessing.
"""
from __future__ import annotations

import itertools
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch
from torch import nn

from tlcourse import features as shared
from tlcourse import lite0 as spec
from tlcourse.stages import HEAD_BLOCK
from tlcourse.torch.lite0 import EfficientNetLite0, lite0_blocks
from tlcourse.torch.preprocess import preprocess as imagenet_preprocess

__all__ = ["extract_features", "register_backbone"]


@dataclass(frozen=True)
class _Backbone:
    blocks: Callable[[nn.Module], "OrderedDict[str, nn.Module]"]
    input_size: int | None
    preprocess: Callable


_KNOWN: dict[type, _Backbone] = {}


def register_backbone(
    model_type: type, blocks: Callable, *, input_size: int | None = None, preprocess: Callable | None = None
) -> None:
    """Teach :func:`extract_features` a model class (and its subclasses).

    ``blocks(model)`` returns the ordered block map; ``input_size`` is used when ``size=None``;
    ``preprocess(images, size, gray_to_rgb=...)`` turns uint8 NHWC images into the model's input
    (default: ``tlcourse.torch.preprocess``, ImageNet mean/std). The Keras twin keys on
    ``model.name`` instead of a class, as every Keras Functional model shares one class.
    """
    _KNOWN[model_type] = _Backbone(blocks, input_size, preprocess or imagenet_preprocess)


register_backbone(EfficientNetLite0, lite0_blocks, input_size=spec.INPUT_SIZE)


class _AllCaptured(Exception):
    """Raised from a hook once every requested block has been seen, to skip the rest of the net."""


def _known_backbone(model: nn.Module) -> _Backbone | None:
    for cls in type(model).__mro__:
        if cls in _KNOWN:
            return _KNOWN[cls]
    return None


def _modules_of(block) -> list[nn.Module]:
    modules = [block] if isinstance(block, nn.Module) else list(block)
    if not modules or not all(isinstance(m, nn.Module) for m in modules):
        raise TypeError(f"a block must be an nn.Module or a list of them, got {block!r}")
    return modules


def _classifier_of(block) -> nn.Linear | None:
    """The last ``nn.Linear`` inside a block: the classifier, when the block is the head."""
    linears = [m for top in _modules_of(block) for m in top.modules() if isinstance(m, nn.Linear)]
    return linears[-1] if linears else None


def _pooled(tensor: torch.Tensor) -> np.ndarray:
    if tensor.dim() == 4:  # (N, C, H, W): global average pooling
        tensor = tensor.mean(dim=(2, 3))
    elif tensor.dim() != 2:
        raise RuntimeError(f"cannot pool a feature map of shape {tuple(tensor.shape)} into vectors")
    return tensor.float().cpu().numpy()


def _as_numpy(tensor: torch.Tensor) -> np.ndarray:
    tensor = tensor.detach().cpu().contiguous()
    if tensor.dtype == torch.bfloat16:  # numpy has no bfloat16; hash the same bytes as int16
        tensor = tensor.view(torch.int16)
    return tensor.numpy()


def _block_weights(blocks, classifier: nn.Module | None) -> Iterator[tuple[str, Iterator[np.ndarray]]]:
    """Per block, its parameters and buffers (BatchNorm statistics too), classifier left out."""

    def arrays(block) -> Iterator[np.ndarray]:
        for module in itertools.chain.from_iterable(m.modules() for m in _modules_of(block)):
            if module is classifier:
                continue
            for tensor in itertools.chain(module.parameters(recurse=False), module.buffers(recurse=False)):
                yield _as_numpy(tensor)

    for name, block in blocks.items():
        yield name, arrays(block)


def _device_and_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    for parameter in model.parameters():
        return parameter.device, parameter.dtype
    return torch.device("cpu"), torch.float32


def extract_features(
    backbone: nn.Module,
    data,
    layer="top",
    *,
    size: int | None = None,
    batch_size: int = 64,
    cache: bool = True,
    progress: bool = True,
    gray_to_rgb: bool = False,
    blocks=None,
):
    """Global-average-pooled activations of ``backbone`` at ``layer``, one row per image.

    ``data``: a ``Split`` (``ds.train``) or uint8 images ``(N, H, W, 3)``. ``layer``: a block name
    (``"stem"``, ``"block1"`` ... ``"block7"``, ``"top"`` for Lite0), or a list of them to get a
    ``{name: features}`` dict from a single pass. ``size``: images are resized to ``size`` x
    ``size`` (default: the backbone's input size, 224 for Lite0; smaller is much faster on a CPU).
    ``gray_to_rgb=True`` copies grey images into R, G and B (the network expects colour).
    ``cache``: reuse and store results under ``tlcourse.cache_dir("features")``; a change to the
    weights, the images, the layer or the size is a different entry. ``blocks``: a block map for a
    backbone :func:`register_backbone` does not know.

    Returns float32 ``(N, C)``: ``C`` is 1280 at Lite0's ``top``, the block's channels elsewhere.
    """
    known = _known_backbone(backbone)
    if blocks is None:
        if known is None:
            raise TypeError(
                f"no block map known for {type(backbone).__name__}; pass blocks={{name: module, ...}} "
                "(input to output) or call tlcourse.torch.features.register_backbone first"
            )
        blocks = known.blocks(backbone)
    blocks = OrderedDict(blocks)
    has_head = blocks.pop(HEAD_BLOCK, None) is not None  # its output is logits, not features
    names = list(blocks)
    layers, single = shared.requested_layers(layer, names)
    images = shared.images_of(data)
    shared.check_channels(images, gray_to_rgb)
    size = shared.input_size(size, known.input_size if known else None, images)
    preprocess = known.preprocess if known else imagenet_preprocess
    head_name = names[-1]
    classifier = None if has_head else _classifier_of(blocks[head_name])
    device, dtype = _device_and_dtype(backbone)

    def weights(wanted: list[str]) -> dict[str, str]:
        deepest = max(wanted, key=names.index)
        return shared.weights_fingerprints(_block_weights(blocks, classifier), stop_after=deepest)

    def run_batch(batch: np.ndarray, wanted: list[str]) -> dict[str, np.ndarray]:
        captured: dict[str, np.ndarray] = {}

        def keep(name: str, tensor: torch.Tensor) -> None:
            captured.setdefault(name, _pooled(tensor))
            if len(captured) == len(wanted):
                raise _AllCaptured

        handles = []
        for name in wanted:
            if name == head_name and classifier is not None:
                hook = (lambda name: lambda module, inputs: keep(name, inputs[0]))(name)
                handles.append(classifier.register_forward_pre_hook(hook))
            else:
                hook = (lambda name: lambda module, inputs, output: keep(name, output))(name)
                handles.append(_modules_of(blocks[name])[-1].register_forward_hook(hook))
        x = preprocess(batch, size, gray_to_rgb=gray_to_rgb).to(device=device, dtype=dtype)
        try:
            with torch.inference_mode():
                backbone(x)
        except _AllCaptured:
            pass
        finally:
            for handle in handles:
                handle.remove()
        never_ran = [name for name in wanted if name not in captured]
        if never_ran:
            raise RuntimeError(
                f"blocks {never_ran} never ran in {type(backbone).__name__}.forward; is the block map right?"
            )
        return captured

    modes = [(module, module.training) for module in backbone.modules()]
    backbone.eval()
    try:
        found = shared.extract_cached(
            images,
            layers,
            framework="torch",
            backbone=type(backbone).__name__,
            size=size,
            preprocess=f"{preprocess.__module__}.{preprocess.__qualname__}",
            weights=weights,
            run_batch=run_batch,
            batch_size=batch_size,
            cache=cache,
            progress=progress,
        )
    finally:
        for module, training in modes:
            module.training = training
    return found[layers[0]] if single else found
