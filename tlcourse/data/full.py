"""Full-profile datasets (downloaded once): registered on import.

Each dataset is decoded from its checksummed downloads (see :mod:`tlcourse.data.download`) into
uint8 NHWC arrays, which are kept next to the downloads as ``<name>.npz`` so that a second load
reads one file instead of decoding archives again. The ``.npz`` records the checksums it was made
from and is rebuilt whenever they change; it is written to a temporary name and renamed, so an
interrupted run never leaves a half-written one.

MNIST-M has no download of its own: it is MNIST blended over BSDS500 training photos with
:func:`tlcourse.data.mnistm.blend_on_photos`, with MNIST's labels and splits.

The two photo sets (``tf_flowers``, ``eurosat_rgb``) are archives of class folders: each is
unpacked once beside its download and read by :func:`tlcourse.data.folder.read_folder`, the
decoder and split a learner's own folder gets.
"""
from __future__ import annotations

import gzip
import io
import os
import pickle
import shutil
import struct
import tarfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Callable

import numpy as np

from tlcourse.data import download
from tlcourse.data.card import Card
from tlcourse.data.folder import read_folder
from tlcourse.data.registry import Raw, register
from tlcourse.features import write_npz_atomically
from tlcourse.data.splits import name_seed, stratified_split

# Bump when a decoder changes what it produces, so that every cached .npz is rebuilt.
DECODED_FORMAT = 1

MNIST_VAL_SIZE = 5_000  # carved from the 60,000 training digits, the same ones every time
CIFAR10_VAL_SIZE = 5_000  # carved from the 50,000 training images
HYMENOPTERA_SIZE = 224  # shorter side scaled to 224, then centre-cropped to 224 x 224
BSDS500_SHAPE = (321, 481)  # every photo is 321x481 or 481x321; portrait ones are turned on their side
MNIST_M_SEED = 2016  # which photo and where the patch is cut, per digit (Ganin et al., 2016)

MNIST_CLASSES = tuple(str(d) for d in range(10))
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
HYMENOPTERA_CLASSES = ("ants", "bees")
BSDS500_CLASSES = ("photo",)
FLOWER_CLASSES = ("daisy", "dandelion", "roses", "sunflowers", "tulips")
EUROSAT_CLASSES = ("AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial", "Pasture",
                   "PermanentCrop", "Residential", "River", "SeaLake")
# photo set -> (the class-folder root inside its archive, decoded size, classes)
PHOTO_FOLDERS = {
    "tf_flowers": ("flower_photos", 224, FLOWER_CLASSES),  # shorter side to 224, centre crop
    "eurosat_rgb": ("2750", 64, EUROSAT_CLASSES),  # the patches' own size
}
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")

# MNIST-M is built from these; its decoded arrays depend on theirs.
DERIVED_FROM = {"mnist_m": ("mnist", "bsds500")}


# --------------------------------------------------------------------------- public helpers


def is_cached(name: str) -> bool:
    """Whether ``name`` loads without the network: decoded arrays, or every download, are cached."""
    if _npz_is_current(name):
        return True
    if name in DERIVED_FROM:
        return all(is_cached(part) for part in DERIVED_FROM[name])
    return not download.missing_files(name)


def prepare(name: str, force: bool = False) -> Path:
    """Download (if needed), verify and decode ``name``; the path of its decoded ``.npz``.

    What ``tlcourse fetch`` runs, so that a room without network finds everything ready.
    ``force`` downloads and decodes again; a corrupt cached download is replaced.
    """
    for part in DERIVED_FROM.get(name, ()):
        prepare(part, force=force)
    if name in download.REMOTE_FILES:
        download.ensure(name, force=force, repair=True)
    if force:
        _npz_path(name).unlink(missing_ok=True)
        if name in PHOTO_FOLDERS:
            shutil.rmtree(download.folder(name) / PHOTO_FOLDERS[name][0], ignore_errors=True)
    _arrays(name)
    return _npz_path(name)


def unpacked(name: str) -> Path:
    """The class folders of a photo set's archive, unpacked once into its cache folder.

    Unpacked into a temporary folder and renamed into place, so an interrupted run never leaves
    half a set where a later run would take it for whole.
    """
    (archive,) = download.ensure(name)
    inner = PHOTO_FOLDERS[name][0]
    target = download.folder(name) / inner
    if target.is_dir():
        return target
    partial = download.folder(name) / f".{inner}.{os.getpid()}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    try:
        if archive.name.endswith(".zip"):
            with zipfile.ZipFile(archive) as zipped:
                zipped.extractall(partial)  # zipfile drops absolute and ".." parts of member names
        else:
            with tarfile.open(archive, "r:*") as tar:
                # "data" refuses links and paths that leave the folder (Python 3.10.12+ / 3.11.4+)
                tar.extractall(partial, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
        if not (partial / inner).is_dir():
            raise ValueError(f"{archive.name} holds no {inner}/ folder; is it the archive of {name}?")
        try:
            os.replace(partial / inner, target)
        except OSError:
            if not target.is_dir():  # another process unpacked it first: theirs is as good
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return target


# --------------------------------------------------------------------------- decoded-array cache


def _npz_path(name: str) -> Path:
    return download.folder(name) / f"{name}.npz"


def _fingerprint(name: str) -> str:
    if name in DERIVED_FROM:
        parts = [_fingerprint(part) for part in DERIVED_FROM[name]]
        return f"{name}/v{DECODED_FORMAT}/seed{MNIST_M_SEED}[" + "|".join(parts) + "]"
    hashes = ",".join(r.known_hash for r in download.remote_files(name))
    return f"{name}/v{DECODED_FORMAT}[{hashes}]"


def _npz_is_current(name: str) -> bool:
    path = _npz_path(name)
    if not path.is_file():
        return False
    try:
        with np.load(path) as stored:
            return str(stored["fingerprint"]) == _fingerprint(name)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return False


def _arrays(name: str) -> dict[str, np.ndarray]:
    """images, labels and the train/val/test index arrays of ``name``, from the .npz or decoded."""
    path = _npz_path(name)
    if _npz_is_current(name):
        with np.load(path) as stored:
            return {k: stored[k] for k in stored.files if k != "fingerprint"}
    arrays = _DECODERS[name]()
    write_npz_atomically(path, fingerprint=np.array(_fingerprint(name)), **arrays)
    return arrays


def _raw(name: str, classes: tuple[str, ...]) -> Callable[[], Raw]:
    def build() -> Raw:
        arrays = _arrays(name)
        splits = {k: arrays[k] for k in ("train", "val", "test")}
        return Raw(arrays["images"], arrays["labels"], classes, splits=splits)

    return build


def _carve_validation(labels: np.ndarray, val_size: int, seed_name: str) -> tuple[np.ndarray, np.ndarray]:
    """Split a source's training set into train and validation, stratified, always the same way."""
    fraction = val_size / len(labels)
    train, val, _ = stratified_split(labels, (1 - fraction, fraction, 0.0), seed=name_seed(seed_name))
    return train, val


# --------------------------------------------------------------------------- decoders


def _decode_mnist() -> dict[str, np.ndarray]:
    folder = download.folder("mnist")
    download.ensure("mnist")
    train_images = _read_idx(folder / "train-images-idx3-ubyte.gz", magic=2051)
    train_labels = _read_idx(folder / "train-labels-idx1-ubyte.gz", magic=2049)
    test_images = _read_idx(folder / "t10k-images-idx3-ubyte.gz", magic=2051)
    test_labels = _read_idx(folder / "t10k-labels-idx1-ubyte.gz", magic=2049)
    # Scale the validation carve with the file, so a small test file keeps the same proportion.
    val_size = round(len(train_labels) * MNIST_VAL_SIZE / 60_000)
    train, val = _carve_validation(train_labels, val_size, "mnist")
    return {
        "images": np.concatenate([train_images, test_images])[..., None],
        "labels": np.concatenate([train_labels, test_labels]).astype(np.int64),
        "train": train,
        "val": val,
        "test": len(train_labels) + np.arange(len(test_labels)),
    }


def _read_idx(path: Path, magic: int) -> np.ndarray:
    """An IDX file (LeCun's MNIST format: big-endian header, then uint8 values), gunzipped."""
    with gzip.open(path, "rb") as stream:
        data = stream.read()
    (found,) = struct.unpack(">i", data[:4])
    if found != magic:
        raise ValueError(f"{path.name} is not an MNIST IDX file of the expected kind (magic {found}, expected {magic})")
    ndim = found & 0xFF
    shape = struct.unpack(f">{ndim}i", data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape).copy()


def _decode_cifar10() -> dict[str, np.ndarray]:
    (archive,) = download.ensure("cifar10")
    batches: dict[str, dict] = {}
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            stem = PurePosixPath(member.name).name
            if member.isfile() and (stem.startswith("data_batch_") or stem == "test_batch"):
                # The archive's own format is pickle; the file's checksum was verified above.
                batches[stem] = pickle.load(tar.extractfile(member), encoding="bytes")
    train_names = sorted(n for n in batches if n.startswith("data_batch_"))
    if not train_names or "test_batch" not in batches:
        raise ValueError(f"{archive.name} has no data_batch_* / test_batch members; is it the CIFAR-10 python archive?")

    def images_of(batch):
        return np.asarray(batch[b"data"], np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)

    train_images = np.concatenate([images_of(batches[n]) for n in train_names])
    train_labels = np.concatenate([np.asarray(batches[n][b"labels"]) for n in train_names])
    test_images = images_of(batches["test_batch"])
    test_labels = np.asarray(batches["test_batch"][b"labels"])
    val_size = round(len(train_labels) * CIFAR10_VAL_SIZE / 50_000)
    train, val = _carve_validation(train_labels, val_size, "cifar10")
    return {
        "images": np.ascontiguousarray(np.concatenate([train_images, test_images])),
        "labels": np.concatenate([train_labels, test_labels]).astype(np.int64),
        "train": train,
        "val": val,
        "test": len(train_labels) + np.arange(len(test_labels)),
    }


def _decode_hymenoptera() -> dict[str, np.ndarray]:
    """The tutorial's train folder is our train split; its val folder is halved into val and test."""
    from PIL import Image, ImageOps

    (archive,) = download.ensure("hymenoptera")
    images, labels, source_split = [], [], []
    with zipfile.ZipFile(archive) as zipped:
        for entry in sorted(zipped.namelist()):
            parts = PurePosixPath(entry).parts
            # hymenoptera_data/<train|val>/<ants|bees>/<file>; the archive also holds a stray .gif
            # placeholder, skipped like torchvision's ImageFolder skips it.
            if len(parts) != 4 or parts[1] not in ("train", "val") or parts[2] not in HYMENOPTERA_CLASSES:
                continue
            if PurePosixPath(entry).suffix.lower() not in _IMAGE_SUFFIXES:
                continue
            with Image.open(io.BytesIO(zipped.read(entry))) as photo:
                square = ImageOps.fit(
                    photo.convert("RGB"), (HYMENOPTERA_SIZE, HYMENOPTERA_SIZE), Image.Resampling.BICUBIC
                )
            images.append(np.asarray(square, np.uint8))
            labels.append(HYMENOPTERA_CLASSES.index(parts[2]))
            source_split.append(parts[1])
    labels = np.asarray(labels, np.int64)
    source_split = np.asarray(source_split)
    train = np.flatnonzero(source_split == "train")
    held_out = np.flatnonzero(source_split == "val")
    _, val_pos, test_pos = stratified_split(labels[held_out], (0.0, 0.5, 0.5), seed=name_seed("hymenoptera"))
    return {
        "images": np.stack(images),
        "labels": labels,
        "train": train,
        "val": held_out[val_pos],
        "test": held_out[test_pos],
    }


def _decode_bsds500() -> dict[str, np.ndarray]:
    """The 500 photos with the source's train/val/test split (200/100/200), all landscape 321x481."""
    from PIL import Image, ImageOps

    (archive,) = download.ensure("bsds500")
    height, width = BSDS500_SHAPE
    photos = []
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            path = PurePosixPath(member.name)
            if not (member.isfile() and path.suffix.lower() == ".jpg" and path.parent.parent.name == "images"):
                continue
            if path.parent.name not in ("train", "val", "test"):
                continue
            with Image.open(io.BytesIO(tar.extractfile(member).read())) as opened:
                photo = opened.convert("RGB")
            if photo.height > photo.width:
                photo = photo.transpose(Image.Transpose.ROTATE_90)
            if photo.size != (width, height):
                photo = ImageOps.fit(photo, (width, height), Image.Resampling.BICUBIC)
            photos.append((path.parent.name, path.name, np.asarray(photo, np.uint8)))
    if not photos:
        raise ValueError(f"{archive.name} holds no BSR/BSDS500/data/images/<split>/*.jpg photos")
    photos.sort(key=lambda item: (("train", "val", "test").index(item[0]), item[1]))
    split_of = np.asarray([split for split, _, _ in photos])
    return {
        "images": np.stack([photo for _, _, photo in photos]),
        "labels": np.zeros(len(photos), np.int64),
        "train": np.flatnonzero(split_of == "train"),
        "val": np.flatnonzero(split_of == "val"),
        "test": np.flatnonzero(split_of == "test"),
    }


def _decode_mnist_m() -> dict[str, np.ndarray]:
    from tlcourse.data.mnistm import blend_on_photos

    mnist = _arrays("mnist")
    bsds = _arrays("bsds500")
    backgrounds = list(bsds["images"][bsds["train"]])  # training photos only, as in Ganin et al.
    return {
        "images": blend_on_photos(mnist["images"], backgrounds, seed=MNIST_M_SEED),
        "labels": mnist["labels"],
        "train": mnist["train"],
        "val": mnist["val"],
        "test": mnist["test"],
    }


def _photo_decoder(name: str) -> Callable[[], dict[str, np.ndarray]]:
    def decode() -> dict[str, np.ndarray]:
        _, size, classes = PHOTO_FOLDERS[name]
        decoded = read_folder(unpacked(name), size, cache=False)
        if decoded.classes != classes:
            raise ValueError(f"{name}: the archive's class folders are {', '.join(decoded.classes)}, expected "
                             f"{', '.join(classes)}; download it again with `tlcourse fetch --force {name}`")
        return {"images": decoded.images, "labels": decoded.labels, **decoded.splits}

    return decode


_DECODERS: dict[str, Callable[[], dict[str, np.ndarray]]] = {
    "mnist": _decode_mnist,
    "cifar10": _decode_cifar10,
    "hymenoptera": _decode_hymenoptera,
    "bsds500": _decode_bsds500,
    "mnist_m": _decode_mnist_m,
    **{name: _photo_decoder(name) for name in PHOTO_FOLDERS},
}


# --------------------------------------------------------------------------- cards

CARDS = (
    Card(
        name="mnist",
        task="classification",
        classes=MNIST_CLASSES,
        licence="CC BY-SA 3.0 (LeCun, Cortes & Burges)",
        source="https://ossci-datasets.s3.amazonaws.com/mnist/ (mirror of yann.lecun.com/exdb/mnist)",
        size="70,000 digits, 28x28 grey: ~55,000 train / ~5,000 val / 10,000 test",
        profile="full",
        chapters=(1, 6),
        like_imagenet=False,
        small=False,
        description="Handwritten digits; the source domain of the MNIST -> MNIST-M adaptation.",
    ),
    Card(
        name="cifar10",
        task="classification",
        classes=CIFAR10_CLASSES,
        licence="no licence stated; cite Krizhevsky (2009)",
        source="https://www.cs.toronto.edu/~kriz/cifar.html",
        size="60,000 photos, 32x32 RGB: 45,000 train / 5,000 val / 10,000 test",
        profile="full",
        chapters=(1,),
        like_imagenet=True,
        small=False,
        description="Tiny photos of ten everyday classes: a larger target set, close to ImageNet.",
    ),
    Card(
        name="hymenoptera",
        task="classification",
        classes=HYMENOPTERA_CLASSES,
        licence="ImageNet photos (their owners' copyright; ImageNet terms: non-commercial research and teaching)",
        source="https://download.pytorch.org/tutorial/hymenoptera_data.zip (PyTorch transfer-learning tutorial)",
        size="397 photos, 224x224 RGB: 244 train / 77 val / 76 test",
        profile="full",
        chapters=(),
        like_imagenet=True,
        small=True,
        description="Ants and bees: a small target set of ImageNet-like photos.",
    ),
    Card(
        name="tf_flowers",
        chapters=(2, 3, 4, 5),
        task="classification",
        classes=FLOWER_CLASSES,
        licence="CC BY 2.0 (Flickr photographers, credited photo by photo in the archive's LICENSE.txt)",
        source="http://download.tensorflow.org/example_images/flower_photos.tgz (TensorFlow Datasets: tf_flowers)",
        size="3,670 photos, 224x224 RGB (shorter side to 224, centre crop), split 60/20/20 by from_folder",
        profile="full",
        like_imagenet=True,
        small=False,
        description="The whole flower_photos set of which the quick profile's flowers are a subset: a larger "
        "target of ImageNet-like photos.",
    ),
    Card(
        name="eurosat_rgb",
        task="classification",
        classes=EUROSAT_CLASSES,
        licence="MIT (Helber, Bischke, Dengel and Borth, 2019)",
        source="https://github.com/phelber/EuroSAT (EuroSAT.zip, the RGB bands; torchvision.datasets.EuroSAT)",
        size="27,000 patches, 64x64 RGB, split 60/20/20 by from_folder",
        profile="full",
        chapters=(5,),
        like_imagenet=False,
        small=False,
        description="The whole EuroSAT RGB set of which the quick profile's eurosat is a subset: a larger target "
        "unlike ImageNet's photos.",
    ),
    Card(
        name="bsds500",
        task="unlabelled photos (MNIST-M backgrounds)",
        classes=BSDS500_CLASSES,
        licence="non-commercial research and teaching (Berkeley; photos from Corel); cite Arbelaez et al. (2011)",
        source="https://www2.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/resources.html",
        size="500 photos, 321x481 RGB: 200 train / 100 val / 200 test",
        profile="full",
        chapters=(6,),
        like_imagenet=None,  # not a transfer target: it only provides backgrounds
        small=None,
        description="Natural photos; MNIST-M cuts its backgrounds from the 200 training photos.",
    ),
    Card(
        name="mnist_m",
        task="domain-adaptation target",
        classes=MNIST_CLASSES,
        licence="derived from MNIST (CC BY-SA 3.0) and BSDS500 (non-commercial research and teaching)",
        source="built here: MNIST blended over BSDS500 training-photo patches (Ganin et al., 2016)",
        size="70,000 digits, 28x28 RGB: MNIST's splits (~55,000 / ~5,000 / 10,000)",
        profile="full",
        chapters=(6,),
        like_imagenet=False,
        small=False,
        description="MNIST digits over photo patches: the target domain of the DANN chapter.",
    ),
)

for _card in CARDS:
    register(_card, _raw(_card.name, _card.classes))
