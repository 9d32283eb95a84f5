"""Train the upper blocks of a Keras EfficientNet-Lite0 on the cached output of its frozen lower ones.

Mirrors ``tlcourse.torch.cached``. When only the top blocks train, the frozen blocks below them
compute the same maps for an image in every epoch; on a CPU that is most of the time. Compute
them once with :func:`block_inputs` and train :func:`upper_blocks`, which shares its layers (and
their weights' names) with the whole model, so L2-SP, layer-wise learning rates and freezing work
on it unchanged, and the trained weights are the whole model's:

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

import keras
import numpy as np
import tensorflow as tf

from tlcourse.data.card import Split
from tlcourse.keras.freezing import _is_lite0
from tlcourse.keras.lite0 import LITE0_BLOCKS, lite0_blocks
from tlcourse.keras.preprocess import preprocess
from tlcourse.stages import resolve_blocks
from tlcourse.training import as_split

__all__ = ["upper_blocks", "block_inputs", "maps_transform", "pack_maps"]


def _input_of(model: keras.Model, block: str):
    """The tensor ``block`` reads: the output of the last layer of the block below it."""
    if not isinstance(model, keras.Model) or not _is_lite0(model):
        raise TypeError(f"upper_blocks and block_inputs work on EfficientNet-Lite0 (build_lite0), not on {model!r}")
    resolve_blocks(block, LITE0_BLOCKS)  # an unknown name raises, listing the known ones
    if block == "head":
        raise ValueError("the head reads pooled features, not maps: to train the head alone on features "
                         "computed once, use extract_features (chapter 03); pick 'top' or lower here")
    if block == LITE0_BLOCKS[0]:
        raise ValueError("nothing lies below the stem to cache; pick a higher block, e.g. 'block7'")
    below = lite0_blocks(model)[LITE0_BLOCKS[LITE0_BLOCKS.index(block) - 1]]
    return below[-1].output


def upper_blocks(model: keras.Model, block: str) -> keras.Model:
    """The part of ``model`` from ``block`` up to its head, taking ``block``'s input maps (NHWC).

    A Functional model on ``model``'s own layers, so training the result trains ``model``, and
    weight paths are the same as in ``model``.
    """
    return keras.Model(_input_of(model, block), model.output, name=model.name)


def block_inputs(model: keras.Model, data, block: str, *, size: int, gray_to_rgb: bool = False,
                 batch_size: int = 64) -> Split:
    """What ``block`` receives for every image of ``data`` (a Split or (images, labels)), in inference mode.

    Returns a Split with the same labels, whose "images" are the float32 maps packed losslessly
    into uint8 (see :func:`pack_maps`), so they travel through fit/evaluate like images: train and
    evaluate :func:`upper_blocks` on it with ``transform=maps_transform``.
    """
    lower = keras.Model(model.input, _input_of(model, block))
    split = as_split(data, "data")
    maps = [keras.ops.convert_to_numpy(lower(preprocess(split.images[start:start + batch_size], size,
                                                        gray_to_rgb=gray_to_rgb), training=False))
            for start in range(0, len(split), batch_size)]
    return Split(pack_maps(np.concatenate(maps)), split.labels)


def maps_transform(packed):
    """The ``transform`` for fit/evaluate/predict on :func:`block_inputs`: packed uint8 -> float32 NHWC maps.

    Written with ``tf`` ops (Keras has no bitcast), so it runs inside the tf.data pipeline.
    """
    _, pixels, _, width = packed.shape
    side = math.isqrt(pixels)
    maps = tf.bitcast(tf.reshape(packed, (-1, pixels, width // 4, 4)), tf.float32)
    return tf.reshape(maps, (-1, side, side, width // 4))


def pack_maps(maps: np.ndarray) -> np.ndarray:
    """Float32 maps (N, side, side, C) as uint8 (N, side*side, 1, 4*C): their bytes, unchanged.

    A Split holds uint8 NHWC arrays; this layout also keeps clear of fit's channels-first check.
    """
    count, side, width, channels = maps.shape
    if side != width or side * width < 2:
        raise ValueError(f"expected square maps of at least 2x2 pixels, got {side}x{width}; use a larger size")
    return np.ascontiguousarray(maps, dtype=np.float32).reshape(count, side * width, 1, channels).view(np.uint8)
