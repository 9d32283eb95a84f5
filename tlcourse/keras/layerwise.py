"""Layer-wise learning rates for Keras: early blocks learn slower than the top, or not at all.

Mirrors ``tlcourse.torch.layerwise``. The early blocks of a pretrained network hold the most
general features, so fine-tuning moves them least. :func:`layerwise_optimizer` gives each block
its own learning rate, ``lr`` times the block's factor, and ``fit`` accepts the result:

>>> unfreeze(model, "block6")                                  # block6, block7, top train
>>> opt = layerwise_optimizer(model, 1e-3, 0.1)                # top 1e-3, block7 1e-4, block6 1e-5
>>> opt = layerwise_optimizer(model, 1e-3, {"block6": 0, "block7": 0.1})   # block6 stays still
>>> fit(model, ds.train, ds.val, epochs=3, optimizer=opt)
"""
from __future__ import annotations

from typing import Mapping

import keras

from tlcourse.keras.freezing import blocks
from tlcourse.stages import block_lr_factors

__all__ = ["block_rate_optimizer", "layerwise_optimizer"]


def block_rate_optimizer(model: keras.Model, lr: float, lr_decay: float | None, optimizer: str = "adam",
                         **options) -> keras.optimizers.Optimizer:
    """A Keras optimizer whose step for each weight is scaled by its block's learning-rate factor.

    The mirror of ``tlcourse.torch.layerwise.block_param_groups``: the top trainable block learns at
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


def layerwise_optimizer(
    model: keras.Model,
    lr: float,
    factors: float | Mapping[str, float],
    optimizer: str = "adam",
    *,
    weight_decay: float = 0.0,
    momentum: float = 0.9,
    nesterov: bool = False,
) -> keras.optimizers.Optimizer:
    """An optimizer over ``model``'s trainable weights with one learning rate per block.

    factors: a float ``d`` in (0, 1]: the top trainable block learns at ``lr`` and each block
        below at ``d`` times the one above (as ``fit_staged(lr_decay=d)``); or a dict
        ``{block name: factor}``, factors >= 0, where 0 keeps a block where it is (its gradients
        are computed but it does not move) and a trainable block left out gets 1.
    optimizer: ``"adam"`` (with decoupled ``weight_decay``, decayed at each block's own rate) or
        ``"sgd"`` with ``momentum`` and ``nesterov``.

    Returns a ``keras.optimizers.Optimizer`` (Keras 3 optimizers have one learning rate; this one
    scales it per weight); pass it as ``fit(..., optimizer=opt)``. Freeze or unfreeze first: a
    weight that becomes trainable later learns at ``lr``.
    """
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr!r}")
    if not model.trainable_weights:
        raise ValueError("every weight is frozen, so there is nothing to train; unfreeze some blocks first")
    if optimizer == "sgd":
        if weight_decay:
            raise ValueError("layerwise_optimizer(optimizer='sgd') takes no weight_decay; use 'adam' (AdamW) for it")
        return block_rate_optimizer(model, lr, factors, "sgd", momentum=momentum, nesterov=nesterov)
    if optimizer == "adam":
        return block_rate_optimizer(model, lr, factors, "adam", weight_decay=weight_decay or None)
    raise ValueError(f"unknown optimizer {optimizer!r}; use 'adam' or 'sgd'")
