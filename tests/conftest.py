"""Shared test set-up. Both frameworks run in one pytest process, so triton must load before
TensorFlow whichever test file imports what first (see tlcourse/_coexist.py)."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from tlcourse._coexist import load_triton_before_tensorflow  # noqa: E402

load_triton_before_tensorflow()
