"""Domain-adversarial training (DANN) in Keras; mirrors ``tlcourse.torch.dann``.

A :class:`DANN` model has three parts: ``features`` (images → a feature vector), ``label_head``
(features → class logits) and ``domain_head`` (features → one logit, "is this a target image?"),
with a :class:`GradientReversal` layer between the features and the domain head. Calling the
model returns class logits, so ``evaluate`` and ``predict`` work on it as on any classifier;
``model(x, domains=True)`` returns ``(class_logits, domain_logits)``.

>>> model = build_dann_digits()                       # the paper's small MNIST network
>>> history = fit_dann(model, src.train, tgt.train, epochs=12, target_eval=tgt.val)
>>> evaluate(model, tgt.test)["accuracy"]

The training step is a ``tf.function`` around ``tf.GradientTape`` (not ``model.fit``), because
every step needs two batches, two losses and a reversal weight that changes as training goes.
The schedules, the batch pairing and the recipes are framework-free, in :mod:`tlcourse.dann`.
"""
from __future__ import annotations

from typing import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from tlcourse import dann as shared
from tlcourse.data.card import Split
from tlcourse.history import History
from tlcourse.keras.lite0 import torch_layout
from tlcourse.keras.train import default_transform, evaluate
from tlcourse.training import as_split

__all__ = ["GradientReversal", "reverse_gradient", "DANN", "build_dann", "build_dann_digits", "fit_dann",
           "dann_features"]


# -- the gradient-reversal layer ------------------------------------------------------------------
@tf.custom_gradient
def _reverse(x, lambda_):
    def backward(upstream):
        return -lambda_ * upstream, tf.zeros_like(lambda_)  # no gradient for lambda itself

    return tf.identity(x), backward


def reverse_gradient(x, lambda_=1.0):
    """``x`` unchanged, but the gradient flowing back through it is multiplied by ``-lambda_``."""
    x = tf.convert_to_tensor(x)
    return _reverse(x, tf.cast(lambda_, x.dtype))


class GradientReversal(keras.layers.Layer):
    """The gradient-reversal layer; ``fit_dann`` sets ``lambda_`` at every step.

    ``lambda_`` lives in a non-trainable variable, so changing it does not retrace compiled steps.
    """

    def __init__(self, lambda_: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self._lambda = self.add_weight(shape=(), initializer=keras.initializers.Constant(float(lambda_)),
                                       trainable=False, name="lambda")

    @property
    def lambda_(self) -> float:
        return float(keras.ops.convert_to_numpy(self._lambda))

    @lambda_.setter
    def lambda_(self, value: float) -> None:
        self._lambda.assign(float(value))

    def call(self, x):
        return reverse_gradient(x, keras.ops.convert_to_tensor(self._lambda))

    def get_config(self) -> dict:
        return {**super().get_config(), "lambda_": self.lambda_}


# -- the model ----------------------------------------------------------------------------------------
class DANN(keras.Model):
    """Feature extractor, label head and domain head, with gradient reversal before the domain head.

    ``call(x)`` returns class logits (so the model is an ordinary classifier for ``fit``,
    ``evaluate`` and ``predict``); ``call(x, domains=True)`` returns ``(class_logits,
    domain_logits)`` with domain logits of shape (batch,), positive for "target".
    """

    def __init__(self, features: keras.Model, label_head: keras.Model, domain_head: keras.Model, **kwargs):
        super().__init__(**kwargs)
        self.features, self.label_head, self.domain_head = features, label_head, domain_head
        self.reversal = GradientReversal(name="gradient_reversal")

    def call(self, x, domains: bool = False, training=None):
        features = self.features(x, training=training)
        logits = self.label_head(features, training=training)
        if not domains:
            return logits
        return logits, self.domain_logits(features, training=training)

    def domain_logits(self, features, training=None):
        """The domain head's logit per feature vector, behind the gradient reversal."""
        return keras.ops.squeeze(self.domain_head(self.reversal(features), training=training), -1)


def _mlp(hidden: Sequence[int], out_features: int, name: str) -> keras.Sequential:
    layers = [keras.layers.Dense(size, activation="relu") for size in hidden]
    return keras.Sequential([*layers, keras.layers.Dense(out_features)], name=name)


def build_dann(features: keras.Model, num_classes: int, input_shape: tuple[int, int, int] = (28, 28, 3),
               label_hidden: Sequence[int] = (100, 100), domain_hidden: Sequence[int] = (100,)) -> DANN:
    """A DANN around any feature extractor that maps images to flat feature vectors.

    ``input_shape`` (height, width, channels) is used once, to build the weights; the heads are
    fully connected with ReLU, ``label_hidden`` and ``domain_hidden`` units wide.
    """
    probe = features(keras.ops.zeros((1, *input_shape)), training=False)
    if len(probe.shape) != 2:
        raise ValueError(f"the feature extractor should output flat vectors (batch, features), got shape "
                         f"{tuple(probe.shape)}; end it with keras.layers.Flatten() or a global pooling layer")
    model = DANN(features, _mlp(label_hidden, num_classes, "label_head"), _mlp(domain_hidden, 1, "domain_head"),
                 name="dann")
    model(keras.ops.zeros((1, *input_shape)), domains=True)  # creates every weight now
    return model


def digits_features(channels: int = 3, batchnorm: bool = False, filters: Sequence[int] = (32, 48)) -> keras.Sequential:
    """The paper's MNIST feature extractor: conv 5x5 32 → max-pool → conv 5x5 48 → max-pool → flatten.

    ``filters`` sets the two convolutions' widths (the paper's are 32 and 48).
    ``batchnorm=True`` puts a BatchNormalization layer after each convolution (before its ReLU),
    with PyTorch's epsilon and averaging rate so that both frameworks train the same network.
    """
    def conv(filters: int) -> list:
        if not batchnorm:
            return [keras.layers.Conv2D(filters, 5, activation="relu"), keras.layers.MaxPooling2D(2)]
        # Keras' momentum is the share the running average keeps: PyTorch's 0.1 is Keras' 0.9
        norm = keras.layers.BatchNormalization(momentum=1.0 - shared.BATCHNORM_MOMENTUM,
                                                epsilon=shared.BATCHNORM_EPS)
        return [keras.layers.Conv2D(filters, 5), norm, keras.layers.ReLU(), keras.layers.MaxPooling2D(2)]

    first, second = filters
    return keras.Sequential([*conv(first), *conv(second), keras.layers.Flatten()], name="features")


def build_dann_digits(num_classes: int = 10, input_shape: tuple[int, int, int] = (28, 28, 3),
                      domain_hidden: Sequence[int] = (100,), batchnorm: bool = False,
                      filters: Sequence[int] = (32, 48)) -> DANN:
    """The paper's network for MNIST → MNIST-M: label head 100-100-classes, domain head 100-1.

    ``batchnorm`` and ``filters``: see :func:`digits_features`; ``tlcourse.dann.recipe().model_kwargs()``
    gives each profile's choice.
    """
    features = digits_features(input_shape[-1], batchnorm, filters)
    return build_dann(features, num_classes, input_shape, (100, 100), domain_hidden)


# -- training -------------------------------------------------------------------------------------
def fit_dann(
    model: DANN,
    source,
    target_unlabelled=None,
    epochs: int = 10,
    *,
    adapt: bool = True,
    val=None,
    target_eval=None,
    lr: float = shared.MU_0,
    optimizer: str = "sgd",
    momentum: float = 0.9,
    batch_size: int = 64,
    lr_schedule: str | Callable[[float], float] | None = "anneal",
    domain_lambda: float | Callable[[float], float] | None = None,
    gamma: float = shared.GAMMA,
    stage: str = "",
    transform: Callable | None = None,
    target_transform: Callable | None = None,
    seed: int | None = None,
    progress: bool = True,
    history: History | None = None,
) -> History:
    """Train ``model`` on labelled ``source`` images while aligning them with ``target_unlabelled``.

    Every step pairs a source batch with a target batch of the same size (see
    :func:`tlcourse.dann.paired_batches`); one epoch is one pass over the source. The loss is the
    label cross-entropy on the source batch plus the domain classifier's binary cross-entropy on
    both batches (source 0, target 1); the reversal layer multiplies the domain gradient reaching
    the features by ``-lambda``.

    source: a ``Split`` or ``(images, labels)`` of uint8 NHWC images. target_unlabelled: a Split,
        a pair or bare images; its labels, if any, are never used.
    adapt: ``False`` trains on the source alone through the same loop (no domain loss, the domain
        head untouched, no target needed): the source-only baseline, or, given the labelled target
        as ``source``, the train-on-target one.
    val, target_eval: labelled splits scored after every epoch (``val_*`` and ``target_*`` columns).
    optimizer: ``"sgd"`` (with ``momentum``, as in the paper) or ``"adam"``.
    lr_schedule: ``"anneal"`` (the paper's ``lr / (1 + 10 p) ** 0.75``), ``None`` or a function
        progress → factor; ``p`` is the progress through all steps of this call, 0 to 1.
    domain_lambda: ``None`` for the paper's ``2 / (1 + exp(-gamma p)) - 1``, or a constant, or
        a function progress → lambda.
    transform: uint8 images → the network's input, for the source batches and ``val`` (default:
        scaled to [0, 1]). target_transform: the same for the target batches and ``target_eval``
        (default: ``transform``).
    seed: seeds Python, numpy and TensorFlow and fixes the batch order, so a CPU run repeats exactly.

    Returns the shared :class:`History`, one row per epoch: ``loss`` and ``accuracy`` (label loss
    and accuracy on the source batches), ``domain_loss`` and ``domain_accuracy`` (domain
    classifier on source and target batches, ``None`` without adaptation), ``lambda`` and ``lr``
    (their values at the epoch's last step), ``val_*`` and ``target_loss`` / ``target_accuracy``
    when those splits are given.
    """
    source, target, val, target_eval, order_seed = shared.checked_inputs(
        source, target_unlabelled, adapt=adapt, val=val, target_eval=target_eval, domain_lambda=domain_lambda, seed=seed)
    if not isinstance(model, DANN):
        raise TypeError(f"fit_dann trains a DANN (features, label_head, domain_head), got {type(model).__name__}; "
                        "wrap your network with build_dann(features, num_classes, ...)")
    transform = transform or default_transform
    target_transform = target_transform or transform
    parts = [model.features, model.label_head] + ([model.domain_head] if adapt else [])
    trainable = [v for part in parts for v in part.trainable_variables]
    opt = _make_optimizer(optimizer, lr, momentum)
    opt.build(trainable)
    compiled_step = _make_train_step(model, opt, trainable, adapt)

    def set_schedule(rate: float, weight: float) -> None:
        opt.learning_rate = rate
        if adapt:
            model.reversal.lambda_ = weight

    def train_step(source_idx: np.ndarray, target_idx: np.ndarray) -> dict:
        images = transform(source.images[source_idx])
        labels = tf.constant(source.labels[source_idx].astype(np.int32))
        targets = target_transform(target[target_idx]) if adapt else tf.zeros((0,))
        return dict(zip(("loss", "correct", "domain_loss", "domain_correct"), compiled_step(images, labels, targets)))

    return shared.train_epochs(
        source, target, epochs=epochs, batch_size=batch_size, lr=lr, lr_schedule=lr_schedule,
        domain_lambda=domain_lambda, gamma=gamma, order_seed=order_seed, stage=stage, progress=progress,
        history=history, framework="keras", val=val, target_eval=target_eval, set_schedule=set_schedule,
        train_step=train_step,
        evaluate=lambda split, on_target: evaluate(model, split, transform=target_transform if on_target else transform),
        # Keras keeps the rate in float32: record the shortest decimal of that float32, as fit does
        recorded_lr=lambda rate: float(str(np.float32(rate))))


def _make_optimizer(name: str, lr: float, momentum: float) -> keras.optimizers.Optimizer:
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=lr, momentum=momentum)
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=lr)
    raise ValueError(f"unknown optimizer {name!r}; use 'sgd' or 'adam'")


def _make_train_step(model: DANN, optimizer, trainable: list, adapt: bool):
    """A compiled SGD step on a source batch (and its target batch) returning the batch's numbers."""

    @tf.function(reduce_retracing=True)
    def train_step(images, labels, targets):
        with tf.GradientTape() as tape:
            source_features = model.features(images, training=True)
            logits = model.label_head(source_features, training=True)
            label_loss = keras.ops.mean(keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))
            loss = label_loss
            if adapt:
                # Source and target go through the features separately, so BatchNorm layers (if
                # any) see one domain per batch and the source pass equals a source-only run's.
                features = keras.ops.concatenate([source_features, model.features(targets, training=True)], 0)
                domains = keras.ops.concatenate([keras.ops.zeros(tf.shape(images)[:1]),
                                                 keras.ops.ones(tf.shape(targets)[:1])], 0)
                domain_logits = model.domain_logits(features, training=True)
                domain_loss = keras.ops.mean(keras.ops.binary_crossentropy(domains, domain_logits, from_logits=True))
                loss = label_loss + domain_loss
        gradients = tape.gradient(loss, trainable)
        optimizer.apply_gradients(zip(gradients, trainable))
        correct = keras.ops.sum(keras.ops.cast(keras.ops.equal(keras.ops.argmax(logits, 1), labels), "int32"))
        if not adapt:
            return label_loss, correct
        domain_correct = keras.ops.sum(keras.ops.cast(keras.ops.cast(domain_logits > 0, "float32") == domains, "int32"))
        return label_loss, correct, domain_loss, domain_correct

    return train_step


# -- weights from PyTorch ---------------------------------------------------------------------------
def assign_torch_state(model: DANN, state) -> None:
    """Copy a trained ``tlcourse.torch`` DANN (its ``state_dict()``, as numpy arrays) into ``model``.

    Both models must have the same layout, e.g. both from ``build_dann_digits`` with the same
    arguments. Layers are matched in order within each part, and each tensor is laid out as for the
    Lite0 weights (:func:`tlcourse.keras.lite0.torch_layout`). PyTorch flattens feature maps channel
    first and Keras channel last, so the rows of each head's first kernel are reordered to match.
    Afterwards both models give the same outputs for the same images (up to float rounding).
    """
    parts = {"features": model.features, "label_head": model.label_head, "domain_head": model.domain_head}
    grouped: dict[str, dict[int, dict[str, np.ndarray]]] = {name: {} for name in parts}
    for key, value in state.items():
        part, index, tensor = key.split(".")
        if part not in grouped:
            raise ValueError(f"unexpected weight {key!r}: a DANN has only {', '.join(parts)}")
        if tensor != "num_batches_tracked":
            grouped[part].setdefault(int(index), {})[tensor] = np.asarray(value)
    maps = None  # (height, width, channels) of the feature maps before Flatten
    for name, part in parts.items():
        torch_layers = [grouped[name][index] for index in sorted(grouped[name])]
        keras_layers = [layer for layer in part.layers if layer.weights]
        if len(torch_layers) != len(keras_layers):
            raise ValueError(f"{name}: {len(torch_layers)} layers with weights in the state, "
                             f"{len(keras_layers)} in the Keras model; build both with the same arguments")
        for position, (tensors, layer) in enumerate(zip(torch_layers, keras_layers)):
            names = ("weight", "bias", "running_mean", "running_var")[:len(layer.weights)]
            values = [torch_layout(tensors[t], layer) for t in names]
            if isinstance(layer, keras.layers.Dense) and position == 0 and maps is not None:
                height, width, channels = maps  # the kernel's rows in (C, H, W) order -> (H, W, C)
                values[0] = values[0].reshape(channels, height, width, -1).transpose(1, 2, 0, 3).reshape(values[0].shape)
            expected = [tuple(w.shape) for w in layer.weights]
            if [v.shape for v in values] != expected:
                raise ValueError(f"{name}, layer {layer.name}: shapes {[v.shape for v in values]} do not fit {expected}")
            layer.set_weights(values)
        if name == "features":
            flatten = [layer for layer in part.layers if isinstance(layer, keras.layers.Flatten)]
            maps = tuple(flatten[-1].input.shape[1:]) if flatten and len(flatten[-1].input.shape) == 4 else None


# -- features for plots ---------------------------------------------------------------------------
def dann_features(model: DANN, images, batch_size: int = 256, transform: Callable | None = None) -> np.ndarray:
    """The feature extractor's output for uint8 NHWC ``images`` (or a Split): float32 (N, features).

    What the domain head sees; project it to 2-D (t-SNE, PCA) to compare domains before and after
    adaptation.
    """
    if isinstance(images, Split):
        images = images.images
    images = np.asarray(images)
    as_split((images, np.zeros(len(images), dtype=np.int64)), "images")
    transform = transform or default_transform
    chunks = [keras.ops.convert_to_numpy(model.features(transform(images[start:start + batch_size]), training=False))
              for start in range(0, len(images), batch_size)]
    return np.concatenate(chunks).astype(np.float32)
