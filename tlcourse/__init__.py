"""tlcourse: the library behind a transfer-learning course in PyTorch and Keras.

``import tlcourse`` stays light: it loads neither torch nor TensorFlow. The framework code lives in
``tlcourse.torch`` and ``tlcourse.keras``, which load their framework when first imported.
"""
from tlcourse.config import cache_dir, course_seed, current_seed, home, profile, seed_everything
from tlcourse.setup import setup

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "cache_dir",
    "course_seed",
    "current_seed",
    "home",
    "profile",
    "seed_everything",
    "setup",
]
