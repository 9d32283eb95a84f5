"""Replace a PyTorch backbone's classifier; ``tlcourse.keras.heads`` mirrors it.

The new head is the "head" block, so ``unfreeze(model, "head")`` trains it and nothing else
(feature extraction), and ``summary(model)`` counts it on its own row.

What the head replaces, per catalogue backbone: the final Linear and the Dropout right before it
(where there is one), nothing else, so that the head sees the same features as in Keras:

- efficientnet_lite0: ``top.dropout`` and ``top.classifier``; the head gets 1280 features.
- resnet50: ``fc``; 2048 features.
- vgg16: ``classifier[5:]`` (Dropout, Linear); 4096 features. The two 4096-wide layers stay:
  Keras's VGG16 has them in the same place (fc1, fc2) and they hold most of the pretrained top.
  They are in the "top" block, so ``unfreeze(model, "top")`` trains them with the head, and
  ``unfreeze(model, "head")`` does not.
- efficientnet_b0: the whole ``classifier`` (Dropout, Linear); 1280 features.
- mobilenet_v3_small: ``classifier[2:]`` (Dropout, Linear); its 576 -> 1024 Linear and Hardswish
  stay, as Keras's ``conv_2`` does; 1024 features.

The new layers (named as in :func:`head_layers`) go into the same attribute (``fc`` or
``classifier``, now an ``nn.Sequential``, or Lite0's ``top``), where the "head" block finds them.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import Sequence

from torch import nn

from tlcourse.stages import check_head_arguments as _check_head_arguments
from tlcourse.torch.backbones import classifier_parts
from tlcourse.torch.freezing import blocks as _blocks
from tlcourse.torch.lite0 import HEAD_LAYER_NAME, EfficientNetLite0

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
    # uniform +-1/sqrt(inputs), as the Keras twin. EfficientNet's own start, +-1/sqrt(classes), suits
    # 1,000 classes; for five it gives logits in the tens and a first loss near 10 instead of log(5).
    bound = 1.0 / math.sqrt(width)
    nn.init.uniform_(classifier.weight, -bound, bound)
    nn.init.zeros_(classifier.bias)
    layers.append(("classifier", classifier))
    return layers


def _classifier_attribute(model: nn.Module) -> str:
    """The attribute holding a torchvision backbone's classifier: ``fc`` (ResNet) or ``classifier``."""
    return "fc" if hasattr(model, "fc") else "classifier"


def _shell_like(model: nn.Module) -> nn.Module:
    """A new module of ``model``'s class that holds ``model``'s children, parameters and plain
    attributes (not its hooks), without calling its ``__init__``, which would build a throw-away
    random network."""
    shell = type(model).__new__(type(model))
    nn.Module.__init__(shell)
    module_state = set(vars(shell))  # nn.Module's own bookkeeping: parameters, hooks, children ...
    for name, value in vars(model).items():
        if name not in module_state:
            object.__setattr__(shell, name, value)
    for name, parameter in model._parameters.items():
        shell.register_parameter(name, parameter)
    for name, buffer in model._buffers.items():
        shell.register_buffer(name, buffer, persistent=name not in model._non_persistent_buffers_set)
    for name, child in model.named_children():
        shell.add_module(name, child)
    shell.training = model.training  # not .train(): it would also switch the shared children
    return shell


def _swap_torchvision_head(model: nn.Module, num_classes: int, hidden, dropout: float) -> nn.Module:
    attribute = _classifier_attribute(model)
    old_classifier = getattr(model, attribute)
    kept, _ = classifier_parts(old_classifier)
    if kept:
        in_features = next(m for _, m in reversed(kept) if isinstance(m, nn.Linear)).out_features
    else:  # the head takes the pooled features, as the old classifier's first Linear did
        in_features = next(m for m in old_classifier.modules() if isinstance(m, nn.Linear)).in_features
    new_classifier = nn.Sequential(OrderedDict(kept + head_layers(in_features, num_classes, hidden, dropout)))
    new_classifier.train(model.training)
    swapped = _shell_like(model)
    setattr(swapped, attribute, new_classifier)
    if hasattr(swapped, "num_classes"):
        swapped.num_classes = num_classes
    return swapped


def swap_head(model: nn.Module, num_classes: int, hidden: Sequence[int] = (), dropout: float = 0.2) -> nn.Module:
    """A model with ``model``'s backbone and a new classifier head for ``num_classes`` classes.

    The head replaces the final Linear (and the dropout before it), the "head" block, for each
    backbone as the module's docstring lists: dropout, then for each width in ``hidden`` a
    Linear + ReLU + dropout, then a Linear to ``num_classes`` logits. The returned model shares
    the backbone's modules (and so their weights and frozen flags) with ``model``, as a Keras
    Functional model built on a base does; the new head starts random and trainable. Keep using
    the returned model.
    """
    hidden = _check_head_arguments(num_classes, hidden, dropout)
    _blocks(model)  # raises for unsupported models
    device = next(model.parameters()).device
    if not isinstance(model, EfficientNetLite0):
        return _swap_torchvision_head(model, num_classes, hidden, dropout).to(device)
    old_top = model.top
    backbone_part = [(name, module) for name, module in old_top.named_children()
                     if not HEAD_LAYER_NAME.fullmatch(name)]
    new_top = nn.Sequential(OrderedDict(backbone_part + head_layers(old_top.conv.out_channels, num_classes,
                                                                    hidden, dropout)))
    swapped = EfficientNetLite0.__new__(EfficientNetLite0)
    nn.Module.__init__(swapped)  # an empty shell: no throw-away random backbone
    swapped.num_classes = num_classes
    for name, module in model.named_children():
        swapped.add_module(name, new_top if name == "top" else module)
    swapped.train(model.training)
    return swapped.to(device)
