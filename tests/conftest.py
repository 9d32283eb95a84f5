"""Shared test set-up. Both frameworks run in one pytest process, so triton must load before
TensorFlow whichever test file imports what first (see tlcourse/_coexist.py)."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from tlcourse._coexist import load_triton_before_tensorflow  # noqa: E402

load_triton_before_tensorflow()

import pytest  # noqa: E402

from tlcourse.data import download, registry  # noqa: E402


@pytest.fixture
def cache(monkeypatch, tmp_path):
    """An empty cache under tmp_path, offline (every server 'unreachable'), no loaded datasets."""
    monkeypatch.setenv("TLCOURSE_HOME", str(tmp_path))
    monkeypatch.delenv("TLCOURSE_OFFLINE", raising=False)
    monkeypatch.setattr(registry, "_RAW_CACHE", {})
    monkeypatch.setattr(download, "reachable", lambda url, timeout=None: False)
    return tmp_path
