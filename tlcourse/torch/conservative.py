"""Conservative fine-tuning for PyTorch: keep the weights near where pre-training left them.

Mirrors ``tlcourse.keras.conservative``. :class:`L2SP` is the penalty of Li, Grandvalet & Davoine
(2018), "Explicit inductive bias for transfer learning with convolutional networks"::

    alpha/2 * ||w_S - w0_S||^2  +  beta/2 * ||w_head||^2

``w_S`` are the transferred weights, ``w0_S`` their values when the penalty was made (the
pretrained point), and ``w_head`` the new head that ``swap_head`` added. :class:`L2` is the
baseline the paper compares with: the same sum, pulled towards zero instead of ``w0``.

>>> model = swap_head(build_lite0(weights="imagenet"), num_classes=6)
>>> penalty = L2SP(model, alpha=0.1, beta=0.01)     # right after swap_head, before training
>>> fit(model, ds.train, ds.val, epochs=3, penalty=penalty)   # or L2(model, ...), or None

Which weights count, at every step:

- only parameters that train now (``requires_grad``): a frozen parameter adds nothing, so the
  penalty's value and the History's ``penalty`` column follow the blocks being trained;
- each parameter once, even if modules share it;
- the head: parameters owned by a module named ``classifier`` or ``hidden1``, ``hidden2`` ...
  (the names :func:`tlcourse.torch.heads.swap_head` gives) get ``beta``; every other one ``alpha``.

``fit`` refuses an L2 or L2-SP penalty together with weight decay (``weight_decay=`` or an
optimizer built with it): both would pull the same weights, towards different points.
"""
from __future__ import annotations

import re

import torch
from torch import nn

__all__ = ["L2SP", "L2"]

_HEAD_MODULE = re.compile(r"classifier|hidden\d+")


def is_head_parameter(name: str) -> bool:
    """Whether a parameter (named as in ``model.named_parameters()``) belongs to a swapped-in head."""
    owner = name.rsplit(".", 1)[0].rsplit(".", 1)[-1]
    return _HEAD_MODULE.fullmatch(owner) is not None


def _check_strength(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"{name} must be a number >= 0, e.g. {name}=0.01; got {value!r}")
    return float(value)


class L2SP:
    """The L2-SP penalty: ``alpha/2 ||w - w0||^2`` over transferred weights, ``beta/2 ||w||^2`` over the head.

    Make it from the model you will train, right after ``swap_head`` and before any training:
    ``w0`` is a copy of every non-head parameter at that moment. ``penalty(model)`` returns the
    penalty of ``model``'s trainable parameters as a scalar tensor that backpropagates;
    ``fit(..., penalty=penalty)`` adds it to the loss at every step.

    ``alpha`` defaults to 0.1 and ``beta`` to 0.01, the values Li et al. found best.
    """

    pulls_towards = "pretrained"

    def __init__(self, model: nn.Module, alpha: float = 0.1, beta: float = 0.01):
        if not isinstance(model, nn.Module):
            raise TypeError(f"{type(self).__name__} needs the model to train (an nn.Module), got {type(model).__name__}")
        self.alpha, self.beta = _check_strength(alpha, "alpha"), _check_strength(beta, "beta")
        named = dict(model.named_parameters())
        if not any(is_head_parameter(name) for name in named) and self.pulls_towards == "pretrained":
            raise ValueError(
                "found no new head in this model (a module named 'classifier' or 'hidden1', ...), so L2SP "
                "cannot tell the transferred weights from the new ones; give it a head first and make the "
                "penalty from the result: model = swap_head(backbone, num_classes); penalty = L2SP(model)"
            )
        self.reference = self._snapshot(named)

    def _snapshot(self, named: dict) -> dict[str, torch.Tensor]:
        return {name: p.detach().clone() for name, p in named.items() if not is_head_parameter(name)}

    def _anchor(self, name: str, parameter: torch.Tensor) -> torch.Tensor:
        reference = self.reference.get(name)
        if reference is None or reference.shape != parameter.shape:
            raise ValueError(
                f"parameter {name!r} {'has another shape than' if reference is not None else 'was not in'} the "
                f"model this {type(self).__name__} was made from; make the penalty from the model you train, "
                f"right after swap_head: penalty = {type(self).__name__}(model)"
            )
        if reference.device != parameter.device:  # fit moved the model to the GPU: follow it once
            reference = self.reference[name] = reference.to(parameter.device)
        return reference

    def __call__(self, model: nn.Module) -> torch.Tensor:
        """The penalty of ``model``'s trainable parameters now: a scalar tensor with gradients."""
        transferred, head = [], []
        for name, parameter in model.named_parameters():
            if not parameter.requires_grad:
                continue
            value = _at_least_float32(parameter)
            if is_head_parameter(name):
                head.append(value.square().sum())
            elif self.pulls_towards == "zero":
                transferred.append(value.square().sum())
            else:
                transferred.append((value - self._anchor(name, parameter).to(value.dtype)).square().sum())
        zero = torch.zeros((), device=_device_of(model))
        return self.alpha / 2 * sum(transferred, zero) + self.beta / 2 * sum(head, zero)

    @torch.no_grad()
    def drift(self, model: nn.Module) -> float:
        """How far ``model``'s transferred weights have moved from ``w0``: ``||w_S - w0_S||``, trainable or not."""
        if self.pulls_towards == "zero":
            raise TypeError("L2 keeps no snapshot of the pretrained weights; measure the drift with an L2SP made "
                            "from the same model before training: L2SP(model).drift(model)")
        total = sum(((p.double() - self._anchor(name, p).double()) ** 2).sum().item()
                    for name, p in model.named_parameters() if not is_head_parameter(name))
        return float(total) ** 0.5

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The snapshot ``w0`` (parameter name -> tensor); ``fit`` keeps it in its checkpoints."""
        return dict(self.reference)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Put back a snapshot from :meth:`state_dict`, e.g. when ``fit`` resumes a checkpoint."""
        if set(state) != set(self.reference) or any(state[k].shape != self.reference[k].shape for k in state):
            raise ValueError(f"this snapshot belongs to another model than the one this {type(self).__name__} "
                             "was made from; make the penalty from the model being resumed")
        self.reference = {name: tensor.to(self.reference[name].device) for name, tensor in state.items()}

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(alpha={self.alpha:g}, beta={self.beta:g}; "
                f"transferred weights pulled towards {self.pulls_towards})")


class L2(L2SP):
    """Plain L2, the baseline for L2-SP: ``alpha/2 ||w||^2`` over transferred weights, ``beta/2 ||w||^2`` over the head.

    The same arguments, defaults and rules as :class:`L2SP`, but every weight is pulled towards
    zero, so nothing is snapshotted and the model need not have a swapped-in head.
    """

    pulls_towards = "zero"

    def _snapshot(self, named: dict) -> dict[str, torch.Tensor]:
        return {}


def _at_least_float32(tensor: torch.Tensor) -> torch.Tensor:
    """Half-precision weights are summed in float32: the sum runs over millions of them."""
    return tensor.to(torch.promote_types(tensor.dtype, torch.float32))


def _device_of(model: nn.Module) -> torch.device:
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")
