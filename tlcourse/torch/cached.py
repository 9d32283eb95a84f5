"""Train the upper blocks of a PyTorch EfficientNet-Lite0 on the cached output of its frozen lower ones.

Mirrors ``tlcourse.keras.cached``. When only the top blocks train, the frozen blocks below them
compute the same maps for an image in every epoch; on a CPU that is most of the time. Compute
them once with :func:`block_inputs` and train :func:`upper_blocks`, which shares its parameters
(and their names) with the whole model, so L2-SP, layer-wise learning rates and freezing work on it
unchanged, and the trained weights are the whole model's:

>>> upper = upper_blocks(model, "block7")                           # block7, top and the head
>>> train = block_inputs(model, ds.train, "block7", size=64)        # once: float maps + labels
>>> test = block_inputs(model, ds.test, "block7", size=64)
>>> fit(upper, train, epochs=5, transform=maps_transform, penalty=L2SP(model))
>>> evaluate(upper, test, transform=maps_transform)

Only valid while the lower blocks stay frozen, BatchNorm included (their output must not change)
and without augmentation of the images (the maps were computed from the originals).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from tlcourse.data.card import Split
from tlcourse.stages import resolve_blocks
from tlcourse.torch.lite0 import LITE0_BLOCKS, LITE0_MODULES, EfficientNetLite0
from tlcourse.torch.preprocess import preprocess
from tlcourse.training import as_split

__all__ = ["upper_blocks", "block_inputs", "maps_transform", "pack_maps"]


def _check_split_point(model, block: str) -> None:
    if not isinstance(model, EfficientNetLite0):
        raise TypeError(f"upper_blocks and block_inputs work on EfficientNet-Lite0 (build_lite0), "
                        f"not on a {type(model).__name__}")
    resolve_blocks(block, LITE0_BLOCKS)  # an unknown name raises, listing the known ones
    if block == "head":
        raise ValueError("the head reads pooled features, not maps: to train the head alone on features "
                         "computed once, use extract_features (chapter 03); pick 'top' or lower here")
    if block == LITE0_BLOCKS[0]:
        raise ValueError("nothing lies below the stem to cache; pick a higher block, e.g. 'block7'")


def upper_blocks(model: EfficientNetLite0, block: str) -> EfficientNetLite0:
    """The part of ``model`` from ``block`` up to its head, taking ``block``'s input maps (NCHW).

    The blocks below become ``nn.Identity``; the others are ``model``'s own modules, so training
    the result trains ``model``, and parameter names are the same as in ``model``.
    """
    _check_split_point(model, block)
    first = LITE0_MODULES.index(block)
    upper = EfficientNetLite0.__new__(EfficientNetLite0)
    nn.Module.__init__(upper)  # an empty shell: no throw-away random network
    upper.num_classes = model.num_classes
    for index, name in enumerate(LITE0_MODULES):
        upper.add_module(name, getattr(model, name) if index >= first else nn.Identity())
    upper.train(model.training)
    return upper


def block_inputs(model: EfficientNetLite0, data, block: str, *, size: int, gray_to_rgb: bool = False,
                 batch_size: int = 64) -> Split:
    """What ``block`` receives for every image of ``data`` (a Split or (images, labels)), in eval mode.

    Returns a Split with the same labels, whose "images" are the float32 maps packed losslessly
    into uint8 (see :func:`pack_maps`), so they travel through fit/evaluate like images: train and
    evaluate :func:`upper_blocks` on it with ``transform=maps_transform``.
    """
    _check_split_point(model, block)
    split = as_split(data, "data")
    lower = nn.Sequential(*(getattr(model, name) for name in LITE0_MODULES[:LITE0_MODULES.index(block)]))
    device = next(model.parameters()).device
    was_training = [(module, module.training) for module in lower.modules()]
    lower.eval()
    maps = []
    try:
        with torch.inference_mode():
            for start in range(0, len(split), batch_size):
                batch = preprocess(split.images[start:start + batch_size], size, gray_to_rgb=gray_to_rgb)
                maps.append(lower(batch.to(device)).permute(0, 2, 3, 1).float().cpu().numpy())
    finally:
        for module, training in was_training:
            module.training = training
    return Split(pack_maps(np.concatenate(maps)), split.labels)


def maps_transform(packed: np.ndarray) -> torch.Tensor:
    """The ``transform`` for fit/evaluate/predict on :func:`block_inputs`: packed uint8 -> float32 NCHW maps."""
    count, pixels, _, width = packed.shape
    side = math.isqrt(pixels)
    maps = np.ascontiguousarray(packed).view(np.float32).reshape(count, side, side, width // 4)
    return torch.from_numpy(maps).permute(0, 3, 1, 2)


def pack_maps(maps: np.ndarray) -> np.ndarray:
    """Float32 maps (N, side, side, C) as uint8 (N, side*side, 1, 4*C): their bytes, unchanged.

    A Split holds uint8 NHWC arrays; this layout also keeps clear of fit's channels-first check.
    """
    count, side, width, channels = maps.shape
    if side != width or side * width < 2:
        raise ValueError(f"expected square maps of at least 2x2 pixels, got {side}x{width}; use a larger size")
    return np.ascontiguousarray(maps, dtype=np.float32).reshape(count, side * width, 1, channels).view(np.uint8)
