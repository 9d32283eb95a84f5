"""Embedded datasets (quick profile): real images shipped inside scikit-learn and scikit-image,
plus procedural shapes. Everything here works offline and gives the same arrays on every run.

Between them the classification targets cover the four cases of the transfer rule of thumb:

=============  ======================  ==========================
               like ImageNet photos    unlike ImageNet photos
=============  ======================  ==========================
small          ``textures``            ``faces``
larger         ``photo_patches``       ``digits``
=============  ======================  ==========================

``digits_rgb`` -> ``digits_on_photos`` is the quick profile's MNIST -> MNIST-M pair for domain
adaptation, and ``shapes`` is the zero-shot set. Importing this module only registers cards; the
images are built on the first ``load``.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from tlcourse.data import photos, shapes
from tlcourse.data.card import Card
from tlcourse.data.folder import read_folder
from tlcourse.data.mnistm import blend_on_photos
from tlcourse.data.registry import Raw, register
from tlcourse.data.splits import name_seed, stratified_split

SPLIT_FRACTIONS = (0.6, 0.2, 0.2)

# The shipped colour photos, by the name the class or licence note uses. china and flower come
# with scikit-learn (CC BY 2.0, see sklearn/datasets/images/README.txt); the rest with
# scikit-image, whose docstrings state their terms.
PHOTOS = ("china", "flower", "astronaut", "coffee", "chelsea", "rocket")
PHOTO_LICENCES = (
    "china.jpg and flower.jpg: CC BY 2.0 (Flickr users danielbuechele and vultilion, via scikit-learn); "
    "astronaut, rocket: public domain (NASA, SpaceX); coffee, chelsea: CC0 (via scikit-image)"
)

TEXTURES = ("brick", "grass", "gravel")
TEXTURE_TILE = 48
PATCH = 32
PATCH_STRIDE = 16
PATCHES_PER_SPLIT = {"train": 150, "val": 50, "test": 50}
FLAT_PATCH_STD = 8.0  # patches this flat (plain sky, black space) could come from any photo

MNIST_SIZE = 28
MNIST_DIGIT_BOX = 20  # MNIST centres each digit in a 20x20 box inside 28x28; so do we


# -- builders ------------------------------------------------------------------------------------


def _digits() -> Raw:
    images, labels = _sklearn_digits()
    return Raw(_to_uint8(images * (255 / 16))[..., None], labels, _digit_classes(), SPLIT_FRACTIONS)


def _faces() -> Raw:
    from skimage.data import lfw_subset

    patches = lfw_subset()  # float 0..1; the first 100 are faces, the next 100 are not
    labels = np.repeat(np.array([1, 0], dtype=np.int64), 100)
    return Raw(_to_uint8(patches * 255)[..., None], labels, ("non-face", "face"), SPLIT_FRACTIONS)


def _textures() -> Raw:
    import skimage.data

    tiles, labels = [], []
    for label, name in enumerate(TEXTURES):
        photo = getattr(skimage.data, name)()
        rows, cols = photo.shape[0] // TEXTURE_TILE, photo.shape[1] // TEXTURE_TILE
        cut = photo[: rows * TEXTURE_TILE, : cols * TEXTURE_TILE]
        grid = cut.reshape(rows, TEXTURE_TILE, cols, TEXTURE_TILE).swapaxes(1, 2)
        tiles.append(grid.reshape(-1, TEXTURE_TILE, TEXTURE_TILE))
        labels.append(np.full(rows * cols, label, dtype=np.int64))
    return Raw(np.concatenate(tiles)[..., None], np.concatenate(labels), TEXTURES, SPLIT_FRACTIONS)


def _photo_patches() -> Raw:
    """Patches labelled by the photo they come from; each split from its own band of every photo.

    Train patches come from the left 60% of a photo, validation from the next 20%, test from the
    rightmost 20%, so no test pixel was ever seen in training even though patches overlap within
    a band.
    """
    rng = np.random.default_rng(name_seed("photo_patches"))
    bands = {"train": (0.0, 0.6), "val": (0.6, 0.8), "test": (0.8, 1.0)}
    images, labels, splits = [], [], {part: [] for part in bands}
    for label, photo in enumerate(_shipped_photos()):
        width = photo.shape[1]
        for part, (lo, hi) in bands.items():
            band = photo[:, round(lo * width) : round(hi * width)]
            patches = _patches(band)
            patches = patches[patches.std(axis=(1, 2, 3)) > FLAT_PATCH_STD]
            chosen = rng.choice(len(patches), size=PATCHES_PER_SPLIT[part], replace=False)
            splits[part].extend(range(len(labels), len(labels) + len(chosen)))
            images.append(patches[np.sort(chosen)])
            labels.extend([label] * len(chosen))
    return Raw(
        np.concatenate(images),
        np.array(labels, dtype=np.int64),
        PHOTOS,
        splits={part: rng.permutation(np.array(idx, dtype=np.int64)) for part, idx in splits.items()},
    )


def _shipped(name: str, size: int):
    """A builder for a shipped photo set: the very decoder a learner's folder goes through."""

    def build() -> Raw:
        decoded = read_folder(photos.folder(name), size, progress=False)
        return Raw(decoded.images, decoded.labels, decoded.classes, splits=decoded.splits,
                   extra={"files": decoded.files})

    return build


def _shapes() -> Raw:
    return shapes.build(seed=name_seed("shapes"))


def _digits_rgb() -> Raw:
    images, labels = _mnist_like_digits()
    return Raw(np.repeat(images[..., None], 3, axis=-1), labels, _digit_classes(), splits=_digit_splits())


def _digits_on_photos() -> Raw:
    images, labels = _mnist_like_digits()
    blended = blend_on_photos(images, _shipped_photos(), seed=name_seed("digits_on_photos"))
    return Raw(blended, labels, _digit_classes(), splits=_digit_splits())


# -- shared pieces -------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.images, bunch.target.astype(np.int64)


def _digit_classes() -> tuple[str, ...]:
    return tuple(str(d) for d in range(10))


def _digit_splits() -> dict[str, np.ndarray]:
    # The very splits `digits` gets, so digits, digits_rgb and digits_on_photos pair image for image.
    _, labels = _sklearn_digits()
    parts = stratified_split(labels, SPLIT_FRACTIONS, seed=name_seed("digits"))
    return dict(zip(("train", "val", "test"), parts))


@lru_cache(maxsize=1)
def _mnist_like_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 8x8 digits resized to 20x20 and centred in 28x28, as MNIST lays its digits out."""
    from skimage.transform import resize

    images, labels = _sklearn_digits()
    box = resize(images * (255 / 16), (len(images), MNIST_DIGIT_BOX, MNIST_DIGIT_BOX), order=1, anti_aliasing=False)
    margin = (MNIST_SIZE - MNIST_DIGIT_BOX) // 2
    canvas = np.zeros((len(images), MNIST_SIZE, MNIST_SIZE), np.uint8)
    canvas[:, margin : margin + MNIST_DIGIT_BOX, margin : margin + MNIST_DIGIT_BOX] = _to_uint8(box)
    canvas.setflags(write=False)
    return canvas, labels


@lru_cache(maxsize=1)
def _shipped_photos() -> tuple[np.ndarray, ...]:
    """The colour photos named in PHOTOS, in that order."""
    import skimage.data
    from sklearn.datasets import load_sample_image

    photos = []
    for name in PHOTOS:
        photo = load_sample_image(f"{name}.jpg") if name in ("china", "flower") else getattr(skimage.data, name)()
        photo.setflags(write=False)
        photos.append(photo)
    return tuple(photos)


def _patches(photo: np.ndarray) -> np.ndarray:
    """Every PATCH x PATCH patch of ``photo`` on a grid with step PATCH_STRIDE, shape (n, P, P, 3)."""
    tops = range(0, photo.shape[0] - PATCH + 1, PATCH_STRIDE)
    lefts = range(0, photo.shape[1] - PATCH + 1, PATCH_STRIDE)
    return np.stack([photo[t : t + PATCH, l : l + PATCH] for t in tops for l in lefts])


def _to_uint8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.round(values), 0, 255).astype(np.uint8)


# -- cards ---------------------------------------------------------------------------------------

_DIGITS_LICENCE = (
    "BSD-3-Clause as shipped in scikit-learn; the data is the UCI Optical Recognition of "
    "Handwritten Digits set (E. Alpaydin, C. Kaynak), CC BY 4.0 at the UCI repository"
)

register(
    Card(
        name="digits",
        task="classification",
        classes=_digit_classes(),
        licence=_DIGITS_LICENCE,
        source="scikit-learn: sklearn.datasets.load_digits()",
        size="1,797 images, 8x8 grey, 10 classes",
        profile="quick",
        chapters=(1, 5),
        like_imagenet=False,
        small=False,
        description="Handwritten digits at 8x8 pixels: tiny grey strokes, nothing like ImageNet photos, "
        "with enough labels to train from scratch.",
    ),
    _digits,
)

register(
    Card(
        name="faces",
        task="classification",
        classes=("non-face", "face"),
        licence="LFW (Labeled Faces in the Wild, UMass Amherst): no licence stated, published for "
        "research; redistributed in scikit-image (BSD-3-Clause)",
        source="scikit-image: skimage.data.lfw_subset()",
        size="200 images, 25x25 grey, 2 classes",
        profile="quick",
        chapters=(),
        like_imagenet=False,
        small=True,
        description="Tight 25x25 grey crops of faces and of the backgrounds around them from LFW news "
        "photos: a face-or-not verification task with few labels, unlike ImageNet's object photos.",
    ),
    _faces,
)

register(
    Card(
        name="textures",
        task="classification",
        classes=TEXTURES,
        licence="CC0 (brick and gravel from CC0Textures, grass from DeviantArt user linolafett; via scikit-image)",
        source="scikit-image: skimage.data.brick(), grass(), gravel(), cut into 48x48 tiles",
        size="300 images, 48x48 grey, 3 classes",
        profile="quick",
        chapters=(),
        like_imagenet=True,
        small=True,
        description="Non-overlapping tiles of three photographed surfaces (brick wall, grass, gravel): "
        "natural-photo textures like those ImageNet features describe, with few labels.",
    ),
    _textures,
)

register(
    Card(
        name="photo_patches",
        task="classification",
        classes=PHOTOS,
        licence=PHOTO_LICENCES,
        source="scikit-learn: load_sample_image('china.jpg'/'flower.jpg'); scikit-image: "
        "skimage.data.astronaut(), coffee(), chelsea(), rocket()",
        size="1,500 images, 32x32 RGB, 6 classes",
        profile="quick",
        chapters=(1,),
        like_imagenet=True,
        small=False,
        description="32x32 colour patches labelled by the photo they were cut from (a Chinese pagoda, a flower, "
        "an astronaut, a coffee cup, Chelsea the cat, a rocket launch); test patches come from a part "
        "of each photo that training never sees.",
    ),
    _photo_patches,
)

register(
    Card(
        name="shapes",
        task="zero-shot",
        classes=shapes.class_names(),
        licence="CC0 (generated by tlcourse)",
        source="tlcourse.data.shapes.build(), procedural",
        size="1,060 images, 32x32 RGB, 18 classes (4 unseen in training), 8 attributes",
        profile="quick",
        chapters=(5, 7),
        like_imagenet=False,
        small=True,
        description="Circles, squares and triangles in red, green or blue, filled or outlined, on noisy "
        "backgrounds; four combinations appear only in the test split, for zero-shot learning from "
        "attributes.",
    ),
    _shapes,
)

register(
    Card(
        name="digits_rgb",
        task="domain-adaptation source",
        classes=_digit_classes(),
        licence=_DIGITS_LICENCE,
        source="scikit-learn: sklearn.datasets.load_digits(), resized to 20x20 inside 28x28, grey copied to RGB",
        size="1,797 images, 28x28 RGB, 10 classes",
        profile="quick",
        chapters=(6,),
        like_imagenet=False,
        small=False,
        description="The scikit-learn digits laid out like MNIST and repeated over three channels: the "
        "labelled source domain paired image for image with digits_on_photos.",
    ),
    _digits_rgb,
)

register(
    Card(
        name="digits_on_photos",
        task="domain-adaptation target",
        classes=_digit_classes(),
        licence=f"digits: {_DIGITS_LICENCE}; backgrounds: {PHOTO_LICENCES}",
        source="tlcourse.data.mnistm.blend_on_photos() over scikit-learn digits and the photos of photo_patches",
        size="1,797 images, 28x28 RGB, 10 classes",
        profile="quick",
        chapters=(6,),
        like_imagenet=False,
        small=False,
        description="MNIST-M built the quick way: each digit of digits_rgb blended by absolute difference "
        "over a random patch of a shipped photo (Ganin et al., 2016), same order and splits.",
    ),
    _digits_on_photos,
)

_FLOWERS_LICENCE = "CC BY 2.0 (Flickr photographers, credited photo by photo in the set's LICENSE.txt)"
_EUROSAT_LICENCE = "MIT (Helber, Bischke, Dengel and Borth, 2019; notice in the set's LICENSE.txt)"

register(
    Card(
        name="flowers",
        chapters=(1, 2, 3, 4, 5),
        task="classification",
        classes=("daisy", "dandelion", "roses", "sunflowers", "tulips"),
        licence=_FLOWERS_LICENCE,
        source="TensorFlow's flower_photos (tf_flowers), 100 photos per class, in tlcourse/data/shipped/flowers",
        size="500 images, 160x160 RGB, 5 classes",
        profile="quick",
        like_imagenet=True,
        small=True,
        description="Real photos of five kinds of flower taken by Flickr users: objects in natural scenes, the "
        "kind of picture ImageNet holds (it even has a daisy class), with 60 training photos per class.",
    ),
    _shipped("flowers", 160),
)

register(
    Card(
        name="eurosat",
        task="classification",
        classes=("AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial", "Pasture",
                 "PermanentCrop", "Residential", "River", "SeaLake"),
        licence=_EUROSAT_LICENCE,
        source="EuroSAT RGB (Sentinel-2), 100 patches per class, in tlcourse/data/shipped/eurosat",
        size="1,000 images, 64x64 RGB, 10 classes",
        profile="quick",
        chapters=(1, 3, 5),
        like_imagenet=False,
        small=True,
        description="Satellite patches of European land (crops, forest, roads, rivers, towns) seen from 10 m per "
        "pixel straight down: textures and layouts, no objects, nothing like ImageNet's photos; 60 training "
        "patches per class.",
    ),
    _shipped("eurosat", 64),
)
