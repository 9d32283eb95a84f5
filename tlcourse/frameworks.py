"""Which half of the library a model belongs to, asked without importing a framework.

``tlcourse.torch`` and ``tlcourse.keras`` register themselves here when they are imported, each
with a test that recognises its models; framework-neutral code (the widgets) then calls the
half's ``blocks``, ``freeze``, ``summary`` ... on whatever model it is given.
"""
from __future__ import annotations

from types import ModuleType
from typing import Callable

_HALVES: list[tuple[Callable[[object], bool], ModuleType]] = []


def register(owns: Callable[[object], bool], half: ModuleType) -> None:
    """Make ``half`` (``tlcourse.torch`` or ``tlcourse.keras``) the one for models that ``owns`` accepts."""
    _HALVES.append((owns, half))


def half_for(model) -> ModuleType:
    """``tlcourse.torch`` for a PyTorch module, ``tlcourse.keras`` for a Keras model."""
    for owns, half in _HALVES:
        if owns(model):
            return half
    raise TypeError(f"{type(model).__name__} is not a model of a framework tlcourse knows; pass a PyTorch "
                    "nn.Module or a Keras model (and import tlcourse.torch or tlcourse.keras before asking)")
