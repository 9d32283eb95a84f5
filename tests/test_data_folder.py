"""from_folder: a learner's own folder of photos in, the course's Dataset out.

Every folder here is written by the test itself, from the flower photos shipped in the package,
in the formats and states a learner's folder arrives in (JPEG, PNG with alpha, grey, CMYK, EXIF
rotated, ...) and damaged in the ways folders get damaged (truncated, text named .jpg, empty).
"""
import io
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tlcourse import data
from tlcourse.data import folder as folders
from tlcourse.data import images as image_files
from tlcourse.data import photos
from tlcourse.data.folder import FolderError, FolderWarning, from_folder
from tlcourse.data.folder_report import inspect_folder

SHIPPED_DAISIES = sorted((photos.folder("flowers") / "daisy").glob("*.jpg"))


@pytest.fixture(autouse=True)
def _own_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("TLCOURSE_HOME", str(tmp_path / "cache"))


def photo(k: int, size=(48, 40)) -> Image.Image:
    """The k-th shipped daisy, resized to ``size`` (width, height): a real photo, small and fast."""
    with Image.open(SHIPPED_DAISIES[k % len(SHIPPED_DAISIES)]) as opened:
        return opened.convert("RGB").resize(size, Image.Resampling.BILINEAR)


def write(path: Path, picture: Image.Image, fmt: str = "JPEG", **options) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path, fmt, **options)
    return path


def make_folder(root: Path, counts: dict, start: int = 0) -> Path:
    """``root/<class>/<class>_<i>.jpg`` with ``counts[class]`` photos each."""
    k = start
    for name, n in counts.items():
        for i in range(n):
            write(root / name / f"{name}_{i:03d}.jpg", photo(k))
            k += 1
    return root


def labels_by_file(ds) -> dict:
    out = {}
    for split in ("train", "val", "test"):
        for path, label in zip(ds.extra["files"][split], getattr(ds, split).labels):
            out[path] = int(label)
    return out


# --------------------------------------------------------------------------- layouts and splits


def test_class_folders_split_60_20_20_class_by_class_with_nothing_shared(tmp_path):
    root = make_folder(tmp_path / "pets", {"cat": 10, "dog": 10, "fox": 5})
    ds = from_folder(root, size=32, progress=False)
    assert ds.classes == ("cat", "dog", "fox")
    assert [np.bincount(s.labels, minlength=3).tolist() for s in (ds.train, ds.val, ds.test)] == [
        [6, 6, 3], [2, 2, 1], [2, 2, 1]]
    files = [set(ds.extra["files"][s]) for s in ("train", "val", "test")]
    assert not (files[0] & files[1] or files[0] & files[2] or files[1] & files[2])
    assert sum(map(len, files)) == 25
    assert ds.train.images.shape == (15, 32, 32, 3) and ds.train.images.dtype == np.uint8
    # Each image sits beside its own file name and label.
    again = {Path(p).name: image_files.decode(root / p, 32) for p in ds.extra["files"]["test"]}
    for path, image in zip(ds.extra["files"]["test"], ds.test.images):
        assert np.array_equal(again[Path(path).name], image)
    assert ds.card.name == "pets" and ds.card.size.startswith("25 images, 32x32 RGB, 3 classes")


def test_the_split_does_not_depend_on_where_or_in_which_order_the_files_were_written(tmp_path):
    first = make_folder(tmp_path / "a", {"cat": 12, "dog": 12})
    second = tmp_path / "elsewhere" / "b"
    for path in sorted(first.rglob("*.jpg"), reverse=True):  # written in the opposite order
        target = second / path.relative_to(first)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    a, b = from_folder(first, 32, progress=False), from_folder(second, 32, progress=False)
    for split in ("train", "val", "test"):
        assert a.extra["files"][split] == b.extra["files"][split]
        assert np.array_equal(getattr(a, split).images, getattr(b, split).images)


def test_adding_a_photo_moves_at_most_two_other_photos_of_its_class(tmp_path):
    root = make_folder(tmp_path / "pets", {"cat": 20, "dog": 20})
    before = from_folder(root, 32, progress=False)
    write(root / "cat" / "cat_new.jpg", photo(99))
    after = from_folder(root, 32, progress=False)
    where = [{p: s for s in ("train", "val", "test") for p in ds.extra["files"][s]} for ds in (before, after)]
    moved = [p for p in where[0] if where[0][p] != where[1][p]]
    assert len(moved) <= 2 and all(p.startswith("cat/") for p in moved)  # one across each split boundary


def test_split_folders_are_used_as_they_are(tmp_path):
    make_folder(tmp_path / "set" / "train", {"cat": 4, "dog": 4})
    make_folder(tmp_path / "set" / "val", {"cat": 2, "dog": 2}, start=20)
    make_folder(tmp_path / "set" / "test", {"cat": 3, "dog": 1}, start=40)
    ds = from_folder(tmp_path / "set", 32, progress=False)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (8, 4, 4)
    assert all(p.startswith("train/") for p in ds.extra["files"]["train"])
    assert all(p.startswith("test/") for p in ds.extra["files"]["test"])
    assert np.bincount(ds.test.labels).tolist() == [3, 1]


@pytest.mark.parametrize(
    "present, sizes, note",
    [
        (("train", "val"), (8, 2, 2), "halved into val and test"),
        (("train", "test"), (6, 2, 4), "25% of train/ became val"),
        (("train",), (4, 2, 2), "split 60/20/20"),
    ],
)
def test_a_missing_split_is_made_as_documented(tmp_path, present, sizes, note):
    counts = {"train": {"cat": 4, "dog": 4}, "val": {"cat": 2, "dog": 2}, "test": {"cat": 2, "dog": 2}}
    for which in present:
        make_folder(tmp_path / "set" / which, counts[which], start=10 * len(which))
    ds = from_folder(tmp_path / "set", 32, progress=False)
    assert (len(ds.train), len(ds.val), len(ds.test)) == sizes
    assert note in ds.card.description


def test_validation_folder_may_be_called_valid_or_validation(tmp_path):
    make_folder(tmp_path / "set" / "train", {"cat": 3, "dog": 3})
    make_folder(tmp_path / "set" / "validation", {"cat": 2, "dog": 2}, start=10)
    ds = from_folder(tmp_path / "set", 32, progress=False)
    assert len(ds.train) == 6 and len(ds.val) + len(ds.test) == 4


def test_images_in_nested_folders_belong_to_their_class_folder(tmp_path):
    root = make_folder(tmp_path / "pets", {"cat": 5, "dog": 5})
    write(root / "cat" / "2024" / "summer" / "deep.jpg", photo(80))
    ds = from_folder(root, 32, progress=False)
    assert labels_by_file(ds)["cat/2024/summer/deep.jpg"] == 0


def test_per_class_reads_the_same_few_images_of_each_class(tmp_path):
    root = make_folder(tmp_path / "pets", {"cat": 12, "dog": 9})
    a = from_folder(root, 32, per_class=5, progress=False)
    b = from_folder(root, 32, per_class=5, progress=False, cache=False)
    assert len(a.train) + len(a.val) + len(a.test) == 10
    assert labels_by_file(a) == labels_by_file(b)


# --------------------------------------------------------------------------- the frameworks' numbering


def awkward_classes(root: Path) -> Path:
    # Upper case sorts before lower case, "10" before "2": the frameworks sort names as strings.
    return make_folder(root, {"zebra": 3, "Apple": 3, "banana": 3, "10": 3, "2": 3, "b b": 3})


def test_classes_and_labels_equal_torchvision_image_folder(tmp_path):
    from torchvision.datasets import ImageFolder

    root = awkward_classes(tmp_path / "mine")
    ds = from_folder(root, 32, progress=False)
    theirs = ImageFolder(str(root))
    assert ds.classes == tuple(theirs.classes)
    assert labels_by_file(ds) == {Path(p).relative_to(root).as_posix(): label for p, label in theirs.samples}


def test_classes_and_labels_equal_keras_image_dataset_from_directory(tmp_path):
    import keras

    root = awkward_classes(tmp_path / "mine")
    make_folder(tmp_path / "split" / "train", {"zebra": 3, "Apple": 3, "banana": 3}, start=30)
    make_folder(tmp_path / "split" / "val", {"zebra": 2, "Apple": 2, "banana": 2}, start=60)
    for folder, ours in ((root, root), (tmp_path / "split" / "train", tmp_path / "split")):
        ds = from_folder(ours, 32, progress=False)
        theirs = keras.utils.image_dataset_from_directory(
            str(folder), image_size=(32, 32), shuffle=False, batch_size=None, verbose=False)
        labels = [int(y) for _, y in theirs.as_numpy_iterator()]
        expected = {Path(p).relative_to(ours).as_posix(): y for p, y in zip(theirs.file_paths, labels)}
        mine = {p: y for p, y in labels_by_file(ds).items() if not p.startswith("val/")}
        assert ds.classes == tuple(theirs.class_names)
        assert mine == expected


# --------------------------------------------------------------------------- what one image becomes


def test_every_format_pillow_reads_becomes_size_by_size_rgb(tmp_path):
    picture = photo(1, (60, 45))
    root = tmp_path / "formats"
    write(root / "a" / "photo.jpg", picture)
    write(root / "a" / "photo.png", picture, "PNG")
    write(root / "a" / "photo.bmp", picture, "BMP")
    write(root / "a" / "photo.webp", picture, "WEBP", quality=90)
    write(root / "a" / "photo.tiff", picture, "TIFF")
    frames = [picture, photo(2, (60, 45))]
    frames[0].save(root / "a" / "animated.gif", save_all=True, append_images=frames[1:])
    write(root / "b" / "grey.png", picture.convert("L"), "PNG")
    write(root / "b" / "cmyk.jpg", picture.convert("CMYK"), quality=95)
    write(root / "b" / "palette.png", picture.convert("P"), "PNG")
    grey16 = Image.fromarray((np.asarray(picture.convert("L"), np.uint16) * 257).astype(np.uint16))
    grey16.save(root / "b" / "grey16.png")
    ds = from_folder(root, 24, progress=False)
    assert len(ds.train) + len(ds.val) + len(ds.test) == 10
    for split in (ds.train, ds.val, ds.test):
        assert split.images.shape[1:] == (24, 24, 3) and split.images.dtype == np.uint8

    reference = image_files.decode(root / "a" / "photo.png", 24).astype(int)
    close = {"photo.bmp": 0, "photo.tiff": 0, "photo.jpg": 6, "photo.webp": 8, "animated.gif": 12, "cmyk.jpg": 8}
    for name, tolerance in close.items():
        path = next(root.rglob(name))
        assert np.abs(image_files.decode(path, 24).astype(int) - reference).mean() <= tolerance, name
    for name in ("grey.png", "grey16.png"):
        grey = image_files.decode(root / "b" / name, 24)
        assert np.array_equal(grey[..., 0], grey[..., 1]) and np.array_equal(grey[..., 1], grey[..., 2])
    assert np.abs(image_files.decode(root / "b" / "grey16.png", 24).astype(int)
                  - image_files.decode(root / "b" / "grey.png", 24)).max() <= 1


def test_transparency_is_flattened_onto_white(tmp_path):
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[..., 0] = 200  # red where opaque; the transparent half stores black
    rgba[:, :20, 3] = 255
    path = write(tmp_path / "alpha.png", Image.fromarray(rgba, "RGBA"), "PNG")
    out = image_files.decode(path, 40)
    assert out[:, :18].tolist() == np.broadcast_to([200, 0, 0], (40, 18, 3)).tolist()
    assert (out[:, 22:] == 255).all()


def test_exif_orientation_turns_the_photo_upright(tmp_path):
    picture = photo(4, (60, 40))
    exif = Image.Exif()
    exif[image_files.EXIF_ORIENTATION] = 6  # "rotate 90 degrees clockwise to display"
    sideways = write(tmp_path / "phone.jpg", picture, exif=exif.tobytes(), quality=95)
    upright = write(tmp_path / "upright.jpg", picture.transpose(Image.Transpose.ROTATE_270), quality=95)
    assert image_files.header(sideways)[3] and not image_files.header(upright)[3]
    turned, expected = image_files.decode(sideways, 32).astype(int), image_files.decode(upright, 32).astype(int)
    assert np.abs(turned - expected).mean() < 4
    assert np.abs(image_files.decode(sideways, 32).astype(int)
                  - np.asarray(picture.resize((48, 32)).crop((8, 0, 40, 32)))).mean() > 20  # not as stored


def test_resize_policy_is_torchvision_resize_then_centre_crop(tmp_path):
    import torchvision.transforms.functional as F

    path = write(tmp_path / "wide.png", photo(5, (420, 300)), "PNG")
    ours = image_files.decode(path, 96).astype(int)
    with Image.open(path) as opened:
        theirs = np.asarray(F.center_crop(F.resize(opened.convert("RGB"), 96), 96)).astype(int)
    assert np.abs(ours - theirs).mean() < 1.0


def test_jpeg_draft_decoding_matches_a_full_decode(tmp_path, monkeypatch):
    path = write(tmp_path / "large.jpg", photo(6, (800, 600)).resize((800, 600)), quality=95)
    fast = image_files.decode(path, 96).astype(int)
    monkeypatch.setattr(image_files, "DRAFT_MARGIN", 10**6)  # never draft: every pixel decoded
    full = image_files.decode(path, 96).astype(int)
    assert np.abs(fast - full).mean() < 0.5


# --------------------------------------------------------------------------- bad input


def damaged_folder(root: Path) -> Path:
    make_folder(root, {"cat": 4, "dog": 4})
    good = io.BytesIO()
    photo(7, (200, 150)).save(good, "JPEG")
    (root / "cat" / "truncated.jpg").write_bytes(good.getvalue()[: len(good.getvalue()) // 2])
    (root / "dog" / "notes.jpg").write_text("these are my notes, not a photo")
    (root / "dog" / "empty.png").write_bytes(b"")
    (root / "bird").mkdir()
    (root / "bird" / "README.md").write_text("photos to come")
    return root


@pytest.mark.parametrize("name, reason", [("truncated.jpg", "truncated"), ("notes.jpg", "not an image"),
                                          ("empty.png", "empty file"), ("bird/", "holds no images")])
def test_each_damaged_file_is_named_with_the_fix(tmp_path, name, reason):
    root = damaged_folder(tmp_path / "pets")
    with pytest.raises(FolderError) as caught:
        from_folder(root, 32, progress=False)
    message = str(caught.value)
    assert name in message and reason in message
    assert "on_error='skip'" in message and "tlcourse inspect" in message


def test_all_file_problems_are_listed_in_one_error(tmp_path):
    root = damaged_folder(tmp_path / "pets")
    shutil.rmtree(root / "bird")
    with pytest.raises(FolderError, match=r"3 problem\(s\)") as caught:
        from_folder(root, 32, progress=False)
    for name in ("cat/truncated.jpg", "dog/notes.jpg", "dog/empty.png"):
        assert name in str(caught.value)


def test_an_unreadable_file_is_named(tmp_path):
    root = make_folder(tmp_path / "pets", {"cat": 3, "dog": 3})
    target = root / "cat" / "locked.jpg"
    if os.geteuid() == 0:  # root reads any file: a link to nowhere is unreadable for everyone
        target.symlink_to(tmp_path / "gone.jpg")
    else:
        write(target, photo(1))
        target.chmod(0)
    with pytest.raises(FolderError, match=r"cat/locked.jpg: cannot be read"):
        from_folder(root, 32, progress=False)


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda r: None, "does not exist"),
        (lambda r: r.write_text("x"), "is a file, not a folder"),
        (lambda r: r.mkdir(parents=True), "holds no class folders"),
        (lambda r: (r.mkdir(parents=True), (r / "README.md").write_text("x")), "holds no class folders"),
        (lambda r: make_folder(r, {"cat": 4}), "single class"),
        (lambda r: (make_folder(r, {"cat": 3, "dog": 3}), write(r / "stray.jpg", photo(0))), "directly inside it"),
        (lambda r: (make_folder(r / "train", {"cat": 3, "dog": 3}), make_folder(r / "extra", {"x": 1})),
         "mixes split folders"),
        (lambda r: (make_folder(r / "train", {"cat": 3, "dog": 3}), make_folder(r / "val", {"owl": 1})),
         "train/ lacks: owl"),
        (lambda r: make_folder(r / "val", {"cat": 3, "dog": 3}), "no train/ folder"),
        (lambda r: make_folder(r, {"cat": 1, "dog": 1}), "too few"),
    ],
    ids=["missing", "a-file", "empty", "only-readme", "one-class", "loose-images", "mixed-layout",
         "unknown-val-class", "no-train", "too-few"],
)
def test_a_folder_no_layout_fits_gets_a_clear_error(tmp_path, build, match):
    root = tmp_path / "mine"
    build(root)
    with pytest.raises(FolderError, match=match):
        from_folder(root, 32, progress=False, on_error="skip")


def test_files_that_are_not_images_and_junk_are_ignored_silently(tmp_path):
    root = make_folder(tmp_path / "pets", {"cat": 5, "dog": 5})
    (root / "README.md").write_text("my pets")
    (root / "LICENSE.txt").write_text("CC0")
    (root / "cat" / "Thumbs.db").write_bytes(b"\0" * 10)
    (root / "cat" / ".DS_Store").write_bytes(b"\0" * 10)
    (root / "dog" / "notes.txt").write_text("good dogs")
    write(root / "dog" / ".hidden.jpg", photo(1))
    write(root / ".ipynb_checkpoints" / "cat" / "copy.jpg", photo(2))
    write(root / "cat" / ".ipynb_checkpoints" / "copy.jpg", photo(2))
    (root / "__MACOSX" / "cat").mkdir(parents=True)
    (root / "__MACOSX" / "cat" / "._cat_000.jpg").write_bytes(b"\0\5\26\7 resource fork")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = from_folder(root, 32, progress=False)
    assert ds.classes == ("cat", "dog")
    assert len(ds.train) + len(ds.val) + len(ds.test) == 10


def test_skip_loads_the_rest_and_warns_once_listing_what_it_left_out(tmp_path):
    root = damaged_folder(tmp_path / "pets")
    with pytest.warns(FolderWarning) as caught:
        ds = from_folder(root, 32, progress=False, on_error="skip")
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "left out 4" in message
    for name in ("cat/truncated.jpg", "dog/notes.jpg", "dog/empty.png", "bird/"):
        assert name in message
    assert ds.classes == ("cat", "dog")
    assert len(ds.train) + len(ds.val) + len(ds.test) == 8
    assert len(ds.extra["skipped"]) == 4 and any("truncated.jpg" in s for s in ds.extra["skipped"])


def test_skip_renumbers_the_labels_when_a_class_has_no_readable_image(tmp_path):
    root = make_folder(tmp_path / "pets", {"ant": 3, "cat": 3, "dog": 3})
    for path in (root / "ant").iterdir():
        path.write_text("not a photo")
    with pytest.warns(FolderWarning, match="ant/: class left with no readable image"):
        ds = from_folder(root, 32, progress=False, on_error="skip")
    assert ds.classes == ("cat", "dog")
    assert set(labels_by_file(ds).items()) >= {("cat/cat_000.jpg", 0), ("dog/dog_000.jpg", 1)}


def test_a_folder_too_large_for_memory_is_refused_before_decoding(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "pets", {"cat": 5, "dog": 5})
    monkeypatch.setattr(folders, "memory_budget", lambda: 10 * 64 * 64 * 3 - 1)

    def never(*args):
        raise AssertionError("decoded although the folder was too large")

    monkeypatch.setattr(image_files, "decode", never)
    with pytest.raises(FolderError, match=r"size=.*per_class=") as caught:
        from_folder(root, 64, progress=False)
    assert "size=63 fits" in str(caught.value)


def test_bad_options_get_clear_errors(tmp_path):
    root = make_folder(tmp_path / "pets", {"cat": 3, "dog": 3})
    with pytest.raises(ValueError, match="on_error"):
        from_folder(root, 32, on_error="ignore")
    with pytest.raises(ValueError, match="fractions"):
        from_folder(root, 32, fractions=(0.5, 0.5))
    with pytest.raises(ValueError, match="size"):
        from_folder(root, 2.5)


# --------------------------------------------------------------------------- the cache


def cache_files(tmp_path) -> list[Path]:
    return sorted((tmp_path / "cache").rglob("*")) if (tmp_path / "cache").exists() else []


def test_second_load_reads_the_cache_and_a_changed_file_is_decoded_again(tmp_path, monkeypatch, capsys):
    root = make_folder(tmp_path / "pets", {"cat": 5, "dog": 5})
    first = from_folder(root, 32)
    assert "decoding pets" in capsys.readouterr().err  # the progress bar, on the first load only
    calls = []
    real = image_files.decode
    monkeypatch.setattr(image_files, "decode", lambda path, size: calls.append(path) or real(path, size))
    second = from_folder(root, 32)
    assert calls == [] and "decoding" not in capsys.readouterr().err
    assert np.array_equal(first.train.images, second.train.images)

    changed = root / "cat" / "cat_001.jpg"
    write(changed, photo(50))
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    from_folder(root, 32, progress=False)
    assert len(calls) == 10
    assert len([p for p in cache_files(tmp_path) if p.suffix == ".npz"]) == 1  # the stale entry is gone
    from_folder(root, 48, progress=False)  # other options: an entry of their own
    assert len([p for p in cache_files(tmp_path) if p.suffix == ".npz"]) == 2


def test_a_damaged_folder_raises_again_from_the_cache(tmp_path):
    root = damaged_folder(tmp_path / "pets")
    shutil.rmtree(root / "bird")
    with pytest.warns(FolderWarning):
        from_folder(root, 32, progress=False, on_error="skip")
    with pytest.raises(FolderError, match="truncated.jpg"):
        from_folder(root, 32, progress=False)


@pytest.mark.parametrize("where", ["decoding", "writing"])
def test_nothing_half_written_stays_in_the_cache(tmp_path, monkeypatch, where):
    root = make_folder(tmp_path / "pets", {"cat": 5, "dog": 5})
    if where == "decoding":
        def interrupted(path, size):
            raise KeyboardInterrupt
        monkeypatch.setattr(image_files, "decode", interrupted)
    else:
        def full_disk(handle, **arrays):
            handle.write(b"PK\3\4 half")
            raise OSError(28, "No space left on device")
        monkeypatch.setattr(np, "savez", full_disk)
    with pytest.raises((KeyboardInterrupt, OSError)):
        from_folder(root, 32, progress=False)
    assert [p for p in cache_files(tmp_path) if p.is_file()] == []


def test_an_unreadable_cache_entry_is_decoded_again(tmp_path):
    root = make_folder(tmp_path / "pets", {"cat": 5, "dog": 5})
    first = from_folder(root, 32, progress=False)
    (entry,) = [p for p in cache_files(tmp_path) if p.suffix == ".npz"]
    entry.write_bytes(b"garbage")
    again = from_folder(root, 32, progress=False)
    assert np.array_equal(first.test.images, again.test.images)


# --------------------------------------------------------------------------- tlcourse inspect


def run_cli(*args, cwd=None):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", "tlcourse", *args], capture_output=True, text=True, env=env, cwd=cwd)


def test_inspect_lists_each_problem_and_exits_non_zero(tmp_path):
    root = damaged_folder(tmp_path / "pets")
    (root / "LICENSE.txt").write_text("CC0")
    result = run_cli("inspect", str(root), "--size", "64")
    assert result.returncode == 1, result.stderr
    out = result.stdout
    for expected in ("cat/truncated.jpg: truncated", "dog/notes.jpg: not an image", "dog/empty.png: empty file",
                     "bird/: class folder holds no images", "problems (4)", "ignored  2 file(s)"):
        assert expected in out
    assert "cat " in out and "decoded at 64x64" in out


def test_inspect_of_a_clean_folder_counts_every_split_and_exits_zero(tmp_path):
    root = make_folder(tmp_path / "pets", {"cat": 10, "dog": 5})
    write(root / "dog" / "grey.png", photo(1).convert("L"), "PNG")
    result = run_cli("inspect", str(root))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert any(line.split() == ["cat", "6", "2", "2", "10"] for line in lines)
    assert "JPEG 15, PNG 1" in result.stdout and "L 1" in result.stdout and "problems none" in result.stdout


def test_inspect_of_a_folder_no_layout_fits_says_why(tmp_path):
    result = run_cli("inspect", str(tmp_path / "nowhere"))
    assert result.returncode == 1 and "does not exist" in result.stderr




# --------------------------------------------------------------------------- what learners' folders hold


def test_more_photo_formats_load_and_an_unreadable_heic_photo_names_its_fix(tmp_path):
    root = make_folder(tmp_path / "pets", {"cat": 3, "dog": 3})
    write(root / "cat" / "from_a_browser.jfif", photo(81))
    write(root / "dog" / "UPPER.JPG", photo(82))
    iphone = root / "dog" / "IMG_0001.HEIC"
    iphone.write_bytes(b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + b"\0" * 64)
    with pytest.raises(FolderError, match=r"dog/IMG_0001.HEIC: a HEIC/HEIF photo .*pillow-heif"):
        from_folder(root, 32, progress=False)
    iphone.unlink()
    ds = from_folder(root, 32, progress=False)
    assert {"cat/from_a_browser.jfif", "dog/UPPER.JPG"} <= set(labels_by_file(ds))


def test_a_photo_too_large_to_decode_safely_is_named(tmp_path, monkeypatch):
    from PIL import Image as PILImage

    root = make_folder(tmp_path / "pets", {"cat": 3, "dog": 3})
    write(root / "cat" / "panorama.png", photo(1, (400, 100)), "PNG")
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 10_000)  # the panorama is over twice the limit
    with pytest.raises(FolderError, match=r"cat/panorama.png: too large to decode safely"):
        from_folder(root, 32, progress=False)


def test_float_and_wide_integer_grey_images_keep_their_picture(tmp_path):
    grey = np.asarray(photo(3).convert("L"), np.float64)
    write(tmp_path / "unit.tiff", Image.fromarray((grey / 255).astype(np.float32), "F"), "TIFF")
    write(tmp_path / "wide.tiff", Image.fromarray((grey * 1000).astype(np.int32), "I"), "TIFF")
    reference = image_files.decode(write(tmp_path / "grey.png", Image.fromarray(grey.astype(np.uint8)), "PNG"), 32)
    for name in ("unit.tiff", "wide.tiff"):
        decoded = image_files.decode(tmp_path / name, 32).astype(int)
        assert np.abs(decoded - reference).mean() < 3 * 255 / grey.max(), name


def test_a_wrapper_folder_from_an_unzipped_archive_gets_the_right_fix(tmp_path):
    make_folder(tmp_path / "download" / "my_photos", {"cat": 3, "dog": 3})
    (tmp_path / "download" / "__MACOSX").mkdir()
    with pytest.raises(FolderError, match=r"give .*download/my_photos instead"):
        from_folder(tmp_path / "download", 32, progress=False)


def test_a_class_named_like_a_split_is_told_to_rename(tmp_path):
    make_folder(tmp_path / "vehicles", {"car": 3, "plane": 3, "train": 3})
    with pytest.raises(FolderError, match="rename a class"):
        from_folder(tmp_path / "vehicles", 32, progress=False)


def test_a_validation_class_differing_only_in_case_is_pointed_out(tmp_path):
    make_folder(tmp_path / "set" / "train", {"roses": 3, "tulips": 3})
    make_folder(tmp_path / "set" / "val", {"Roses": 2, "tulips": 2}, start=10)
    with pytest.raises(FolderError, match=r"Roses \(train/ has roses: names are case-sensitive\)"):
        from_folder(tmp_path / "set", 32, progress=False)


def test_images_of_a_class_whose_train_folder_is_empty_are_named_when_left_out(tmp_path):
    make_folder(tmp_path / "set" / "train", {"roses": 3, "tulips": 3, "daisy": 3})
    shutil.rmtree(tmp_path / "set" / "train" / "daisy")
    (tmp_path / "set" / "train" / "daisy").mkdir()
    make_folder(tmp_path / "set" / "val", {"daisy": 2, "roses": 2, "tulips": 2}, start=10)
    with pytest.warns(FolderWarning, match=r"val/daisy/: 2 image\(s\) left out: train/ has none"):
        ds = from_folder(tmp_path / "set", 32, progress=False, on_error="skip")
    assert ds.classes == ("roses", "tulips")


def test_a_link_back_up_the_tree_adds_no_photo_twice(tmp_path):
    root = make_folder(tmp_path / "pets", {"cat": 4, "dog": 4})
    (root / "cat" / "up").symlink_to(root, target_is_directory=True)
    (root / "dog" / "self").symlink_to(root / "dog", target_is_directory=True)
    ds = from_folder(root, 32, progress=False)
    assert len(labels_by_file(ds)) == 8


def test_copies_across_splits_and_classes_load_with_a_warning(tmp_path):
    make_folder(tmp_path / "set" / "train", {"cat": 4, "dog": 4})
    make_folder(tmp_path / "set" / "val", {"cat": 2, "dog": 2}, start=10)
    shutil.copyfile(tmp_path / "set" / "train" / "cat" / "cat_000.jpg", tmp_path / "set" / "val" / "cat" / "again.jpg")
    shutil.copyfile(tmp_path / "set" / "train" / "cat" / "cat_001.jpg", tmp_path / "set" / "train" / "dog" / "odd.jpg")
    with pytest.warns(FolderWarning) as caught:
        from_folder(tmp_path / "set", 32, progress=False)
    message = str(caught[0].message)
    assert "1 file(s) have an identical copy in another split" in message and "again.jpg" in message
    assert "1 file(s) have an identical copy in another class" in message and "odd.jpg" in message
    report = inspect_folder(tmp_path / "set", 32)
    assert report.ok and any("another split" in c for c in report.cautions)


def test_a_class_missing_from_a_split_loads_with_a_warning(tmp_path):
    make_folder(tmp_path / "set" / "train", {"roses": 4, "tulips": 4})
    make_folder(tmp_path / "set" / "val", {"tulips": 2}, start=10)
    make_folder(tmp_path / "set" / "test", {"tulips": 2}, start=20)
    with pytest.warns(FolderWarning, match="roses has no val images.*roses has no test images"):
        ds = from_folder(tmp_path / "set", 32, progress=False)
    assert ds.classes == ("roses", "tulips")


def test_the_memory_limit_follows_a_containers_limit(tmp_path, monkeypatch):
    limit = tmp_path / "memory.max"
    limit.write_text(str(2 * 2**30) + "\n")
    monkeypatch.setattr(folders, "CGROUP_LIMITS", (str(tmp_path / "absent"), str(limit)))
    assert folders.memory_budget() == 2**29
    limit.write_text("max\n")  # no limit set
    assert folders.memory_budget() > 2**29 or os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") <= 2 * 2**30


def test_inspect_counts_a_folder_too_large_for_memory_as_a_problem(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "pets", {"cat": 6, "dog": 6})
    monkeypatch.setattr(folders, "memory_budget", lambda: 6 * 64 * 64 * 3)
    report = inspect_folder(root, size=64)
    assert not report.ok and "per_class=3 fits at size=64" in report.text()
    assert inspect_folder(root, size=64, per_class=3).ok


def test_fractions_must_give_every_split_a_share(tmp_path):
    root = make_folder(tmp_path / "pets", {"cat": 5, "dog": 5})
    with pytest.raises(ValueError, match="each above 0"):
        from_folder(root, 32, fractions=(0.8, 0.2, 0.0))
