"""The MNIST-M blend: |photo patch - digit| per channel, over random patches of random photos."""
import numpy as np
import pytest

from tlcourse.data.mnistm import blend_on_photos


def numbered_photo(height=40, width=50, offset=0):
    """An RGB photo whose every pixel is different, so a patch gives away where it was cut."""
    values = np.arange(height * width * 3).reshape(height, width, 3)
    return ((values + offset) % 251).astype(np.uint8)


def test_hand_made_example_is_the_absolute_difference_per_channel():
    digit = np.array([[[0, 255], [100, 30]]], np.uint8)  # one 2x2 digit
    photo = np.array([[[10, 20, 30], [200, 0, 255]], [[100, 90, 110], [0, 30, 60]]], np.uint8)
    # The photo is exactly the digit's size, so the only possible patch is the whole photo.
    out = blend_on_photos(digit, [photo], seed=0)
    expected = np.array(
        [[[[10, 20, 30], [55, 255, 0]], [[0, 10, 10], [30, 0, 30]]]],
        np.uint8,
    )
    assert out.dtype == np.uint8 and out.shape == (1, 2, 2, 3)
    assert np.array_equal(out, expected)


def test_every_background_is_a_patch_of_a_photo():
    photos = [numbered_photo(), numbered_photo(offset=7)]
    blank = np.zeros((20, 6, 5), np.uint8)  # |patch - 0| is the patch itself
    out = blend_on_photos(blank, photos, seed=3)
    windows = [np.lib.stride_tricks.sliding_window_view(p, (6, 5), axis=(0, 1)) for p in photos]
    for patch in out:
        target = patch.transpose(2, 0, 1)  # window views put the patch axes last
        assert any(np.all(w == target, axis=(2, 3, 4)).any() for w in windows)


def test_digits_are_cut_from_every_photo():
    dark, bright = np.full((30, 30, 3), 10, np.uint8), np.full((30, 30, 3), 200, np.uint8)
    out = blend_on_photos(np.zeros((200, 8, 8), np.uint8), [dark, bright], seed=1)
    assert set(np.unique(out).tolist()) == {10, 200}


def test_a_bright_stroke_inverts_the_photo_and_a_dark_one_leaves_it():
    photo = numbered_photo()
    digits = np.zeros((50, 6, 6), np.uint8)
    digits[:, :, 3:] = 255
    out = blend_on_photos(digits, [photo], seed=5)
    background = blend_on_photos(np.zeros_like(digits), [photo], seed=5)
    assert np.array_equal(out[:, :, :3], background[:, :, :3])
    assert np.array_equal(out[:, :, 3:], 255 - background[:, :, 3:])


def test_same_seed_same_images_other_seed_other_backgrounds():
    photos = [numbered_photo(), numbered_photo(offset=99)]
    digits = np.random.default_rng(0).integers(0, 256, size=(30, 7, 7), dtype=np.uint8)
    first, again = blend_on_photos(digits, photos, seed=11), blend_on_photos(digits, photos, seed=11)
    other = blend_on_photos(digits, photos, seed=12)
    assert np.array_equal(first, again)
    differs = np.any(first != other, axis=(1, 2, 3))
    assert differs.mean() > 0.9


def test_channel_axis_on_digits_is_accepted_and_photos_may_be_one_array():
    photos = np.stack([numbered_photo(), numbered_photo(offset=1)])
    digits = np.random.default_rng(1).integers(0, 256, size=(10, 8, 8), dtype=np.uint8)
    assert np.array_equal(blend_on_photos(digits[..., None], photos, seed=2), blend_on_photos(digits, list(photos), seed=2))


def test_inputs_it_cannot_blend_are_refused_with_the_fix():
    photo = numbered_photo()
    with pytest.raises(ValueError, match="astype"):
        blend_on_photos(np.zeros((2, 8, 8)), [photo], seed=0)
    with pytest.raises(ValueError, match="RGB"):
        blend_on_photos(np.zeros((2, 8, 8), np.uint8), [photo[..., 0]], seed=0)
    with pytest.raises(ValueError, match="smaller than a digit"):
        blend_on_photos(np.zeros((2, 64, 64), np.uint8), [photo], seed=0)
    with pytest.raises(ValueError, match="empty"):
        blend_on_photos(np.zeros((2, 8, 8), np.uint8), [], seed=0)
