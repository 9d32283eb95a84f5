"""Layer-wise learning rates for PyTorch: early blocks learn slower than the top, or not at all.

Mirrors ``tlcourse.keras.layerwise``. The early blocks of a pretrained network hold the most
general features, so fine-tuning moves them least. :func:`layerwise_optimizer` gives each block
its own learning rate, ``lr`` times the block's factor, and ``fit`` accepts the result:

>>> unfreeze(model, "block6")                                  # block6, block7, top train
>>> opt = layerwise_optimizer(model, 1e-3, 0.1)                # top 1e-3, block7 1e-4, block6 1e-5
>>> opt = layerwise_optimizer(model, 1e-3, {"block6": 0, "block7": 0.1})   # block6 stays still
>>> fit(model, ds.train, ds.val, epochs=3, optimizer=opt)
"""
from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from tlcourse.stages import block_lr_factors
from tlcourse.torch.freezing import blocks
from tlcourse.torch.train import _adam

__all__ = ["block_param_groups", "layerwise_optimizer"]


def block_param_groups(model: nn.Module, lr: float, lr_decay: float | None = None) -> list[dict]:
    """Optimizer parameter groups, one per block with trainable parameters, top block first.

    The top trainable block learns at ``lr``, each block below at ``lr_decay`` times the one
    above (discriminative learning rates); ``lr_decay=None`` gives them all ``lr``. Each group
    carries a ``"block"`` key naming its block.
    """
    block_map = blocks(model)
    trainable = {name: [p for p in module.parameters() if p.requires_grad] for name, module in block_map.items()}
    trainable = {name: params for name, params in trainable.items() if params}
    factors = block_lr_factors(tuple(trainable), tuple(block_map), lr_decay)
    return [{"params": trainable[name], "lr": lr * factors[name], "block": name}
            for name in reversed(block_map) if name in trainable]


def layerwise_optimizer(
    model: nn.Module,
    lr: float,
    factors: float | Mapping[str, float],
    optimizer: str = "adam",
    *,
    weight_decay: float = 0.0,
    momentum: float = 0.9,
    nesterov: bool = False,
) -> torch.optim.Optimizer:
    """An optimizer over ``model``'s trainable parameters with one learning rate per block.

    factors: a float ``d`` in (0, 1]: the top trainable block learns at ``lr`` and each block
        below at ``d`` times the one above (as ``fit_staged(lr_decay=d)``); or a dict
        ``{block name: factor}``, factors >= 0, where 0 keeps a block where it is (its gradients
        are computed but it does not move) and a trainable block left out gets 1.
    optimizer: ``"adam"`` (``AdamW`` with ``weight_decay``, decayed at each block's own rate) or
        ``"sgd"`` with ``momentum`` and ``nesterov``.

    Returns a ``torch.optim.Optimizer`` whose parameter groups carry a ``"block"`` key, top first;
    pass it as ``fit(..., optimizer=opt)``. Freeze or unfreeze first: only parameters that train
    when it is built are in it.
    """
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr!r}")
    groups = block_param_groups(model, lr, factors)
    if not groups:
        raise ValueError("every parameter is frozen, so there is nothing to train; unfreeze some blocks first")
    if optimizer == "adam":
        return _adam(groups, lr, weight_decay)
    if optimizer == "sgd":
        if weight_decay:
            raise ValueError("layerwise_optimizer(optimizer='sgd') takes no weight_decay; use 'adam' (AdamW) for it")
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov)
    raise ValueError(f"unknown optimizer {optimizer!r}; use 'adam' or 'sgd'")
