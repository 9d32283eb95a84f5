"""Bottleneck features from a Keras backbone; ``tlcourse.torch.features`` mirrors it.

>>> model = build_lite0()                                   # ImageNet weights
>>> train = extract_features(model, ds.train, size=96)     # (N, 1280), cached on disk
>>> probe = extract_features(model, ds.train, ["block4", "block7"], size=96)   # one pass, a dict

A *layer* is a block name of the backbone's block map below its ``head`` (for EfficientNet-Lite0:
``stem``, ``block1`` ... ``block7``, ``top``). Its features are the output of the block's last
layer averaged over height and width, one vector per image: at Lite0's ``top``, the output of
``top_pool``, the 1280-d vector the classifier reads. In a block map of your own without a
``head`` block, the last block holds the classifier, and its features are the classifier's input.

How it runs: a sub-model from ``model.inputs`` to those tensors (with global average pooling added
where they are still feature maps) is built once per call and applied batch by batch with
``training=False``, so BatchNorm uses its moving statistics and dropout is off.

Other backbones: pass ``blocks=`` (an ordered ``{name: [layers]}``, input to output), or register
the model once with :func:`register_backbone`, keyed by ``model.name`` (every Functional model
shares one class, so the PyTorch twin's key, the class, would not tell them apart).
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Iterator

import keras
import numpy as np

from tlcourse import features as shared
from tlcourse import lite0 as spec
from tlcourse.keras.lite0 import lite0_blocks
from tlcourse.keras.preprocess import preprocess as imagenet_preprocess
from tlcourse.stages import HEAD_BLOCK

__all__ = ["extract_features", "register_backbone"]


@dataclass(frozen=True)
class _Backbone:
    blocks: Callable[[keras.Model], "OrderedDict[str, list]"]
    input_size: int | None
    preprocess: Callable


_KNOWN: dict[str, _Backbone] = {}


def register_backbone(
    model_name: str, blocks: Callable, *, input_size: int | None = None, preprocess: Callable | None = None
) -> None:
    """Teach :func:`extract_features` the models called ``model_name`` (``model.name``).

    ``blocks(model)`` returns the ordered block map; ``input_size`` is used when ``size=None``;
    ``preprocess(images, size, gray_to_rgb=...)`` turns uint8 NHWC images into the model's input
    (default: ``tlcourse.keras.preprocess``, ImageNet mean/std).
    """
    _KNOWN[model_name] = _Backbone(blocks, input_size, preprocess or imagenet_preprocess)


register_backbone(spec.NAME, lite0_blocks, input_size=spec.INPUT_SIZE)


def _layers_of(block) -> list:
    block_layers = [block] if isinstance(block, keras.layers.Layer) else list(block)
    if not block_layers or not all(isinstance(layer, keras.layers.Layer) for layer in block_layers):
        raise TypeError(f"a block must be a Keras layer or a non-empty list of them, got {block!r}")
    return block_layers


def _classifier_of(block) -> keras.layers.Layer | None:
    """The classifier, when the block is the head: its last ``Dense`` layer, or its last weighted
    layer where that is a 1x1 convolution (Keras' MobileNetV3 classifies with one, named ``logits``)."""
    layers = _layers_of(block)
    weighted = [layer for layer in layers if layer.weights]
    if weighted and isinstance(weighted[-1], keras.layers.Conv2D) and tuple(weighted[-1].kernel_size) == (1, 1):
        return weighted[-1]
    dense = [layer for layer in layers if isinstance(layer, keras.layers.Dense)]
    return dense[-1] if dense else None


def _block_weights(blocks, classifier) -> Iterator[tuple[str, Iterator[np.ndarray]]]:
    """Per block, its variables (BatchNorm moving statistics too), classifier left out."""

    def arrays(block) -> Iterator[np.ndarray]:
        for layer in _layers_of(block):
            if layer is classifier:
                continue
            for variable in layer.weights:
                yield np.asarray(keras.ops.convert_to_numpy(variable))

    for name, block in blocks.items():
        yield name, arrays(block)


def _feature_model(model: keras.Model, blocks, wanted: list[str], head_name: str, classifier) -> keras.Model:
    outputs = {}
    for name in wanted:
        if name == head_name and classifier is not None:
            tensor = classifier.input
        else:
            tensor = _layers_of(blocks[name])[-1].output
        if len(tensor.shape) == 4:
            tensor = keras.layers.GlobalAveragePooling2D(name=f"{name}_features_pool")(tensor)
        elif len(tensor.shape) != 2:
            raise RuntimeError(f"cannot pool the output of {name!r}, shape {tensor.shape}, into vectors")
        outputs[name] = tensor
    return keras.Model(model.inputs, outputs, name=f"{model.name}_features")


def extract_features(
    backbone: keras.Model,
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
    known = _KNOWN.get(backbone.name)
    if blocks is None:
        if known is None:
            raise TypeError(
                f"no block map known for a model named {backbone.name!r}; pass blocks={{name: [layers], ...}} "
                "(input to output) or call tlcourse.keras.features.register_backbone first"
            )
        blocks = known.blocks(backbone)
    blocks = OrderedDict(blocks)
    has_head = blocks.pop(HEAD_BLOCK, None) is not None  # its output is logits, not features
    names = list(blocks)
    layers, single = shared.requested_layers(layer, names)
    images = shared.images_of(data)
    shared.check_channels(images, gray_to_rgb)
    if known is not None:
        default_size = known.input_size
    else:  # a fixed input size, as keras.applications models with their top have
        side = backbone.input_shape[1] if isinstance(backbone.input_shape, tuple) else None
        default_size = side if isinstance(side, int) else None
    size = shared.input_size(size, default_size, images)
    preprocess = known.preprocess if known else imagenet_preprocess
    head_name = names[-1]
    classifier = None if has_head else _classifier_of(blocks[head_name])
    feature_models: dict[tuple, keras.Model] = {}

    def weights(wanted: list[str]) -> dict[str, str]:
        deepest = max(wanted, key=names.index)
        return shared.weights_fingerprints(_block_weights(blocks, classifier), stop_after=deepest)

    def run_batch(batch: np.ndarray, wanted: list[str]) -> dict[str, np.ndarray]:
        key = tuple(wanted)
        if key not in feature_models:
            feature_models[key] = _feature_model(backbone, blocks, wanted, head_name, classifier)
        # predict_on_batch runs the compiled graph; calling the model eagerly, op by op, held
        # about 1.4 GiB more at 64 photos of 128 px (measured), over Binder's 2 GiB in chapter 03
        outputs = feature_models[key].predict_on_batch(preprocess(batch, size, gray_to_rgb=gray_to_rgb))
        return {name: np.asarray(outputs[name]) for name in wanted}

    found = shared.extract_cached(
        images,
        layers,
        framework="keras",
        backbone=backbone.name,
        size=size,
        preprocess=f"{preprocess.__module__}.{preprocess.__qualname__}",
        weights=weights,
        run_batch=run_batch,
        batch_size=batch_size,
        cache=cache,
        progress=progress,
    )
    return found[layers[0]] if single else found
