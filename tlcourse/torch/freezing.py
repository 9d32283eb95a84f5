"""Freeze and unfreeze a PyTorch backbone by named blocks; ``tlcourse.keras.freezing`` mirrors it.

Freezing sets ``requires_grad=False``. Layers whose parameters are all frozen (BatchNorm layers,
whole frozen blocks with their stochastic depth) are put back in eval mode by
``tlcourse.torch.fit`` every epoch, so they compute what they were pretrained to compute and
BatchNorm keeps its statistics (Keras' ``trainable=False`` behaviour). A hand-written loop that
calls ``model.train()`` must call :func:`keep_frozen_layers_in_eval` after it, or BatchNorm will
keep updating its statistics.
"""
from __future__ import annotations

from collections import OrderedDict

from torch import nn

from tlcourse.stages import BlockCount, BlockSpec, ParameterTable, resolve_blocks
from tlcourse.torch.lite0 import EfficientNetLite0, lite0_blocks

SUPPORTED_MODELS = (
    "EfficientNet-Lite0 (tlcourse.torch.build_lite0)",
    "the catalogue backbones of tlcourse.torch.backbone(name): torchvision ResNet, VGG, EfficientNet-B*, "
    "MobileNetV3-Small",
)

__all__ = ["blocks", "freeze", "unfreeze", "summary"]


def blocks(model: nn.Module) -> "OrderedDict[str, nn.Module]":
    """Block name -> module, input to output (``stem``, ``block1`` ... ``block7``, ``top`` for Lite0;
    the other catalogue backbones' names are in ``tlcourse.zoo``)."""
    if isinstance(model, EfficientNetLite0):
        return lite0_blocks(model)
    from tlcourse.torch.backbones import backbone_blocks

    catalogued = backbone_blocks(model)
    if catalogued is not None:
        return catalogued
    raise TypeError(
        f"tlcourse does not know the blocks of a {type(model).__name__}; "
        f"supported models: {', '.join(SUPPORTED_MODELS)}"
    )


def _is_batchnorm(module: nn.Module) -> bool:
    return isinstance(module, nn.modules.batchnorm._BatchNorm)


def keep_frozen_layers_in_eval(model: nn.Module) -> None:
    """After ``model.train()``, put every layer whose parameters are all frozen back in eval mode.

    ``model.train()`` switches every layer to training mode: a BatchNorm layer then normalises with
    the batch's statistics and overwrites its running ones, and a block's stochastic depth drops
    residual branches at random, even when their weights are frozen. A frozen layer should compute
    what it was pretrained to compute, as Keras runs a layer with trainable=False. Layers without
    parameters (a head's dropout) follow the layer that holds them.
    """
    for module in model.modules():
        params = list(module.parameters())
        if params and not any(p.requires_grad for p in params):
            module.eval()


_block_map = blocks  # unfreeze's ``blocks`` argument shadows the function


def freeze(model: nn.Module) -> nn.Module:
    """Freeze every parameter of ``model``; returns the model."""
    blocks(model)  # the same "unsupported model" error as the rest of this module
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def unfreeze(model: nn.Module, blocks: BlockSpec = "head", train_batchnorm: bool = False) -> nn.Module:
    """Make the parameters of the chosen blocks trainable; other blocks keep their state.

    blocks: ``"head"`` (the classifier alone); a block name such as ``"block6"``, meaning that block and every block above
        it; ``"all"``; an int ``n`` for the last ``n`` blocks; or a list of names for exactly those.
    train_batchnorm: by default BatchNorm stays frozen inside unfrozen blocks (its scale and shift
        are not trained and ``fit`` keeps it in eval mode, so its running statistics do not move),
        which is what fine-tuning on a small dataset wants. ``True`` trains it as well.
    """
    block_map = _block_map(model)
    for name in resolve_blocks(blocks, tuple(block_map)):
        for module in block_map[name].modules():
            if _is_batchnorm(module) and not train_batchnorm:
                continue
            for parameter in module.parameters(recurse=False):
                parameter.requires_grad_(True)
    return model


def summary(model: nn.Module) -> ParameterTable:
    """Trainable and frozen parameters per block, as a table (``print(summary(model))``)."""
    rows = []
    for name, block in _block_map(model).items():
        trainable = sum(p.numel() for p in block.parameters() if p.requires_grad)
        frozen = sum(p.numel() for p in block.parameters() if not p.requires_grad)
        rows.append(BlockCount(name, trainable, frozen))
    return ParameterTable(rows)


def trainable_flags(model: nn.Module) -> list[bool]:
    """Each parameter's ``requires_grad``, to put back later with :func:`restore_trainable_flags`."""
    return [parameter.requires_grad for parameter in model.parameters()]


def restore_trainable_flags(model: nn.Module, flags: list[bool]) -> None:
    for parameter, flag in zip(model.parameters(), flags):
        parameter.requires_grad_(flag)
