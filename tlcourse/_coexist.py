"""Let PyTorch and TensorFlow share one process.

The CUDA builds of torch depend on triton, and triton's native library crashes the interpreter
(segmentation fault) when it is first loaded after TensorFlow (seen with triton 3.8 and
TensorFlow 2.21). torch loads triton lazily — torchvision's import and the first optimizer step
both do — so a notebook that imports TensorFlow first and then trains a torch model dies.
Loading triton before TensorFlow avoids it; both framework subpackages call
:func:`load_triton_before_tensorflow` first thing.
"""
from __future__ import annotations

import importlib.util
import sys
import warnings


def load_triton_before_tensorflow() -> None:
    """Import triton now, if it is installed and TensorFlow is not loaded yet; warn if too late."""
    if "triton" in sys.modules or importlib.util.find_spec("triton") is None:
        return
    if "tensorflow" in sys.modules:
        warnings.warn(
            "TensorFlow was imported before triton (which torch loads lazily); training a torch "
            "model in this process may crash the kernel. Restart it and import tlcourse.torch or "
            "tlcourse.keras before importing tensorflow or keras directly.",
            RuntimeWarning,
            stacklevel=3,
        )
        return
    import triton  # noqa: F401
