"""The loader's contract, on a small dataset registered by the test itself."""
import numpy as np
import pytest

from tlcourse import data
from tlcourse.data import registry
from tlcourse.data.splits import stratified_split, stratified_take


@pytest.fixture
def toy(monkeypatch):
    """Ten classes of 30 images each; every image's pixels carry its own index."""
    # Register the real catalogues first: were they imported while the copies below are in place,
    # they would register into the copies only, and vanish for the tests that run after this one.
    registry._ensure_registered()
    monkeypatch.setattr(registry, "_CARDS", dict(registry._CARDS))
    monkeypatch.setattr(registry, "_BUILDERS", dict(registry._BUILDERS))
    monkeypatch.setattr(registry, "_RAW_CACHE", {})
    labels = np.repeat(np.arange(10), 30)
    images = np.broadcast_to((np.arange(300) % 256).astype(np.uint8)[:, None, None, None], (300, 4, 4, 1)).copy()
    card = data.Card(name="toy", task="classification", classes=tuple("abcdefghij"), licence="CC0",
                     source="the test", size="300 images, 4x4 grey", profile="quick")
    data.register(card, lambda: data.Raw(images, labels, card.classes))
    return images, labels


def test_splits_are_disjoint_stratified_and_cover_everything(toy):
    ds = data.load("toy")
    sizes = [len(ds.train), len(ds.val), len(ds.test)]
    assert sizes == [180, 60, 60]
    for split, per_class in ((ds.train, 18), (ds.val, 6), (ds.test, 6)):
        assert np.bincount(split.labels, minlength=10).tolist() == [per_class] * 10
    # (pixel value, label) identifies an image uniquely here.
    keys = [set(zip(s.images[:, 0, 0, 0].tolist(), s.labels.tolist())) for s in (ds.train, ds.val, ds.test)]
    assert not (keys[0] & keys[1]) and not (keys[0] & keys[2]) and not (keys[1] & keys[2])


def test_loading_twice_gives_identical_arrays(toy):
    a, b = data.load("toy"), data.load("toy")
    for split in ("train", "val", "test"):
        assert np.array_equal(getattr(a, split).images, getattr(b, split).images)
        assert np.array_equal(getattr(a, split).labels, getattr(b, split).labels)


def test_limit_caps_every_split_and_keeps_classes_balanced(toy):
    ds = data.load("toy", limit=50)
    assert [len(ds.train), len(ds.val), len(ds.test)] == [50, 50, 50]
    assert np.bincount(ds.train.labels, minlength=10).tolist() == [5] * 10
    smaller = data.load("toy", limit=20)
    assert set(smaller.train.images[:, 0, 0, 0]) <= set(ds.train.images[:, 0, 0, 0])


def test_per_class_limits_training_labels_only(toy):
    ds = data.load("toy", per_class=3)
    assert np.bincount(ds.train.labels).tolist() == [3] * 10
    assert len(ds.val) == 60 and len(ds.test) == 60


def test_images_are_read_only_so_a_notebook_cannot_corrupt_the_cache(toy):
    data.load("toy")
    with pytest.raises(ValueError):
        registry._RAW_CACHE["toy"].images[0] = 0


def test_unknown_name_suggests_close_matches(toy):
    with pytest.raises(KeyError, match="Did you mean 'toy'"):
        data.load("tooy")


def test_builder_returning_floats_is_refused(monkeypatch, toy):
    card = data.Card(name="floats", task="classification", classes=("a",), licence="", source="", size="", profile="quick")
    data.register(card, lambda: data.Raw(np.zeros((2, 2, 2, 1), np.float32), np.zeros(2, int), ("a",)))
    with pytest.raises(TypeError, match="uint8 NHWC"):
        data.load("floats")


def test_split_rejects_images_without_a_channel_axis():
    with pytest.raises(ValueError, match="uint8 NHWC"):
        data.Split(np.zeros((3, 8, 8), np.uint8), np.zeros(3, int))


def test_stratified_split_rejects_fractions_that_do_not_sum_to_one():
    with pytest.raises(ValueError, match="sum to 1"):
        stratified_split(np.zeros(10, int), (0.5, 0.2, 0.2))


def test_stratified_take_with_more_classes_than_room_keeps_one_each():
    labels = np.repeat(np.arange(4), 10)
    taken = stratified_take(labels, limit=4)
    assert sorted(labels[taken].tolist()) == [0, 1, 2, 3]


def test_for_profile_picks_by_active_profile(monkeypatch):
    monkeypatch.setenv("TLCOURSE_PROFILE", "quick")
    assert data.for_profile(quick="digits", full="mnist") == "digits"
    monkeypatch.setenv("TLCOURSE_PROFILE", "full")
    assert data.for_profile(quick="digits", full="mnist") == "mnist"
