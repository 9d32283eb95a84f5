"""The full-profile loaders, on small files placed in a temporary cache (no network is ever used).

Each test writes tiny archives in the real formats (IDX.gz, CIFAR's pickled batches in a .tar.gz,
JPEGs in a .zip or .tgz), and points the registry of remote files at their checksums.
"""
import dataclasses
import gzip
import hashlib
import io
import pickle
import struct
import tarfile
import zipfile

import numpy as np
import pytest
from PIL import Image

from tlcourse import data
from tlcourse.data import download, full, registry
from tlcourse.data.download import ChecksumError, DatasetUnavailable, DownloadError
from tlcourse.data.mnistm import blend_on_photos

REAL_REACHABLE = download.reachable  # kept before any test replaces it


def sha256(payload: bytes) -> str:
    return "sha256:" + hashlib.sha256(payload).hexdigest()


def expect(monkeypatch, dataset, files):
    """Make the registry of remote files expect exactly these contents for ``dataset``."""
    entries = tuple(
        dataclasses.replace(r, known_hash=sha256(files[r.filename])) for r in download.REMOTE_FILES[dataset]
    )
    monkeypatch.setitem(download.REMOTE_FILES, dataset, entries)


def place(monkeypatch, cache, dataset, files):
    """Put the files in the cache, as `tlcourse fetch` would have, and expect their checksums."""
    folder = cache / "datasets" / dataset
    folder.mkdir(parents=True, exist_ok=True)
    for name, payload in files.items():
        (folder / name).write_bytes(payload)
    expect(monkeypatch, dataset, files)
    return folder


def forget_loaded(monkeypatch):
    monkeypatch.setattr(registry, "_RAW_CACHE", {})


# --------------------------------------------------------------------------- fake source files


def idx_gz(array: np.ndarray, magic: int) -> bytes:
    header = struct.pack(f">i{array.ndim}i", magic, *array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes(), mtime=0)


def fake_mnist(n_train=120, n_test=20):
    rng = np.random.default_rng(0)
    train_x = rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8)
    test_x = rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8)
    train_y, test_y = np.arange(n_train) % 10, (np.arange(n_test) * 3) % 10
    files = {
        "train-images-idx3-ubyte.gz": idx_gz(train_x, 2051),
        "train-labels-idx1-ubyte.gz": idx_gz(train_y, 2049),
        "t10k-images-idx3-ubyte.gz": idx_gz(test_x, 2051),
        "t10k-labels-idx1-ubyte.gz": idx_gz(test_y, 2049),
    }
    return files, (train_x, train_y, test_x, test_y)


def tar_gz(members: dict) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()


def cifar_batch(first: int, n: int) -> bytes:
    """n images; image k has red = its global index, green 100, blue 200; label = index % 10."""
    index = np.arange(first, first + n)
    planes = np.empty((n, 3, 32, 32), np.uint8)
    planes[:, 0], planes[:, 1], planes[:, 2] = index[:, None, None], 100, 200
    batch = {b"data": planes.reshape(n, 3072), b"labels": list(index % 10), b"batch_label": b"fake"}
    return pickle.dumps(batch)


def fake_cifar10():
    members = {
        "cifar-10-batches-py/batches.meta": pickle.dumps({b"label_names": [c.encode() for c in full.CIFAR10_CLASSES]}),
        "cifar-10-batches-py/data_batch_1": cifar_batch(0, 30),
        "cifar-10-batches-py/data_batch_2": cifar_batch(30, 30),
        "cifar-10-batches-py/test_batch": cifar_batch(60, 10),
        "cifar-10-batches-py/readme.html": b"<html></html>",
    }
    return {"cifar-10-python.tar.gz": tar_gz(members)}


def jpeg(color, size) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


ANT, BEE = (200, 30, 30), (30, 30, 200)


def fake_hymenoptera():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        for split, count in (("train", 5), ("val", 4)):
            for k in range(count):
                zipped.writestr(f"hymenoptera_data/{split}/ants/ant{k}.jpg", jpeg(ANT, (300, 200)))
                zipped.writestr(f"hymenoptera_data/{split}/bees/bee{k}.jpg", jpeg(BEE, (180, 260)))
        zipped.writestr("hymenoptera_data/train/ants/imageNotFound.gif", b"GIF89a")
    return {"hymenoptera_data.zip": buffer.getvalue()}


def fake_bsds500():
    """Two photos per split; the first of each is portrait. The green channel numbers them."""
    members, number = {}, 0
    for split in ("train", "val", "test"):
        for k in range(2):
            size = (321, 481) if k == 0 else (481, 321)  # PIL sizes are (width, height)
            members[f"BSR/BSDS500/data/images/{split}/{100 + number}.jpg"] = jpeg((90, 20 * number, 160), size)
            number += 1
        members[f"BSR/BSDS500/data/images/{split}/Thumbs.db"] = b"not a photo"
    members["BSR/BSDS500/data/groundTruth/train/100.mat"] = b"segmentations, not photos"
    return {"BSR_bsds500.tgz": tar_gz(members)}


# --------------------------------------------------------------------------- decoding


def test_mnist_decodes_idx_files_into_nhwc_with_a_fixed_validation_carve(monkeypatch, cache):
    files, (train_x, train_y, test_x, test_y) = fake_mnist()
    place(monkeypatch, cache, "mnist", files)

    ds = data.load("mnist")

    assert ds.train.images.shape[1:] == (28, 28, 1) and ds.train.images.dtype == np.uint8
    assert len(ds.train) + len(ds.val) == 120 and len(ds.test) == 20
    assert np.bincount(ds.val.labels, minlength=10).tolist() == [1] * 10  # 120 * 5,000/60,000, stratified
    assert np.array_equal(ds.test.images[..., 0], test_x) and np.array_equal(ds.test.labels, test_y)
    # Every training digit lands in train or val exactly once, with its own label.
    pool = {img.tobytes(): label for img, label in zip(train_x, train_y)}
    seen = [(img[..., 0].tobytes(), label) for s in (ds.train, ds.val) for img, label in zip(s.images, s.labels)]
    assert len({key for key, _ in seen}) == 120 and all(pool[key] == label for key, label in seen)
    assert ds.classes == tuple("0123456789") and ds.card.profile == "full"


def test_second_load_reads_the_decoded_arrays_without_the_downloads(monkeypatch, cache):
    folder = place(monkeypatch, cache, "mnist", fake_mnist()[0])
    first = data.load("mnist")
    assert (folder / "mnist.npz").is_file()
    for archive in folder.glob("*.gz"):
        archive.unlink()
    forget_loaded(monkeypatch)

    second = data.load("mnist")

    for split in ("train", "val", "test"):
        assert np.array_equal(getattr(first, split).images, getattr(second, split).images)
        assert np.array_equal(getattr(first, split).labels, getattr(second, split).labels)
    assert not list(folder.glob("*.part*")), "no temporary file may be left next to the arrays"


def test_decoded_arrays_are_rebuilt_when_the_expected_checksums_change(monkeypatch, cache):
    folder = place(monkeypatch, cache, "mnist", fake_mnist(n_train=120)[0])
    assert len(data.load("mnist").test) == 20
    for archive in folder.glob("*.gz"):
        archive.unlink()
    place(monkeypatch, cache, "mnist", fake_mnist(n_train=240, n_test=30)[0])
    forget_loaded(monkeypatch)

    assert len(data.load("mnist").test) == 30


def test_an_unreadable_npz_is_rebuilt_from_the_downloads(monkeypatch, cache):
    folder = place(monkeypatch, cache, "mnist", fake_mnist()[0])
    (folder / "mnist.npz").write_bytes(b"half of a zip file")
    assert len(data.load("mnist").test) == 20


def test_cifar10_batches_become_channels_last_images(monkeypatch, cache):
    place(monkeypatch, cache, "cifar10", fake_cifar10())

    ds = data.load("cifar10")

    assert ds.train.images.shape[1:] == (32, 32, 3)
    assert len(ds.train) + len(ds.val) == 60 and len(ds.val) > 0 and len(ds.test) == 10
    for split in (ds.train, ds.val, ds.test):
        red = split.images[:, 0, 0, 0].astype(int)
        assert np.array_equal(split.labels, red % 10), "each label must stay with its image"
        assert (split.images[..., 1] == 100).all() and (split.images[..., 2] == 200).all()
    assert sorted(ds.test.images[:, 0, 0, 0].tolist()) == list(range(60, 70))
    assert ds.classes[0] == "airplane" and ds.num_classes == 10


def test_hymenoptera_photos_become_224_squares_with_their_folder_labels(monkeypatch, cache):
    place(monkeypatch, cache, "hymenoptera", fake_hymenoptera())

    ds = data.load("hymenoptera")

    assert ds.image_shape == (224, 224, 3) and ds.classes == ("ants", "bees")
    assert len(ds.train) == 10, "the stray .gif is skipped, like torchvision's ImageFolder skips it"
    assert len(ds.val) + len(ds.test) == 8 and len(ds.val) == len(ds.test) == 4
    for split in (ds.train, ds.val, ds.test):
        mean_colour = split.images.reshape(len(split), -1, 3).mean(axis=1)
        is_red = mean_colour[:, 0] > mean_colour[:, 2]
        assert np.array_equal(is_red, split.labels == 0)


def test_bsds500_photos_keep_the_source_splits_and_lie_landscape(monkeypatch, cache):
    place(monkeypatch, cache, "bsds500", fake_bsds500())

    ds = data.load("bsds500")

    assert ds.image_shape == (321, 481, 3)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (2, 2, 2)
    numbers = {split: sorted(np.round(s.images[..., 1].mean(axis=(1, 2)) / 20).astype(int).tolist())
               for split, s in (("train", ds.train), ("val", ds.val), ("test", ds.test))}
    assert numbers == {"train": [0, 1], "val": [2, 3], "test": [4, 5]}


def test_mnist_m_blends_mnist_over_bsds500_training_photos(monkeypatch, cache):
    files, (train_x, _, test_x, _) = fake_mnist()
    place(monkeypatch, cache, "mnist", files)
    place(monkeypatch, cache, "bsds500", fake_bsds500())

    digits, photos, target = data.load("mnist"), data.load("bsds500"), data.load("mnist_m")

    assert target.image_shape == (28, 28, 3) and target.classes == digits.classes
    for split in ("train", "val", "test"):
        assert np.array_equal(getattr(target, split).labels, getattr(digits, split).labels)
    # The blend runs over the digits in file order (train file, then test file).
    expected = blend_on_photos(np.concatenate([train_x, test_x]), list(photos.train.images), seed=full.MNIST_M_SEED)
    assert np.array_equal(target.test.images, expected[len(train_x):])
    carved = {img.tobytes() for s in (target.train, target.val) for img in s.images}
    assert carved == {img.tobytes() for img in expected[: len(train_x)]}
    assert full.is_cached("mnist_m")


def test_every_full_dataset_is_registered_with_a_full_card(cache):
    names = set(data.names("full"))
    assert {"mnist", "cifar10", "hymenoptera", "bsds500", "mnist_m"} <= names
    assert set(download.REMOTE_FILES) <= names


def test_every_download_has_a_published_sha256_and_an_https_mirror():
    for dataset, remotes in download.REMOTE_FILES.items():
        for remote in remotes:
            algorithm, digest = remote.known_hash.split(":")
            assert algorithm == "sha256" and len(digest) == 64 and int(digest, 16) >= 0, (dataset, remote.filename)
            assert remote.urls and all(url.startswith("https://") for url in remote.urls)
            assert remote.hash_source.startswith("https://") and remote.size > 0


# --------------------------------------------------------------------------- failures that say what to do


def test_offline_without_a_cached_copy_says_how_to_prefetch(monkeypatch, cache):
    with pytest.raises(DatasetUnavailable) as caught:
        data.load("cifar10")
    message = str(caught.value)
    assert isinstance(caught.value, RuntimeError)
    assert "tlcourse fetch cifar10" in message
    assert str(cache / "datasets" / "cifar10") in message and "cifar-10-python.tar.gz" in message
    assert not (cache / "datasets" / "cifar10").exists() or not any((cache / "datasets" / "cifar10").iterdir())


def test_tlcourse_offline_forbids_downloads_without_probing(monkeypatch, cache):
    monkeypatch.setenv("TLCOURSE_OFFLINE", "1")
    monkeypatch.setattr(download, "reachable", lambda *a, **k: pytest.fail("must not touch the network"))
    with pytest.raises(DatasetUnavailable, match="TLCOURSE_OFFLINE"):
        data.load("hymenoptera")


def test_a_corrupt_cached_file_raises_a_checksum_error_and_is_not_trusted_later(monkeypatch, cache):
    files = fake_mnist()[0]
    folder = place(monkeypatch, cache, "mnist", files)
    bad = folder / "train-labels-idx1-ubyte.gz"
    bad.write_bytes(bad.read_bytes()[:-3] + b"xyz")

    with pytest.raises(ChecksumError) as caught:
        data.load("mnist")

    assert "tlcourse fetch --force mnist" in str(caught.value) and str(bad) in str(caught.value)
    assert not bad.exists(), "the corrupt file must not stay where a later load would read it"
    assert not (folder / "mnist.npz").exists()
    with pytest.raises(DatasetUnavailable):
        data.load("mnist")


class Server:
    """A stand-in for pooch's HTTP downloader: serves bytes by URL, optionally cutting off."""

    def __init__(self, payloads, cut_after=None):
        self.payloads, self.cut_after, self.requested = payloads, cut_after, []

    def __call__(self, url, output_file, pooch):
        self.requested.append(url)
        payload = self.payloads[url]
        with open(output_file, "wb") as stream:
            if self.cut_after is None:
                stream.write(payload)
                return
            stream.write(payload[: self.cut_after])
        raise ConnectionResetError("connection reset by peer")


def online(monkeypatch, server, hosts_up=lambda url: True):
    monkeypatch.setattr(download, "reachable", lambda url, timeout=None: hosts_up(url))
    monkeypatch.setattr(download, "make_downloader", lambda: server)


def test_an_interrupted_download_leaves_nothing_behind_and_a_retry_succeeds(monkeypatch, cache):
    files = fake_cifar10()
    expect(monkeypatch, "cifar10", files)
    (url,) = download.REMOTE_FILES["cifar10"][0].urls
    folder = cache / "datasets" / "cifar10"

    online(monkeypatch, Server({url: files["cifar-10-python.tar.gz"]}, cut_after=100))
    with pytest.raises(DatasetUnavailable, match="ConnectionResetError"):
        data.load("cifar10")
    assert not folder.exists() or list(folder.iterdir()) == [], "no partial file may remain"

    online(monkeypatch, Server({url: files["cifar-10-python.tar.gz"]}))
    assert len(data.load("cifar10").test) == 10
    assert (folder / "cifar-10-python.tar.gz").read_bytes() == files["cifar-10-python.tar.gz"]


def test_a_download_with_the_wrong_checksum_is_not_kept(monkeypatch, cache):
    files = fake_hymenoptera()
    expect(monkeypatch, "hymenoptera", files)
    (url,) = download.REMOTE_FILES["hymenoptera"][0].urls
    online(monkeypatch, Server({url: b"an error page instead of the archive"}))

    with pytest.raises(ChecksumError, match="tlcourse fetch --force hymenoptera"):
        download.ensure("hymenoptera")
    folder = cache / "datasets" / "hymenoptera"
    assert not folder.exists() or list(folder.iterdir()) == []


def test_the_next_mirror_is_used_when_the_first_does_not_answer(monkeypatch, cache):
    files = fake_mnist()[0]
    expect(monkeypatch, "mnist", files)
    payloads = {url: files[r.filename] for r in download.REMOTE_FILES["mnist"] for url in r.urls}
    server = Server(payloads)
    online(monkeypatch, server, hosts_up=lambda url: "cvdf-datasets" in url)

    paths = download.ensure("mnist")

    assert len(paths) == 4 and all(p.is_file() for p in paths)
    assert server.requested and all("cvdf-datasets" in url for url in server.requested)


def test_prepare_repairs_a_corrupt_download_when_online(monkeypatch, cache):
    files = fake_cifar10()
    folder = place(monkeypatch, cache, "cifar10", files)
    (folder / "cifar-10-python.tar.gz").write_bytes(b"truncated")
    (url,) = download.REMOTE_FILES["cifar10"][0].urls
    online(monkeypatch, Server({url: files["cifar-10-python.tar.gz"]}))

    npz = full.prepare("cifar10")

    assert npz == folder / "cifar10.npz" and npz.is_file() and full.is_cached("cifar10")
    assert (folder / "cifar-10-python.tar.gz").read_bytes() == files["cifar-10-python.tar.gz"]


def test_download_errors_are_runtime_errors():
    assert issubclass(DatasetUnavailable, DownloadError) and issubclass(ChecksumError, DownloadError)
    assert issubclass(DownloadError, RuntimeError)


@pytest.fixture
def local_server(monkeypatch, tmp_path):
    """A plain HTTP server on 127.0.0.1 serving tmp_path/served, for the real (pooch) transport."""
    import functools
    import http.server
    import threading

    for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    served = tmp_path / "served"
    served.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        """Serves files; under /cut/ it promises a whole file, sends half of it and hangs up."""

        def do_GET(self):
            if not self.path.startswith("/cut/"):
                return super().do_GET()
            payload = (served / self.path[len("/cut/"):]).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload[: len(payload) // 2])
            self.close_connection = True

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(served)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_the_real_transport_downloads_verifies_and_decodes(monkeypatch, cache, local_server):
    served, base = local_server
    files, (_, _, test_x, _) = fake_mnist()
    for name, payload in files.items():
        (served / name).write_bytes(payload)
    expect(monkeypatch, "mnist", files)
    entries = tuple(dataclasses.replace(r, urls=(base + r.filename,)) for r in download.REMOTE_FILES["mnist"])
    monkeypatch.setitem(download.REMOTE_FILES, "mnist", entries)
    monkeypatch.setattr(download, "reachable", REAL_REACHABLE)  # the probe too is real here, against 127.0.0.1

    ds = data.load("mnist")

    assert np.array_equal(ds.test.images[..., 0], test_x)
    folder = cache / "datasets" / "mnist"
    assert sorted(p.name for p in folder.iterdir()) == sorted([*files, "mnist.npz"])



def test_a_transfer_cut_off_midway_leaves_no_file_with_the_real_transport(monkeypatch, cache, local_server):
    served, base = local_server
    files = fake_cifar10()
    (served / "cifar-10-python.tar.gz").write_bytes(files["cifar-10-python.tar.gz"])
    expect(monkeypatch, "cifar10", files)
    (remote,) = download.REMOTE_FILES["cifar10"]
    cut_off = dataclasses.replace(remote, urls=(base + "cut/" + remote.filename,))
    monkeypatch.setitem(download.REMOTE_FILES, "cifar10", (cut_off,))
    monkeypatch.setattr(download, "reachable", REAL_REACHABLE)

    with pytest.raises(DatasetUnavailable, match="every mirror failed"):
        data.load("cifar10")

    folder = cache / "datasets" / "cifar10"
    assert not folder.exists() or list(folder.iterdir()) == []
