"""tlcourse for Keras 3 on TensorFlow. Importing this module imports keras; ``tlcourse.torch`` mirrors its names."""
from tlcourse._coexist import load_triton_before_tensorflow as _load_triton_first

_load_triton_first()
import logging as _logging
import sys as _sys
import os as _os

_os.environ.setdefault("KERAS_BACKEND", "tensorflow")
if _os.environ["KERAS_BACKEND"] != "tensorflow":
    raise ImportError(f"tlcourse.keras runs Keras on TensorFlow, but KERAS_BACKEND={_os.environ['KERAS_BACKEND']!r}; "
                      "unset KERAS_BACKEND (or set it to 'tensorflow') before Python starts, then import again")
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tlcourse.config import cache_dir as _cache_dir  # noqa: E402
from tlcourse.config import when_seeded as _when_seeded  # noqa: E402

# keras.applications keeps downloaded weights under KERAS_HOME; point it at the course's cache
# root unless the user chose otherwise (it must be set before keras is imported).
_os.environ.setdefault("KERAS_HOME", str(_cache_dir("keras")))


def _import_keras_quietly():
    """Import keras (and TensorFlow). TensorFlow 2.21's C++ start-up lines ("oneDNN custom
    operations are on", with a timestamp) ignore TF_CPP_MIN_LOG_LEVEL and go straight to file
    descriptor 2, where Jupyter shows them in the cell: while TF_CPP_MIN_LOG_LEVEL asks for quiet
    (tlcourse sets 2 unless you chose otherwise), descriptor 2 points at the null device during the
    import. Python exceptions are unaffected."""
    import sys

    if _os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0") < "1" or "tensorflow" in sys.modules:
        import keras

        return keras
    sys.stderr.flush()
    saved = _os.dup(2)
    null = _os.open(_os.devnull, _os.O_WRONLY)
    try:
        _os.dup2(null, 2)
        import keras
    finally:
        _os.dup2(saved, 2)
        _os.close(null)
        _os.close(saved)
    return keras


_keras = _import_keras_quietly()
if _keras.backend.backend() != "tensorflow":  # keras was imported, on another backend, before tlcourse
    raise ImportError(f"tlcourse.keras runs Keras on TensorFlow, but Keras was imported on {_keras.backend.backend()!r}; "
                      "restart Python without KERAS_BACKEND set and import tlcourse.keras before keras")


class _KerasStepRetracing:
    """Keras builds a new training step at every ``compile``, and TensorFlow counts the traces of
    all of them together: a notebook that compiles a dozen models in one process is warned that
    its "tf.function" retraces, about code that is Keras's, not the reader's. Other warnings pass."""

    def filter(self, record):
        message = record.getMessage()
        return not ("triggered tf.function retracing" in message and "TensorFlowTrainer._make_function" in message)


_logging.getLogger("tensorflow").addFilter(_KerasStepRetracing())

_when_seeded(_keras.utils.set_random_seed)

# Public names, one line per module; tlcourse.torch exports the same ones.
from tlcourse.keras.lite0 import LITE0_BLOCKS, build_lite0, lite0_blocks  # noqa: E402,F401
from tlcourse.keras.preprocess import preprocess  # noqa: E402,F401
from tlcourse.keras.train import evaluate, fit, predict  # noqa: E402,F401
from tlcourse.keras.features import extract_features, register_backbone  # noqa: E402,F401
from tlcourse.keras.freezing import blocks, freeze, restore_trainable_flags, summary, trainable_flags, unfreeze  # noqa: E402,F401
from tlcourse.keras.heads import explain_sequential_on_functional, swap_head  # noqa: E402,F401
from tlcourse.keras.staged import Stage, apply_stage, fit_staged  # noqa: E402,F401
from tlcourse.keras.conservative import L2, L2SP  # noqa: E402,F401
from tlcourse.keras.layerwise import layerwise_optimizer  # noqa: E402,F401
from tlcourse.keras.cached import block_inputs, maps_transform, upper_blocks  # noqa: E402,F401
from tlcourse.keras.backbones import backbone, backbone_preprocess  # noqa: E402,F401
from tlcourse.keras.dann import DANN, GradientReversal, build_dann, build_dann_digits, dann_features, fit_dann, reverse_gradient  # noqa: E402,F401

from tlcourse import frameworks as _frameworks  # noqa: E402

_frameworks.register(lambda model: isinstance(model, _keras.Model), _sys.modules[__name__])
