"""What TensorFlow tells the course's set-up cell and ``tlcourse doctor``: the device Keras trains on."""
from __future__ import annotations

import tensorflow as tf


def device() -> str:
    """``gpu`` when TensorFlow sees a GPU, else ``cpu``."""
    return "gpu" if tf.config.list_physical_devices("GPU") else "cpu"


def gpu_report() -> str:
    """One line: the GPUs TensorFlow sees, or that Keras trains on the CPU."""
    gpus = tf.config.list_physical_devices("GPU")
    return ", ".join(gpu.name for gpu in gpus) if gpus else "none: training runs on the CPU"
