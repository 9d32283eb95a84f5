"""Replace a PyTorch backbone's classifier; ``tlcourse.keras.heads`` mirrors it.

The new head lives in the "top" block, so ``unfreeze(model, "top")`` trains it, and
``summary(model)`` counts it there.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import Sequence

from torch import nn

from tlcourse.stages import check_head_arguments as _check_head_arguments
from tlcourse.torch.freezing import blocks as _blocks
from tlcourse.torch.lite0 import EfficientNetLite0

__all__ = ["swap_head"]


def head_layers(in_features: int, num_classes: int, hidden: Sequence[int] = (), dropout: float = 0.2):
    """``(name, module)`` pairs of a classifier head: dropout, then per hidden width a Linear, ReLU
    and dropout, then the final Linear named ``classifier``."""
    layers = [("dropout", nn.Dropout(dropout))]
    width = in_features
    for number, out in enumerate(hidden, start=1):
        layers += [
            (f"hidden{number}", nn.Linear(width, out)),
            (f"hidden{number}_activation", nn.ReLU(inplace=True)),
            (f"hidden{number}_dropout", nn.Dropout(dropout)),
        ]
        width = out
    classifier = nn.Linear(width, num_classes)
    # the same start as EfficientNetLite0's own classifier (and the Keras twin): uniform +-1/sqrt(classes)
    bound = 1.0 / math.sqrt(num_classes)
    nn.init.uniform_(classifier.weight, -bound, bound)
    nn.init.zeros_(classifier.bias)
    layers.append(("classifier", classifier))
    return layers


def swap_head(model: nn.Module, num_classes: int, hidden: Sequence[int] = (), dropout: float = 0.2) -> nn.Module:
    """A model with ``model``'s backbone and a new classifier head for ``num_classes`` classes.

    The head replaces the final Linear (and the dropout before it) of the "top" block: dropout,
    then for each width in ``hidden`` a Linear + ReLU + dropout, then a Linear to ``num_classes``
    logits. The returned model shares the backbone's modules (and so their weights and frozen
    flags) with ``model``, as a Keras Functional model built on a base does; the new head starts
    random and trainable. Keep using the returned model.
    """
    hidden = _check_head_arguments(num_classes, hidden, dropout)
    _blocks(model)  # raises for unsupported models; so from here on model is an EfficientNetLite0
    old_top = model.top
    backbone_part = [(name, module) for name, module in old_top.named_children()
                     if name not in ("dropout", "classifier") and not name.startswith("hidden")]
    new_top = nn.Sequential(OrderedDict(backbone_part + head_layers(old_top.conv.out_channels, num_classes,
                                                                    hidden, dropout)))
    swapped = EfficientNetLite0.__new__(EfficientNetLite0)
    nn.Module.__init__(swapped)  # an empty shell: no throw-away random backbone
    swapped.num_classes = num_classes
    for name, module in model.named_children():
        swapped.add_module(name, new_top if name == "top" else module)
    swapped.train(model.training)
    device = next(model.parameters()).device
    return swapped.to(device)
