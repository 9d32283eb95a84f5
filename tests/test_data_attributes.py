"""The CUB-200-2011 loader (full profile), on a small archive in CUB's own layout placed in a temporary cache.

The fake archive lists all 200 species and their attribute table but holds photos of only five:
three seen ones and two of the 50 unseen species of Xian et al.'s proposed split. Each photo is a
grey field with its bird's bounding box painted in the species' colour.
"""
import dataclasses
import hashlib
import io
import tarfile

import numpy as np
import pytest
from PIL import Image

from tlcourse import data
from tlcourse import zeroshot as zs
from tlcourse.data import attributes, download, full
from tlcourse.data.download import ChecksumError

PHOTOS = {1: 5, 2: 5, 3: 5, 4: 2, 12: 2}  # class number -> photos; 4 and 12 are unseen
COLOUR = {1: (220, 30, 30), 2: (30, 200, 30), 3: (30, 30, 220), 4: (220, 220, 30), 12: (30, 220, 220)}
ATTRIBUTES = ("has_bill_shape::hooked", "has_wing_color::blue", "has_size::small_(5_-_9_in)")


def tar_gz(members: dict) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()


def photo(colour, size, box, grey=False) -> bytes:
    """A grey JPEG of ``size`` (width, height) with ``box`` (x, y, w, h) filled with ``colour``."""
    pixels = np.full((size[1], size[0], 3), 128, np.uint8)
    x, y, w, h = box
    pixels[y : y + h, x : x + w] = colour
    image = Image.fromarray(pixels)
    if grey:
        image = image.convert("L")
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def fake_cub():
    root = "CUB_200_2011"
    folders = [f"{k:03d}.{name}" for k, name in enumerate(attributes.CUB_FOLDER_NAMES, start=1)]
    percentages = (np.arange(200 * len(ATTRIBUTES)).reshape(200, len(ATTRIBUTES)) % 101).astype(float)
    members, images, labels, boxes, number = {}, [], [], [], 0
    for label, count in PHOTOS.items():
        for k in range(count):
            number += 1
            size = (300, 200) if k % 2 else (180, 260)
            box = (40, 30, 90, 70)
            path = f"{folders[label - 1]}/bird_{number:04d}.jpg"
            members[f"{root}/images/{path}"] = photo(COLOUR[label], size, box, grey=(label == 1 and k == 0))
            images.append(f"{number} {path}")
            labels.append(f"{number} {label}")
            boxes.append(f"{number} {box[0]}.0 {box[1]}.0 {box[2]}.0 {box[3]}.0")
    members[f"{root}/images.txt"] = "\n".join(images).encode()
    members[f"{root}/image_class_labels.txt"] = "\n".join(labels).encode()
    members[f"{root}/bounding_boxes.txt"] = "\n".join(boxes).encode()
    members[f"{root}/classes.txt"] = "\n".join(f"{k} {f}" for k, f in enumerate(folders, start=1)).encode()
    members[f"{root}/attributes/class_attribute_labels_continuous.txt"] = "\n".join(
        " ".join(f"{v:.6f}" for v in row) for row in percentages).encode()
    members["attributes.txt"] = "\n".join(f"{k} {a}" for k, a in enumerate(ATTRIBUTES, start=1)).encode()
    members[f"{root}/README"] = b"fake"
    return {"CUB_200_2011.tgz": tar_gz(members)}, percentages


def place(monkeypatch, cache, files):
    folder = cache / "datasets" / "cub"
    folder.mkdir(parents=True)
    for name, payload in files.items():
        (folder / name).write_bytes(payload)
    entries = tuple(dataclasses.replace(r, known_hash="sha256:" + hashlib.sha256(files[r.filename]).hexdigest())
                    for r in download.REMOTE_FILES["cub"])
    monkeypatch.setitem(download.REMOTE_FILES, "cub", entries)
    return folder


def test_cub_decodes_bird_crops_attributes_and_the_proposed_unseen_split(monkeypatch, cache):
    files, percentages = fake_cub()
    folder = place(monkeypatch, cache, files)

    ds = data.load("cub")

    assert ds.image_shape == (attributes.CUB_SIZE, attributes.CUB_SIZE, 3) and ds.card.profile == "full"
    assert ds.classes[0] == "Black footed Albatross" and ds.num_classes == 200
    assert ds.attribute_names == ATTRIBUTES and np.allclose(ds.attributes, percentages / 100)
    assert len(ds.unseen) == 50 and {3, 11} <= set(ds.unseen) and 0 not in ds.unseen
    # Seen photos are split 3/1/1 per class; unseen photos are all in test, beside seen ones.
    assert np.bincount(ds.train.labels).tolist() == [3, 3, 3]
    assert sorted(ds.test.labels.tolist()) == [0, 1, 2, 3, 3, 11, 11]
    assert not np.isin(np.concatenate([ds.train.labels, ds.val.labels]), ds.unseen).any()
    # The crop is centred on the box, so the middle of every image is its species' colour (or, for
    # the one grey photo, the same grey in R, G and B).
    greys = 0
    for split in (ds.train, ds.val, ds.test):
        for image, label in zip(split.images, split.labels):
            centre = image[70:90, 70:90].reshape(-1, 3).mean(axis=0)
            if label == 0 and np.ptp(centre) < 3:
                greys += 1
                continue
            assert np.allclose(centre, COLOUR[label + 1], atol=12), (label, centre)
    assert greys == 1
    assert (folder / "cub.npz").is_file() and full.is_cached("cub")


def test_cub_feeds_the_zero_shot_tables(monkeypatch, cache):
    place(monkeypatch, cache, fake_cub()[0])
    ds = data.load("cub")
    table = zs.AttributeTable.from_dataset(ds)
    assert table.shape == (200, 3) and not table.is_binary
    assert len(table.subset(ds.seen)) == 150 and len(table.subset(ds.unseen)) == 50


def test_an_archive_without_the_attribute_tables_is_refused(monkeypatch, cache):
    files = {"CUB_200_2011.tgz": tar_gz({"CUB_200_2011/images.txt": b"1 a/b.jpg"})}
    place(monkeypatch, cache, files)
    with pytest.raises(ValueError, match="lacks .*class_attribute_labels_continuous.txt"):
        data.load("cub")


def test_a_corrupt_cub_archive_is_deleted_and_reported(monkeypatch, cache):
    files, _ = fake_cub()
    folder = place(monkeypatch, cache, files)
    (folder / "CUB_200_2011.tgz").write_bytes(files["CUB_200_2011.tgz"][:-10])
    with pytest.raises(ChecksumError, match="tlcourse fetch --force cub"):
        data.load("cub")
    assert not (folder / "CUB_200_2011.tgz").exists()
