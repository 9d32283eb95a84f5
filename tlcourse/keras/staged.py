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
from tlcourse.keras.train import fit
from tlcourse.stages import Stage, block_lr_factors, check_staged_arguments, resolve_blocks

__all__ = ["Stage", "apply_stage", "block_rate_optimizer", "fit_staged", "DEFAULT_STAGES"]

DEFAULT_STAGES = (Stage("top", epochs=2, lr=1e-3), Stage("block7", epochs=2, lr=1e-4))


def apply_stage(model: keras.Model, stage: Stage, train_batchnorm: bool = False) -> tuple[str, ...]:
    """Freeze everything, then unfreeze the stage's blocks; returns those blocks' names."""
    freeze(model)
    unfreeze(model, stage.blocks, train_batchnorm=train_batchnorm)
    return resolve_blocks(stage.blocks, tuple(blocks(model)))


def block_rate_optimizer(model: keras.Model, lr: float, lr_decay: float | None, optimizer: str = "adam",
                         **options) -> keras.optimizers.Optimizer:
    """A Keras optimizer whose step for each weight is scaled by its block's learning-rate factor.

    The mirror of ``tlcourse.torch.staged.block_param_groups``: the top trainable block learns at
    ``lr``, each block below at ``lr_decay`` times the one above. Keras 3 optimizers have one
    learning rate, so this subclass multiplies it per weight inside ``update_step``; ``options``
    go to the optimizer (``weight_decay``, ``momentum``, ``nesterov``, ``global_clipnorm``).
    """
    classes = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD}
    if optimizer not in classes:
        raise ValueError(f"unknown optimizer {optimizer!r}; use 'adam' or 'sgd'")
    block_map = blocks(model)
    trained = {name: [w for layer in layers for w in layer.trainable_weights]
               for name, layers in block_map.items()}
    trained = {name: weights for name, weights in trained.items() if weights}
    factors = block_lr_factors(tuple(trained), tuple(block_map), lr_decay)
    factor_by_path = {w.path: factors[name] for name, weights in trained.items() for w in weights}

    class BlockRates(classes[optimizer]):
        def _factor(self, variable) -> float:
            if not hasattr(self, "_factor_by_key"):
                self._factor_by_key = {self._var_key(v): factor_by_path.get(v.path, 1.0)
                                       for v in self._trainable_variables}
            return self._factor_by_key.get(self._var_key(variable), 1.0)

        def update_step(self, gradient, variable, learning_rate):
            return super().update_step(gradient, variable, learning_rate * self._factor(variable))

        def _apply_weight_decay(self, variables):
            # Keras decays every weight at the global rate; decay each at its block's rate instead,
            # as torch's AdamW does per parameter group (so a factor of 0 keeps a block still).
            if self.weight_decay is None:
                return
            for variable in variables:
                if self._use_weight_decay(variable):
                    rate = keras.ops.cast(self.learning_rate * self.weight_decay * self._factor(variable),
                                          variable.dtype)
                    variable.assign(variable - variable * rate)

    return BlockRates(learning_rate=lr, **options)


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
    :func:`block_rate_optimizer`.

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
    options = {"weight_decay": fit_kwargs.get("weight_decay") or None}
    if optimizer == "sgd":
        options.update(momentum=fit_kwargs.get("momentum", 0.9), nesterov=fit_kwargs.get("nesterov", False))
    return block_rate_optimizer(model, stage.lr, lr_decay, optimizer, **options)
