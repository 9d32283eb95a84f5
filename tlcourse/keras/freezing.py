"""Freeze and unfreeze a Keras backbone by named blocks; mirrors ``tlcourse.torch.freezing``.

Freezing sets ``layer.trainable = False`` layer by layer (the model itself stays trainable, so
unfrozen layers inside it do train). In Keras 3 a BatchNormalization layer with
``trainable=False`` also runs in inference mode, using and keeping its moving statistics.
``fit`` compiles the model on every call, so changes made here take effect at the next ``fit``;
with ``model.fit`` directly, call ``model.compile`` again after freezing or unfreezing.
"""
from __future__ import annotations

import math
from collections import OrderedDict

import keras

from tlcourse.keras.lite0 import block_of_layer, lite0_blocks
from tlcourse.stages import BlockCount, BlockSpec, ParameterTable, resolve_blocks

SUPPORTED_MODELS = (
    "EfficientNet-Lite0 (tlcourse.keras.build_lite0)",
    "the catalogue backbones of tlcourse.keras.backbone(name): ResNet50, VGG16, EfficientNetB0, "
    "MobileNetV3Small",
)

__all__ = ["blocks", "freeze", "unfreeze", "summary"]


def _is_lite0(model) -> bool:
    named = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    try:
        return bool(named) and all(block_of_layer(layer.name) for layer in named)
    except ValueError:
        return False


def blocks(model: keras.Model) -> "OrderedDict[str, list]":
    """Block name -> its layers, input to output (``stem``, ``block1`` ... ``block7``, ``top`` for Lite0;
    the other catalogue backbones' names are in ``tlcourse.zoo``)."""
    if not isinstance(model, keras.Model):
        raise TypeError(f"expected a keras.Model, got a {type(model).__name__}")
    if _is_lite0(model):
        return lite0_blocks(model)
    from tlcourse.keras.backbones import backbone_blocks

    catalogued = backbone_blocks(model)
    if catalogued is not None:
        return catalogued
    if isinstance(model, keras.Sequential) and any(_is_lite0(layer) for layer in model.layers
                                                      if isinstance(layer, keras.Model)):
        raise TypeError(
            "this Sequential model wraps the backbone as one layer, so its blocks cannot be reached; "
            "build the new head the Functional way instead: tlcourse.keras.swap_head(base, num_classes)"
        )
    raise TypeError(
        f"tlcourse does not know the blocks of the model {model.name!r}; "
        f"supported models: {', '.join(SUPPORTED_MODELS)}"
    )


_block_map = blocks  # unfreeze's ``blocks`` argument shadows the function


def freeze(model: keras.Model) -> keras.Model:
    """Freeze every layer of ``model``; returns the model."""
    # model.trainable = True sets every layer's flag too, so open the container first, then close
    # the layers: later unfreezing one layer is then enough to train it.
    model.trainable = True
    for layers in _block_map(model).values():
        for layer in layers:
            layer.trainable = False
    return model


def unfreeze(model: keras.Model, blocks: BlockSpec = "head", train_batchnorm: bool = False) -> keras.Model:
    """Make the layers of the chosen blocks trainable; other blocks keep their state.

    blocks: ``"head"`` (the classifier alone); a block name such as ``"block6"``, meaning that block and every block above
        it; ``"all"``; an int ``n`` for the last ``n`` blocks; or a list of names for exactly those.
    train_batchnorm: by default BatchNormalization stays frozen inside unfrozen blocks (not trained,
        and in inference mode, so its moving statistics do not move). ``True`` trains it as well.
    """
    block_map = _block_map(model)
    if not model.trainable:
        # model.trainable = False (the usual Keras recipe) freezes every layer; undo that at the
        # container level only, so the other blocks stay frozen.
        model.trainable = True
        for layers in block_map.values():
            for layer in layers:
                layer.trainable = False
    for name in resolve_blocks(blocks, tuple(block_map)):
        for layer in block_map[name]:
            if isinstance(layer, keras.layers.BatchNormalization) and not train_batchnorm:
                layer.trainable = False
                continue
            layer.trainable = True
    return model


def _parameters(layer) -> list:
    """The layer's weights a gradient can reach (BatchNorm's moving statistics left out).

    ``weight.trainable`` cannot tell: setting ``layer.trainable`` flips it on every parameter.
    Keras keeps the layer's parameters in ``_trainable_variables`` whatever the flag says.
    """
    return [weight for sub in layer._flatten_layers() for weight in sub._trainable_variables]


def summary(model: keras.Model) -> ParameterTable:
    """Trainable and frozen parameters per block, as a table (``print(summary(model))``).

    Unlike ``model.summary()``'s "non-trainable params", BatchNorm's moving statistics are not
    counted, so the numbers equal ``tlcourse.torch.summary`` on the PyTorch twin.
    """
    rows = []
    for name, layers in _block_map(model).items():
        trainable = frozen = 0
        for layer in layers:
            count = sum(math.prod(weight.shape) for weight in _parameters(layer))
            if model.trainable and layer.trainable:
                trainable += count
            else:
                frozen += count
        rows.append(BlockCount(name, trainable, frozen))
    return ParameterTable(rows)


def trainable_flags(model: keras.Model) -> tuple:
    """The model's and each layer's ``trainable``, to put back later with :func:`restore_trainable_flags`."""
    return model.trainable, [layer.trainable for layer in model.layers]


def restore_trainable_flags(model: keras.Model, flags: tuple) -> None:
    container, layer_flags = flags
    model.trainable = True  # opens every layer; then each gets its own flag back
    for layer, flag in zip(model.layers, layer_flags):
        layer.trainable = flag
    if not container:
        model.trainable = False
