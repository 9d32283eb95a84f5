"""The embedded (quick-profile) datasets: cards, determinism, splits, subsets, shapes and the
digits -> digits_on_photos pair."""
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tlcourse import data
from tlcourse.data import shapes

EMBEDDED = ("digits", "faces", "textures", "photo_patches", "shapes", "digits_rgb", "digits_on_photos", "flowers",
            "eurosat")
GREY = ("digits", "faces", "textures")
RULE_OF_THUMB = ("digits", "faces", "textures", "photo_patches")
SPLITS = ("train", "val", "test")


def digests(names) -> dict:
    """One sha256 per dataset over every split's images and labels and the class names."""
    out = {}
    for name in names:
        ds = data.load(name)
        h = hashlib.sha256(repr(ds.classes).encode())
        for split in SPLITS:
            s = getattr(ds, split)
            h.update(s.images.tobytes())
            h.update(s.labels.tobytes())
        out[name] = h.hexdigest()
    return out


def image_keys(split) -> set:
    return {im.tobytes() for im in split.images}


@pytest.mark.parametrize("name", EMBEDDED)
def test_card_is_registered_as_quick_with_every_field_set(name):
    card = data.card(name)
    assert name in data.names("quick")
    for field in ("task", "licence", "source", "size", "description"):
        assert getattr(card, field).strip(), f"{name}: empty {field}"
    assert card.like_imagenet is not None and card.small is not None
    assert set(card.chapters) <= set(range(1, 8))
    ds = data.load(name)
    assert card.classes == ds.classes
    # The size string states the true number of images.
    stated = int(re.match(r"([\d,]+) images", card.size).group(1).replace(",", ""))
    assert stated == len(ds.train) + len(ds.val) + len(ds.test)


def test_scikit_image_files_used_ship_inside_the_package():
    # scikit-image downloads what its wheel lacks; the quick profile must never need to.
    import skimage.data

    shipped = Path(skimage.data.__file__).parent
    used = ("astronaut.png", "brick.png", "grass.png", "gravel.png", "chelsea.png", "coffee.png", "rocket.jpg",
            "lfw_subset.npy")
    assert [f for f in used if not (shipped / f).is_file()] == []


def test_rule_of_thumb_targets_cover_all_four_cases():
    cases = {(data.card(n).small, data.card(n).like_imagenet) for n in RULE_OF_THUMB}
    assert cases == {(True, True), (True, False), (False, True), (False, False)}


@pytest.mark.slow
def test_identical_arrays_in_another_process_whatever_the_global_random_state():
    here = digests(EMBEDDED)
    script = (
        "import json, random, sys, numpy as np; random.seed(99); np.random.seed(99);"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r}); from test_data_embedded import digests, EMBEDDED;"
        "print(json.dumps(digests(EMBEDDED)))"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert json.loads(result.stdout.strip().splitlines()[-1]) == here


@pytest.mark.parametrize("name", EMBEDDED)
def test_images_are_uint8_nhwc_and_labels_int64(name):
    ds = data.load(name)
    channels = 1 if name in GREY else 3
    for split in SPLITS:
        s = getattr(ds, split)
        assert s.images.dtype == np.uint8 and s.images.ndim == 4 and s.images.shape[-1] == channels
        assert s.images.shape[1:] == ds.image_shape
        assert s.labels.dtype == np.int64
        assert 0 <= s.labels.min() and s.labels.max() < ds.num_classes
    assert ds.train.images.std() > 10, "images should not be blank"


@pytest.mark.parametrize("name", EMBEDDED)
def test_splits_are_disjoint_and_stratified(name):
    ds = data.load(name)
    keys = [image_keys(getattr(ds, split)) for split in SPLITS]  # no image repeats in these sets
    assert not (keys[0] & keys[1] or keys[0] & keys[2] or keys[1] & keys[2])
    seen = [k for k in range(ds.num_classes) if k not in ds.unseen]
    counts = np.array([np.bincount(getattr(ds, s).labels, minlength=ds.num_classes)[seen] for s in SPLITS])
    share = counts / counts.sum(axis=0)
    # Every seen class is divided between the splits in the same proportions, give or take rounding.
    assert np.all(np.abs(share - share.mean(axis=1, keepdims=True)) < 0.02), share


@pytest.mark.parametrize("name", ["digits", "photo_patches", "shapes", "flowers"])
def test_limit_takes_a_class_balanced_subset_of_each_split(name):
    full, small = data.load(name), data.load(name, limit=36)
    for split in SPLITS:
        part, whole = getattr(small, split), getattr(full, split)
        assert len(part) == min(36, len(whole))
        assert image_keys(part) <= image_keys(whole)
        counts = np.bincount(part.labels, minlength=full.num_classes)
        present = counts[counts > 0]
        assert present.max() - present.min() <= 1


@pytest.mark.parametrize("name", ["faces", "textures", "digits_on_photos", "eurosat"])
def test_per_class_limits_training_images_only(name):
    full, few = data.load(name), data.load(name, per_class=5)
    assert np.bincount(few.train.labels).tolist() == [5] * full.num_classes
    assert image_keys(few.train) <= image_keys(full.train)
    assert len(few.val) == len(full.val) and len(few.test) == len(full.test)


def test_shapes_attribute_table_describes_each_class_name():
    ds = data.load("shapes")
    assert ds.attributes.shape == (ds.num_classes, len(ds.attribute_names)) == (18, 8)
    for name, row in zip(ds.classes, ds.attributes):
        assert {a for a, on in zip(ds.attribute_names, row) if on} == set(name.split())
    # Exactly one shape, one colour and one fill per class.
    for group in (shapes.SHAPES, shapes.COLOURS, shapes.FILLS):
        cols = [ds.attribute_names.index(a) for a in group]
        assert np.all(ds.attributes[:, cols].sum(axis=1) == 1)


def test_shapes_unseen_classes_appear_only_in_test():
    ds = data.load("shapes")
    assert len(ds.unseen) == 4
    unseen = list(ds.unseen)
    assert not np.isin(ds.train.labels, unseen).any() and not np.isin(ds.val.labels, unseen).any()
    assert set(unseen) <= set(ds.test.labels.tolist())
    seen = sorted(set(range(ds.num_classes)) - set(unseen))
    assert set(ds.train.labels.tolist()) == set(seen) == set(ds.val.labels.tolist())
    # Zero-shot needs every attribute both present and absent among the classes it trains on.
    seen_attributes = ds.attributes[seen]
    assert np.all(seen_attributes.max(axis=0) == 1) and np.all(seen_attributes.min(axis=0) == 0)


def test_shapes_are_drawn_in_their_colour():
    ds = data.load("shapes")
    images = ds.train.images.astype(float)
    # Each pixel's colour cast: how far its channel stands out from the pixel's mean.
    cast = (images - images.mean(axis=-1, keepdims=True)).mean(axis=(1, 2))
    for channel, colour in enumerate(shapes.COLOURS):
        has_colour = ds.attributes[ds.train.labels, ds.attribute_names.index(colour)] == 1
        assert np.all(cast[has_colour].argmax(axis=1) == channel), colour


def test_shapes_filled_cover_more_pixels_than_outlined():
    ds = data.load("shapes")
    images = ds.train.images.astype(float)
    coloured = (images.max(axis=-1) - images.min(axis=-1) > 60).mean(axis=(1, 2))
    filled = ds.attributes[ds.train.labels, ds.attribute_names.index("filled")] == 1
    assert coloured[filled].mean() > 1.3 * coloured[~filled].mean()


def test_digit_domains_pair_image_for_image():
    digits, source, target = data.load("digits"), data.load("digits_rgb"), data.load("digits_on_photos")
    for split in SPLITS:
        s, t = getattr(source, split), getattr(target, split)
        assert np.array_equal(s.labels, t.labels)
        assert np.array_equal(s.labels, getattr(digits, split).labels)
        assert s.images.shape == t.images.shape and s.images.shape[1:] == (28, 28, 3)
        # The source is grey copied to RGB; the target is not.
        assert np.array_equal(s.images[..., 0], s.images[..., 2])
        assert not np.array_equal(t.images[..., 0], t.images[..., 2])
    # The 8x8 digits sit in a 20x20 box with a 4-pixel empty margin, as MNIST lays them out.
    assert source.train.images[:, :4].max() == 0 and source.train.images[:, 4:24, 4:24].max() == 255
    # Where the source is empty, the target shows a photo (|patch - 0| = patch): varied, not black.
    margin = target.train.images[:, :4].astype(float)
    assert margin.mean() > 30 and margin.std() > 30


def test_digits_rgb_is_the_digits_set_enlarged():
    from skimage.transform import resize

    digits, source = data.load("digits"), data.load("digits_rgb")
    box = source.train.images[:, 4:24, 4:24, 0].astype(float)
    shrunk = resize(box, (len(box), 8, 8), anti_aliasing=True)
    original = digits.train.images[..., 0].astype(float)
    assert np.corrcoef(shrunk.ravel(), original.ravel())[0, 1] > 0.95
