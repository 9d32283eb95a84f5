"""Staged unfreezing for PyTorch: train the top first, then unfreeze further down, stage by stage.

Mirrors ``tlcourse.keras.staged``. Which blocks train in each stage comes from
``tlcourse.stages`` (shared by both frameworks); each stage gets a fresh optimizer over exactly the
parameters it unfreezes, and the History's epochs keep counting across stages.
"""
from __future__ import annotations

from typing import Sequence

from torch import nn

from tlcourse.history import History
from tlcourse.stages import Stage, resolve_blocks, run_stages
from tlcourse.torch.freezing import blocks, freeze, unfreeze
from tlcourse.torch.layerwise import layerwise_optimizer
from tlcourse.torch.train import fit

__all__ = ["Stage", "apply_stage", "fit_staged", "DEFAULT_STAGES"]

DEFAULT_STAGES = (Stage("head", epochs=2, lr=1e-3), Stage("block7", epochs=2, lr=1e-4))


def apply_stage(model: nn.Module, stage: Stage, train_batchnorm: bool = False) -> tuple[str, ...]:
    """Freeze everything, then unfreeze the stage's blocks; returns those blocks' names."""
    freeze(model)
    unfreeze(model, stage.blocks, train_batchnorm=train_batchnorm)
    return resolve_blocks(stage.blocks, tuple(blocks(model)))


def fit_staged(
    model: nn.Module,
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
    """Train in stages: for each :class:`Stage`, freeze all, unfreeze its blocks, and ``fit``.

    stages: e.g. ``[Stage("head", 2, 1e-3), Stage("block7", 2, 1e-4), Stage("block6", 2, 1e-5)]``;
        a single block name means that block and everything above it.
    train_batchnorm: also train BatchNorm in the unfrozen blocks (default: keep it frozen).
    lr_decay: discriminative learning rates: within a stage the top trainable block uses the
        stage's ``lr`` and each block below gets ``lr_decay`` times the rate of the one above.
    optimizer: ``"adam"`` or ``"sgd"``, built afresh for every stage over the unfrozen parameters.
    history: a History to continue; other keyword arguments go to ``tlcourse.torch.fit``
        (``batch_size``, ``seed``, ``schedule``, ``weight_decay``, ``progress`` ...).

    Returns the History, epochs numbered on across stages, each row's ``stage`` the stage's label.
    """
    return run_stages(model, train, val, stages, framework="torch", apply_stage=apply_stage, fit=fit,
                      layerwise_optimizer=layerwise_optimizer, train_batchnorm=train_batchnorm, lr_decay=lr_decay,
                      optimizer=optimizer, history=history, fit_kwargs=fit_kwargs)
