"""Conservative fine-tuning for Keras: keep the weights near where pre-training left them.

Mirrors ``tlcourse.torch.conservative``. :class:`L2SP` is the penalty of Li, Grandvalet & Davoine
(2018), "Explicit inductive bias for transfer learning with convolutional networks"::

    alpha/2 * ||w_S - w0_S||^2  +  beta/2 * ||w_head||^2

``w_S`` are the transferred weights, ``w0_S`` their values when the penalty was made (the
pretrained point), and ``w_head`` the new head that ``swap_head`` added. :class:`L2` is the
baseline the paper compares with: the same sum, pulled towards zero instead of ``w0``.

>>> model = swap_head(build_lite0(weights="imagenet"), num_classes=6)
>>> penalty = L2SP(model, alpha=0.1, beta=0.01)     # right after swap_head, before training
>>> fit(model, ds.train, ds.val, epochs=3, penalty=penalty)   # or L2(model, ...), or None

``fit`` adds the penalty to the loss inside Keras' compiled train step (the loss it compiles
calls ``penalty(model)``), so it works wherever ``model.fit`` does.

Which weights count, at every step:

- only the model's trainable weights (``model.trainable_weights`` when ``fit`` compiles): a
  frozen layer adds nothing, so the value and the History's ``penalty`` column follow the blocks
  being trained; BatchNormalization's moving statistics never count;
- each weight once, even if layers share it;
- the head: the weights of layers named ``top_classifier`` or ``top_hidden1``, ``top_hidden2`` ...
  (the names :func:`tlcourse.keras.heads.swap_head` gives) get ``beta``; every other one ``alpha``.

``fit`` refuses an L2 or L2-SP penalty together with weight decay (``weight_decay=`` or an
optimizer built with it): both would pull the same weights, towards different points.
"""
from __future__ import annotations

import re

import keras
import numpy as np

__all__ = ["L2SP", "L2"]

_HEAD_LAYER = re.compile(r"top_(classifier|hidden\d+)")


def is_head_weight(path: str) -> bool:
    """Whether a weight (by its ``path``, e.g. ``"top_classifier/kernel"``) belongs to a swapped-in head."""
    parts = path.split("/")
    return len(parts) >= 2 and _HEAD_LAYER.fullmatch(parts[-2]) is not None


def _check_strength(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"{name} must be a number >= 0, e.g. {name}=0.01; got {value!r}")
    return float(value)


def _parameters(model: keras.Model) -> list:
    """Weights a gradient can reach, trainable now or not (BatchNorm's moving statistics left out)."""
    seen, found = set(), []
    for layer in model._flatten_layers():
        for weight in layer._trainable_variables:
            if id(weight) not in seen:
                seen.add(id(weight))
                found.append(weight)
    return found


class L2SP:
    """The L2-SP penalty: ``alpha/2 ||w - w0||^2`` over transferred weights, ``beta/2 ||w||^2`` over the head.

    Make it from the model you will train, right after ``swap_head`` and before any training:
    ``w0`` is a copy of every non-head weight at that moment. ``penalty(model)`` returns the
    penalty of ``model``'s trainable weights as a scalar tensor (differentiable, and usable inside
    a compiled train step); ``fit(..., penalty=penalty)`` adds it to the loss at every step.

    ``alpha`` defaults to 0.1 and ``beta`` to 0.01, the values Li et al. found best.
    """

    pulls_towards = "pretrained"

    def __init__(self, model: keras.Model, alpha: float = 0.1, beta: float = 0.01):
        if not isinstance(model, keras.Model):
            raise TypeError(f"{type(self).__name__} needs the model to train (a keras.Model), got {type(model).__name__}")
        self.alpha, self.beta = _check_strength(alpha, "alpha"), _check_strength(beta, "beta")
        weights = _parameters(model)
        if not any(is_head_weight(w.path) for w in weights) and self.pulls_towards == "pretrained":
            raise ValueError(
                "found no new head in this model (a layer named 'top_classifier' or 'top_hidden1', ...), so "
                "L2SP cannot tell the transferred weights from the new ones; give it a head first and make the "
                "penalty from the result: model = swap_head(backbone, num_classes); penalty = L2SP(model)"
            )
        self.reference = self._snapshot(weights)

    def _snapshot(self, weights: list) -> dict:
        # Non-trainable variables, so a compiled train step reads them without copying them into its graph.
        return {w.path: keras.Variable(keras.ops.convert_to_numpy(w), trainable=False,
                                       name=w.path.replace("/", "__") + "__reference")
                for w in weights if not is_head_weight(w.path)}

    def _anchor(self, weight):
        reference = self.reference.get(weight.path)
        if reference is None or tuple(reference.shape) != tuple(weight.shape):
            raise ValueError(
                f"weight {weight.path!r} {'has another shape than' if reference is not None else 'was not in'} the "
                f"model this {type(self).__name__} was made from; make the penalty from the model you train, "
                f"right after swap_head: penalty = {type(self).__name__}(model)"
            )
        return reference

    def __call__(self, model: keras.Model):
        """The penalty of ``model``'s trainable weights now: a scalar tensor with gradients."""
        ops = keras.ops
        transferred, head = [], []
        for weight in model.trainable_weights:
            value = ops.cast(weight, "float32")
            if is_head_weight(weight.path):
                head.append(ops.sum(ops.square(value)))
            elif self.pulls_towards == "zero":
                transferred.append(ops.sum(ops.square(value)))
            else:
                transferred.append(ops.sum(ops.square(value - ops.cast(self._anchor(weight), "float32"))))
        zero = ops.zeros((), "float32")
        return self.alpha / 2 * sum(transferred, zero) + self.beta / 2 * sum(head, zero)

    def drift(self, model: keras.Model) -> float:
        """How far ``model``'s transferred weights have moved from ``w0``: ``||w_S - w0_S||``, trainable or not."""
        if self.pulls_towards == "zero":
            raise TypeError("L2 keeps no snapshot of the pretrained weights; measure the drift with an L2SP made "
                            "from the same model before training: L2SP(model).drift(model)")
        total = sum(float(np.sum((np.asarray(w, np.float64) - np.asarray(self._anchor(w), np.float64)) ** 2))
                    for w in _parameters(model) if not is_head_weight(w.path))
        return total ** 0.5

    def state_dict(self) -> dict[str, np.ndarray]:
        """The snapshot ``w0`` (weight path -> array); ``fit`` keeps it in its checkpoints."""
        return {path: keras.ops.convert_to_numpy(value) for path, value in self.reference.items()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Put back a snapshot from :meth:`state_dict`, e.g. when ``fit`` resumes a checkpoint."""
        if set(state) != set(self.reference) or any(
                tuple(np.shape(state[k])) != tuple(self.reference[k].shape) for k in state):
            raise ValueError(f"this snapshot belongs to another model than the one this {type(self).__name__} "
                             "was made from; make the penalty from the model being resumed")
        for path, value in state.items():
            self.reference[path].assign(value)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(alpha={self.alpha:g}, beta={self.beta:g}; "
                f"transferred weights pulled towards {self.pulls_towards})")


class L2(L2SP):
    """Plain L2, the baseline for L2-SP: ``alpha/2 ||w||^2`` over transferred weights, ``beta/2 ||w||^2`` over the head.

    The same arguments, defaults and rules as :class:`L2SP`, but every weight is pulled towards
    zero, so nothing is snapshotted and the model need not have a swapped-in head.
    """

    pulls_towards = "zero"

    def _snapshot(self, weights: list) -> dict:
        return {}
