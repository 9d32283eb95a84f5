"""The `tlcourse` command, run in-process against a temporary cache; the network is always faked."""
import dataclasses
import gzip
import hashlib
import importlib.util
import re
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tlcourse import cli
from tlcourse.data import download, full, registry

REPO = Path(__file__).resolve().parents[1]


def run(capsys, *argv):
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def place_tiny_mnist(monkeypatch, cache):
    rng = np.random.default_rng(1)
    arrays = {
        "train-images-idx3-ubyte.gz": (2051, rng.integers(0, 256, (120, 28, 28))),
        "train-labels-idx1-ubyte.gz": (2049, np.arange(120) % 10),
        "t10k-images-idx3-ubyte.gz": (2051, rng.integers(0, 256, (10, 28, 28))),
        "t10k-labels-idx1-ubyte.gz": (2049, np.arange(10)),
    }
    folder = cache / "datasets" / "mnist"
    folder.mkdir(parents=True)
    hashes = {}
    for name, (magic, array) in arrays.items():
        payload = gzip.compress(struct.pack(f">i{array.ndim}i", magic, *array.shape) + array.astype(np.uint8).tobytes())
        (folder / name).write_bytes(payload)
        hashes[name] = "sha256:" + hashlib.sha256(payload).hexdigest()
    entries = tuple(dataclasses.replace(r, known_hash=hashes[r.filename]) for r in download.REMOTE_FILES["mnist"])
    monkeypatch.setitem(download.REMOTE_FILES, "mnist", entries)
    return folder


# --------------------------------------------------------------------------- fetch


def test_fetch_offline_fails_fast_with_one_line_and_a_nonzero_status(capsys, cache):
    started = time.monotonic()
    status, out, err = run(capsys, "fetch")
    assert status == 1 and time.monotonic() - started < 5
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    assert "offline" in lines[0] and "`tlcourse fetch`" in lines[0] and str(cache) in lines[0]
    assert "mnist" in lines[0] and "resnet50" in lines[0]


def test_fetch_with_tlcourse_offline_set_does_not_probe(monkeypatch, capsys, cache):
    monkeypatch.setenv("TLCOURSE_OFFLINE", "1")
    monkeypatch.setattr(download, "reachable", lambda *a, **k: pytest.fail("must not touch the network"))
    status, _, err = run(capsys, "fetch", "cifar10")
    assert status == 1 and "TLCOURSE_OFFLINE" in err


def test_fetch_of_a_cached_dataset_works_offline_and_decodes_it(monkeypatch, capsys, cache):
    folder = place_tiny_mnist(monkeypatch, cache)
    status, out, err = run(capsys, "fetch", "mnist")
    assert status == 0, err
    assert "ok      dataset mnist" in out and (folder / "mnist.npz").is_file()


def test_fetch_fills_the_torch_weight_cache_through_its_own_downloader(monkeypatch, capsys, cache):
    fetched = []

    def fake_torch_fetch(backbone, force=False):
        path = cache / "torch" / "checkpoints" / backbone.torch_file
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"weights")
        fetched.append(backbone.name)
        return path

    monkeypatch.setattr(download, "reachable", lambda url, timeout=None: url == cli.TORCH_WEIGHTS_HOST)
    monkeypatch.setattr(cli, "_fetch_torch_weights", fake_torch_fetch)

    status, out, _ = run(capsys, "fetch", "resnet50", "--framework", "torch")

    assert status == 0 and fetched == ["resnet50"] and "ok      weights resnet50 (torch)" in out


def test_one_failing_item_is_reported_and_makes_the_status_nonzero(monkeypatch, capsys, cache):
    place_tiny_mnist(monkeypatch, cache)
    monkeypatch.setattr(download, "reachable", lambda url, timeout=None: True)

    def broken_prepare(name, force=False):
        raise download.ChecksumError(f"{name}: checksum is wrong")

    monkeypatch.setattr(full, "prepare", broken_prepare)
    status, out, err = run(capsys, "fetch", "mnist", "cifar10")
    assert status == 1
    assert "FAILED  dataset mnist" in out and "FAILED  dataset cifar10" in out
    assert "2 of 2 items" in err and len(err.strip().splitlines()) == 1


def test_fetch_of_an_unknown_name_suggests_close_ones(capsys, cache):
    status, _, err = run(capsys, "fetch", "minst")
    assert status == 1 and "unknown dataset 'minst'" in err and "mnist" in err and "Traceback" not in err


def test_fetch_of_an_embedded_dataset_has_nothing_to_do(capsys, cache):
    quick = registry.names("quick")
    if not quick:
        pytest.skip("no embedded dataset registered")
    status, out, _ = run(capsys, "fetch", quick[0])
    assert status == 0 and "nothing to fetch" in out


@pytest.mark.slow
def test_backbone_file_names_match_torchvision_weights():
    if importlib.util.find_spec("torchvision") is None:
        pytest.skip("torchvision is not installed")
    # In a fresh interpreter: importing torchvision after TensorFlow (which other test files load)
    # crashes this environment's builds, and the check must not depend on test order.
    script = (
        "import torchvision.models as m, tlcourse.cli as c\n"
        "for b in c.FULL_BACKBONES:\n"
        "    enum, member = b.torch_weights.split('.')\n"
        "    url = getattr(getattr(m, enum), member).url\n"
        "    assert url.endswith('/' + b.torch_file), (b.name, url)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


# --------------------------------------------------------------------------- datasets and doctor


def test_datasets_lists_every_card_and_whether_it_is_cached(monkeypatch, capsys, cache):
    status, out, _ = run(capsys, "datasets")
    assert status == 0
    for card in registry.cards():
        assert re.search(rf"^{re.escape(card.name)}\s", out, re.M), card.name
    assert re.search(r"^mnist\s.*\bno$", out, re.M)

    place_tiny_mnist(monkeypatch, cache)
    _, out, _ = run(capsys, "datasets", "--profile", "full")
    assert re.search(r"^mnist\s.*\byes$", out, re.M)
    assert all(card.name in out for card in registry.cards("full"))


def test_datasets_markdown_has_one_row_per_card(capsys, cache):
    status, out, _ = run(capsys, "datasets", "--markdown")
    rows = [line for line in out.splitlines() if line.startswith("| `")]
    assert status == 0 and len(rows) == len(registry.cards())


def test_datasets_md_lists_every_registered_dataset():
    text = (REPO / "datasets.md").read_text(encoding="utf-8")
    missing = [card.name for card in registry.cards() if f"`{card.name}`" not in text]
    assert not missing, f"datasets.md lacks {missing}; regenerate its table with `tlcourse datasets --markdown`"


def test_doctor_reports_versions_profile_cache_and_offline(monkeypatch, capsys, cache):
    monkeypatch.setattr(cli, "_gpu_report", lambda: [("GPU (torch)", "stub")])
    monkeypatch.setenv("TLCOURSE_PROFILE", "full")
    status, out, _ = run(capsys, "doctor")
    assert status == 0
    for label in ("python", "tlcourse", "torch", "torchvision", "tensorflow", "keras", "numpy", "scikit-learn"):
        assert re.search(rf"^{label}\s", out, re.M), label
    assert re.search(r"^profile\s+full", out, re.M) and str(cache) in out
    assert re.search(r"^network\s+offline", out, re.M)
    assert "unreachable" in out


def test_doctor_reports_each_frameworks_device_and_warns_on_a_cpu_only_tensorflow_beside_a_gpu(monkeypatch):
    rows = dict(cli._gpu_report())
    assert rows["GPU (torch)"].startswith(("CUDA", "none: training runs on the CPU"))
    assert rows["GPU (tensorflow)"].startswith(("/physical_device:GPU", "none: training runs on the CPU"))
    monkeypatch.setattr(cli.shutil, "which", lambda program: "/usr/bin/nvidia-smi" if program == "nvidia-smi" else None)
    monkeypatch.setattr(cli, "_version", lambda *dists: "2.21.0" if "tensorflow-cpu" in dists else None)
    warning = dict(cli._gpu_report())["warning"]
    assert "tensorflow-cpu" in warning and "tensorflow[and-cuda]" in warning
    assert cli.cpu_tensorflow_warning(gpu_present=True, tensorflow_cpu=False) is None
    assert cli.cpu_tensorflow_warning(gpu_present=False, tensorflow_cpu=True) is None


def test_doctor_says_online_when_a_server_answers(monkeypatch, capsys, cache):
    monkeypatch.setattr(cli, "_gpu_report", lambda: [])
    monkeypatch.setattr(download, "reachable", lambda url, timeout=None: url == "download.pytorch.org")
    _, out, _ = run(capsys, "doctor")
    assert re.search(r"^network\s+online: 1 of", out, re.M)


def test_no_command_prints_help_and_exits_2(capsys):
    status, out, _ = run(capsys)
    assert status == 2 and "doctor" in out and "fetch" in out


def test_fetch_converts_the_quick_backbone_for_keras_without_network(capsys, cache):
    status, out, err = run(capsys, "fetch", "efficientnet_lite0", "--framework", "keras")
    assert status == 0, err
    converted = cache / "weights" / "efficientnet_lite0-imagenet-keras-v1.weights.h5"
    assert converted.is_file() and "ok      weights efficientnet_lite0" in out
