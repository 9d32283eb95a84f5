"""The one download path for the ``full`` datasets: checksummed files, fetched once into the cache.

Every file is listed in :data:`REMOTE_FILES` with its mirrors, its size and a checksum taken from
a published source (``hash_source`` says which). :func:`ensure` puts a dataset's files in
``cache_dir("datasets", name)``:

- a file already there is checked against its checksum; a corrupt one is deleted at once, so
  nothing later trusts it, and :class:`ChecksumError` says how to fetch it again;
- a missing file is downloaded with pooch, which streams into a temporary file in the same folder
  and moves it into place only once the checksum matches, so an interrupted or corrupted transfer
  never leaves a file behind under the real name;
- with no network (or ``TLCOURSE_OFFLINE=1``) a missing file raises :class:`DatasetUnavailable`,
  whose message says how to pre-fetch: ``tlcourse fetch NAME`` on a machine with network, then
  copy the folder it names.

The transport is :func:`make_downloader` (pooch's HTTP downloader with a tqdm progress bar) and the
network check is :func:`reachable`; tests replace either one.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from tlcourse.config import home

PROBE_TIMEOUT_S = 2.0
TRANSFER_TIMEOUT_S = 60


class DownloadError(RuntimeError):
    """A dataset file could not be put in the cache."""


class DatasetUnavailable(DownloadError):
    """A file is not cached and cannot be downloaded here (offline, or every mirror failed)."""


class ChecksumError(DownloadError):
    """A cached or freshly downloaded file does not have the checksum it should have."""


@dataclass(frozen=True)
class RemoteFile:
    """One file to download: its name in the cache, its mirrors (tried in order) and its checksum.

    ``known_hash`` is pooch's notation (``sha256:<hex>`` or ``md5:<hex>``); ``hash_source`` is where
    that checksum was published, so a reader can check it independently.
    """

    filename: str
    urls: tuple[str, ...]
    known_hash: str
    size: int
    hash_source: str


_TFDS_MNIST = (
    "https://github.com/tensorflow/datasets/blob/31f1255e57e519a6c004f0b097a2f5cfcf0dde7d/"
    "tensorflow_datasets/url_checksums/mnist.txt"
)
_MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",  # the mirror torchvision downloads from
    "https://storage.googleapis.com/cvdf-datasets/mnist/",  # the mirror TensorFlow Datasets uses
)


def _mnist_file(filename: str, sha256: str, size: int) -> RemoteFile:
    return RemoteFile(filename, tuple(m + filename for m in _MNIST_MIRRORS), f"sha256:{sha256}", size, _TFDS_MNIST)


# Dataset name -> the files it is decoded from. Tests swap entries (monkeypatch.setitem) to point
# the loaders at small files of their own.
REMOTE_FILES: dict[str, tuple[RemoteFile, ...]] = {
    "mnist": (
        _mnist_file(
            "train-images-idx3-ubyte.gz", "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609", 9_912_422
        ),
        _mnist_file(
            "train-labels-idx1-ubyte.gz", "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c", 28_881
        ),
        _mnist_file(
            "t10k-images-idx3-ubyte.gz", "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6", 1_648_877
        ),
        _mnist_file(
            "t10k-labels-idx1-ubyte.gz", "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6", 4_542
        ),
    ),
    "cifar10": (
        RemoteFile(
            "cifar-10-python.tar.gz",
            ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
            "sha256:6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
            170_498_071,
            (
                "https://github.com/keras-team/keras/blob/7e4b17c57b00de45bf099fef18b8f05037ebf3c9/"
                "keras/src/datasets/cifar10.py"
            ),
        ),
    ),
    "hymenoptera": (
        RemoteFile(
            "hymenoptera_data.zip",
            ("https://download.pytorch.org/tutorial/hymenoptera_data.zip",),
            "sha256:fbc41b31d544714d18dd1230b1e2b455e1557766e13e67f9f5a7a23af7c02209",
            47_286_322,
            (
                "https://github.com/pytorch/tutorials/blob/2286ae10745d598389338a3555a3090c37572cfe/"
                ".jenkins/download_data.py"
            ),
        ),
    ),
    "cub": (
        RemoteFile(
            "CUB_200_2011.tgz",
            ("https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz?download=1",),
            "sha256:0c685df5597a8b24909f6a7c9db6d11e008733779a671760afef78feb49bf081",
            1_150_585_339,
            (
                "https://github.com/tensorflow/datasets/blob/333639b37af6c6fedf3610a4a2d42f1c6ef6f7d5/"
                "tensorflow_datasets/url_checksums/caltech_birds2011.txt"
            ),
        ),
    ),
    "tf_flowers": (
        RemoteFile(
            "flower_photos.tgz",
            (
                "https://storage.googleapis.com/download.tensorflow.org/example_images/flower_photos.tgz",
                "https://download.tensorflow.org/example_images/flower_photos.tgz",
            ),
            "sha256:4c54ace7911aaffe13a365c34f650e71dd5bf1be0a58b464e5a7183e3e595d9c",
            228_813_984,
            (
                "https://github.com/tensorflow/datasets/blob/333639b37af6c6fedf3610a4a2d42f1c6ef6f7d5/"
                "tensorflow_datasets/url_checksums/tf_flowers.txt"
            ),
        ),
    ),
    "eurosat_rgb": (
        RemoteFile(
            "EuroSAT.zip",
            (
                # torchvision.datasets.EuroSAT's mirror (same file: md5 c8fa014336c82ac7804f0398fcb19387)
                "https://huggingface.co/datasets/torchgeo/eurosat/resolve/"
                "c877bcd43f099cd0196738f714544e355477f3fd/EuroSAT.zip",
                "https://madm.dfki.de/files/sentinel/EuroSAT.zip",
            ),
            "sha256:8ebea626349354c5328b142b96d0430e647051f26efc2dc974c843f25ecf70bd",
            94_280_567,
            (
                "https://github.com/pytorch/vision/blob/364f2dad07d886b461e3b649cb676ecde8272c06/"
                "torchvision/prototype/datasets/_builtin/eurosat.py"
            ),
        ),
    ),
    "bsds500": (
        RemoteFile(
            "BSR_bsds500.tgz",
            ("https://www2.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/BSR/BSR_bsds500.tgz",),
            "sha256:97e49d31764f3912f0c4122707d53062ac9e783ba0f095e447a4d53c1a41af8e",
            70_763_455,
            (
                "https://github.com/yumasansansan/JPEG-Unround/blob/708ca1af71b20c34287fd9ab349f84f535719d9e/"
                "scripts/datasets.sha256"
            ),
        ),
    ),
}


def folder(dataset: str) -> Path:
    """Where a dataset's downloads (and its decoded arrays) live: ``<cache>/datasets/<name>``.

    Not created here, so that asking what is cached leaves the disk alone.
    """
    return home() / "datasets" / dataset


def remote_files(dataset: str) -> tuple[RemoteFile, ...]:
    try:
        return REMOTE_FILES[dataset]
    except KeyError:
        known = ", ".join(sorted(REMOTE_FILES))
        raise KeyError(f"{dataset!r} has no download; downloadable datasets: {known}") from None


def local_path(dataset: str, remote: RemoteFile) -> Path:
    return folder(dataset) / remote.filename


def missing_files(dataset: str) -> list[RemoteFile]:
    """The files of ``dataset`` not yet in the cache (presence only; checksums are not computed)."""
    return [r for r in remote_files(dataset) if not local_path(dataset, r).is_file()]


def hosts(dataset: str) -> list[str]:
    """The servers a dataset's files come from, first mirrors first."""
    seen: dict[str, None] = {}
    for remote in remote_files(dataset):
        for url in remote.urls:
            seen.setdefault(urlsplit(url).hostname or url, None)
    return list(seen)


def offline_requested() -> bool:
    """``TLCOURSE_OFFLINE=1`` forbids every download (a workshop room that must not touch the net)."""
    return os.environ.get("TLCOURSE_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def reachable(url_or_host: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether an HTTPS server answers within ``timeout`` seconds (any HTTP status counts).

    Goes through ``requests`` so that proxy settings are honoured; the probe runs in a daemon thread
    so that a hanging name lookup cannot hold the caller past the timeout.
    """
    parts = urlsplit(url_or_host if "://" in url_or_host else f"https://{url_or_host}")
    server_root = f"{parts.scheme}://{parts.netloc}/"
    answered = threading.Event()

    def probe():
        import requests

        try:
            requests.head(server_root, timeout=timeout, allow_redirects=False)
            answered.set()
        except requests.RequestException:
            pass

    worker = threading.Thread(target=probe, daemon=True)
    worker.start()
    worker.join(timeout + 0.5)
    return answered.is_set()


def probe_hosts(names: list[str], timeout: float = PROBE_TIMEOUT_S) -> dict[str, bool]:
    """:func:`reachable` for several hosts at once, in parallel: about ``timeout`` seconds in all."""
    results: dict[str, bool] = {}

    def check(host):
        results[host] = reachable(host, timeout)

    workers = [threading.Thread(target=check, args=(h,), daemon=True) for h in names]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout + 1.0)
    return {h: results.get(h, False) for h in names}


def make_downloader():
    """The transport: pooch's HTTP downloader, with a tqdm progress bar and a transfer timeout."""
    import pooch

    return pooch.HTTPDownloader(progressbar=True, timeout=TRANSFER_TIMEOUT_S)


def ensure(dataset: str, force: bool = False, repair: bool = False) -> list[Path]:
    """Make sure every file of ``dataset`` is in the cache with the right checksum; their paths.

    ``force`` downloads again even what is cached. ``repair`` replaces a corrupt cached file by a
    fresh download; without it a corrupt file raises :class:`ChecksumError` (after deleting it).
    """
    paths = []
    for remote in remote_files(dataset):
        target = local_path(dataset, remote)
        if force and target.exists():
            target.unlink()
        if target.exists():
            actual = _hash_of(target, remote.known_hash)
            if actual == _digest(remote.known_hash):
                paths.append(target)
                continue
            target.unlink()
            if not repair:
                raise ChecksumError(
                    f"{dataset}: the cached file {target} is corrupt (its {_algorithm(remote.known_hash)} is "
                    f"{actual}, expected {_digest(remote.known_hash)}); it has been deleted so that nothing "
                    f"uses it. Download it again with `tlcourse fetch --force {dataset}` "
                    f"(or put an intact copy in {target.parent})."
                )
        _download(dataset, remote, target)
        paths.append(target)
    return paths


def _download(dataset: str, remote: RemoteFile, target: Path) -> None:
    import pooch
    import requests

    if offline_requested():
        raise DatasetUnavailable(_unavailable_message(dataset, "TLCOURSE_OFFLINE is set, so nothing is downloaded"))
    failures: list[str] = []
    bad_checksums: list[str] = []
    for url in remote.urls:
        host = urlsplit(url).hostname or url
        if not reachable(url):
            failures.append(f"{host} did not answer within {PROBE_TIMEOUT_S:g} s")
            continue
        try:
            pooch.retrieve(
                url,
                known_hash=remote.known_hash,
                fname=target.name,
                path=target.parent,
                downloader=make_downloader(),
            )
            return
        except ValueError as error:  # pooch's checksum mismatch; its temporary file is already gone
            bad_checksums.append(f"{url}: {error}")
        except (requests.RequestException, OSError) as error:
            failures.append(f"{url}: {type(error).__name__}: {error}")
    if bad_checksums:
        raise ChecksumError(
            f"{dataset}: {remote.filename} was downloaded but its checksum is wrong, so it was not kept "
            f"({'; '.join(bad_checksums)}). The transfer may have been damaged or the mirror changed: "
            f"try again with `tlcourse fetch --force {dataset}`; if it keeps failing, report it."
        )
    offline = all("did not answer" in f for f in failures)
    reason = "no network: " if offline else "every mirror failed: "
    raise DatasetUnavailable(_unavailable_message(dataset, reason + "; ".join(failures)))


def _unavailable_message(dataset: str, reason: str) -> str:
    where = folder(dataset)
    names = ", ".join(r.filename for r in remote_files(dataset))
    return (
        f"{dataset} is not in the cache and cannot be downloaded here ({reason}). To pre-fetch it, run "
        f"`tlcourse fetch {dataset}` on a machine with network, then copy the folder datasets/{dataset} of its "
        f"cache (files: {names}) to {where} on this machine, or copy that whole cache and set TLCOURSE_HOME "
        f"to it (this machine's cache is {home()})."
    )


def _algorithm(known_hash: str) -> str:
    return known_hash.split(":", 1)[0] if ":" in known_hash else "sha256"


def _digest(known_hash: str) -> str:
    return known_hash.split(":", 1)[1].lower() if ":" in known_hash else known_hash.lower()


def _hash_of(path: Path, known_hash: str) -> str:
    import pooch

    return pooch.file_hash(str(path), alg=_algorithm(known_hash))
