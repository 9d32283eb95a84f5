"""Replace a Keras backbone's classifier, the Functional way; mirrors ``tlcourse.torch.heads``.

The new head is the "head" block (its layers are named ``top_dropout``, ``top_hidden1`` ...
``top_classifier``, as Lite0's own head is), so ``unfreeze(model, "head")`` trains it and nothing
else (feature extraction), and ``summary(model)`` counts it on its own row.

The head starts from the features the model's classifier (its last layer with weights) reads,
before the dropout in front of it, so it sees the same features as in ``tlcourse.torch``:
the pooled features for EfficientNet-Lite0 (1280), EfficientNet-B0 (1280) and ResNet50 (2048),
``fc2``'s output for VGG16 (4096), and ``conv_2``'s activation for MobileNetV3-Small (1024), whose
classifier is a 1x1 convolution on an (N, 1, 1, 1024) tensor: those are flattened first.

Why the Functional way: the backbones are Functional models, and a Functional model has no
``.add``, so the Sequential recipe ``base.add(Dense(10))`` fails with ``AttributeError``;
``keras.Sequential([base, head])`` does build, but hides the whole backbone inside one layer, so
its blocks can no longer be frozen or unfrozen by name. :func:`explain_sequential_on_functional`
says this to a learner.
"""
from __future__ import annotations

from typing import Sequence

import keras
from keras import layers

from tlcourse.keras.freezing import blocks as _blocks
from tlcourse.keras.lite0 import HEAD_LAYER_NAME
from tlcourse.stages import check_head_arguments as _check_head_arguments

__all__ = ["swap_head", "explain_sequential_on_functional"]

SEQUENTIAL_ON_FUNCTIONAL = (
    "A Functional model (like every keras.applications backbone and tlcourse.keras.build_lite0) has no "
    ".add(): that method belongs to keras.Sequential. And keras.Sequential([base, head]) would wrap "
    "the whole backbone as a single layer, hiding its blocks. Build the head the Functional way: take "
    "the pooled features, x = base.get_layer('top_pool').output, add layers, x = Dense(n)(x), then "
    "model = keras.Model(base.input, x); tlcourse.keras.swap_head(base, num_classes=n) does exactly that."
)


def explain_sequential_on_functional(error: BaseException | None = None) -> str:
    """Why ``base.add(...)`` (or a Sequential head on a Functional base) goes wrong, and the fix."""
    prefix = f"{type(error).__name__}: {error}\n\n" if error is not None else ""
    return prefix + SEQUENTIAL_ON_FUNCTIONAL



def _head_input(model: keras.Model):
    """The tensor the new head reads: the input of the model's classifier (its last layer with
    weights), stepping back over the dropout before it and over any head swapped in before."""
    producer_of = {id(layer.output): layer for layer in model.layers}
    classifier = [layer for layer in model.layers if layer.weights][-1]
    x = classifier.input
    while True:
        producer = producer_of.get(id(x))
        if producer is None or not (isinstance(producer, layers.Dropout)
                                    or HEAD_LAYER_NAME.fullmatch(producer.name)):
            return x
        x = producer.input


def swap_head(model: keras.Model, num_classes: int, hidden: Sequence[int] = (), dropout: float = 0.2) -> keras.Model:
    """A model with ``model``'s backbone and a new classifier head for ``num_classes`` classes.

    Takes the classifier's features (for EfficientNet-Lite0 the output of ``top_pool``; for the
    other backbones see the module's docstring), flattened if they are (N, 1, 1, C), and attaches
    dropout, then for each width in ``hidden`` a Dense + ReLU + dropout, then a Dense to
    ``num_classes`` logits, and wraps it all in ``keras.Model(model.input, logits)``. The new model
    shares the backbone's layers (their weights and trainable flags) with ``model``; the new head
    starts random and trainable.

    Do not ``model.add(...)`` a head: a Functional model has no ``add`` (AttributeError), see
    :func:`explain_sequential_on_functional`.
    """
    hidden = _check_head_arguments(num_classes, hidden, dropout)
    _blocks(model)  # raises for unsupported models
    x = _head_input(model)
    if len(x.shape) == 4:
        x = layers.Flatten(name="top_flatten")(x)
    x = layers.Dropout(dropout, name="top_dropout")(x)
    for number, width in enumerate(hidden, start=1):
        x = layers.Dense(width, name=f"top_hidden{number}")(x)
        x = layers.Activation("relu", name=f"top_hidden{number}_activation")(x)
        x = layers.Dropout(dropout, name=f"top_hidden{number}_dropout")(x)
    # uniform +-1/sqrt(inputs), as the torch twin (EfficientNet's own start suits 1,000 classes only)
    start = keras.initializers.VarianceScaling(1.0 / 3.0, mode="fan_in", distribution="uniform")
    logits = layers.Dense(num_classes, kernel_initializer=start, name="top_classifier")(x)
    return keras.Model(model.input, logits, name=model.name)
