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
from tlcourse.stages import Stage, resolve_blocks, run_stages

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
    return run_stages(model, train, val, stages, framework="keras", apply_stage=apply_stage, fit=fit,
                      layerwise_optimizer=layerwise_optimizer, train_batchnorm=train_batchnorm, lr_decay=lr_decay,
                      optimizer=optimizer, history=history, fit_kwargs=fit_kwargs)

