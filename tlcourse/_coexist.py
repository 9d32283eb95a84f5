"""Let PyTorch and TensorFlow share one process.

The CUDA builds of torch depend on triton, and triton's native library crashes the interpreter
(segmentation fault) when it is first loaded after TensorFlow (seen with triton 3.8 and
TensorFlow 2.21). torch loads triton lazily — torchvision's import and the first optimizer step
both do — so a notebook that imports TensorFlow first and then trains a torch model dies.
Loading triton before TensorFlow avoids it; both framework subpackages call
:func:`load_triton_before_tensorflow` first thing. When TensorFlow is already loaded, triton is
marked as absent instead, so torch runs without it (triton only compiles GPU kernels for
``torch.compile``, which the course does not use).
"""
from __future__ import annotations

import importlib.util
import sys
import warnings


def load_triton_before_tensorflow() -> None:
    """Import triton now if it is installed and TensorFlow is not loaded yet; else keep it out."""
    if "triton" in sys.modules or importlib.util.find_spec("triton") is None:
        return
    if "tensorflow" in sys.modules:
        sys.modules["triton"] = None  # an import of triton now raises ImportError: torch does without
        warnings.warn(
            "TensorFlow was imported before tlcourse.torch or tlcourse.keras, so torch runs without "
            "triton in this process (torch.compile is unavailable). Import tlcourse.torch or "
            "tlcourse.keras first to keep it.",
            RuntimeWarning,
            stacklevel=3,
        )
        return
    import triton  # noqa: F401
