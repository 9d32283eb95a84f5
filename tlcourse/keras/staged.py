"""Staged unfreezing for Keras: train the top first, then unfreeze further down, stage by stage.

Mirrors ``tlcourse.torch.staged``. Which blocks train in each stage comes from
``tlcourse.stages`` (shared by both frameworks); ``fit`` recompiles the model for every stage, so
each stage's optimizer sees exactly the weights it unfreezes, and the History's epochs keep
counting across stages.
"""
from __future__ import annotations

from typing import Sequence

import keras

from tlcourse.history import History
from tlcourse.keras.freezing import blocks, freeze, unfreeze
from tlcourse.keras.layerwise import layerwise_optimizer
from tlcourse.keras.train import fit
from tlcourse.stages import Stage, check_staged_arguments, resolve_blocks

__all__ = ["Stage", "apply_stage", "fit_staged", "DEFAULT_STAGES"]

DEFAULT_STAGES = (Stage("head", epochs=2, lr=1e-3), Stage("block7", epochs=2, lr=1e-4))


def apply_stage(model: keras.Model, stage: Stage, train_batchnorm: bool = False) -> tuple[str, ...]:
    """Freeze everything, then unfreeze the stage's blocks; returns those blocks' names."""
    freeze(model)
    unfreeze(model, stage.blocks, train_batchnorm=train_batchnorm)
    return resolve_blocks(stage.blocks, tuple(blocks(model)))


def fit_staged(
    model: keras.Model,
    train,
    val=None,
    stages: Sequence[Stage] = DEFAULT_STAGES,
    *,
    train_batchnorm: bool = False,
    lr_decay: float | None = None,
    optimizer: str = "adam",
    history: History | None = None,
    **fit_kwargs,
) -> History:
    """Train in stages: for each :class:`Stage`, freeze all, unfreeze its blocks, recompile and fit.

    The same arguments as ``tlcourse.torch.fit_staged``; other keyword arguments go to
    ``tlcourse.keras.fit``. With ``lr_decay`` each stage's optimizer comes from
    :func:`tlcourse.keras.layerwise.layerwise_optimizer`.

    Returns the History, epochs numbered on across stages, each row's ``stage`` the stage's label.
    """
    stages = check_staged_arguments(stages, optimizer, fit_kwargs)
    for stage in stages:
        if stage.epochs == 0:
            continue
        apply_stage(model, stage, train_batchnorm)
        opt = _stage_optimizer(model, stage, optimizer, lr_decay, fit_kwargs) if lr_decay is not None else optimizer
        history = fit(model, train, val, stage.epochs, lr=stage.lr, optimizer=opt, stage=stage.label,
                      history=history, **fit_kwargs)
    return history if history is not None else History(meta={"framework": "keras"})


def _stage_optimizer(model, stage: Stage, optimizer: str, lr_decay: float, fit_kwargs: dict):
    # the options fit() would have given a named optimizer; fit ignores them for a ready-made one
    return layerwise_optimizer(model, stage.lr, lr_decay, optimizer, weight_decay=fit_kwargs.get("weight_decay", 0.0),
                               momentum=fit_kwargs.get("momentum", 0.9), nesterov=fit_kwargs.get("nesterov", False))
