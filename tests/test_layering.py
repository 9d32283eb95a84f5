"""The library's one layering rule, read from the source: framework-neutral modules import no framework.

Everything outside ``tlcourse/torch/`` and ``tlcourse/keras/`` is plain Python (NumPy, Pillow,
scikit-learn): it never imports torch, torchvision, TensorFlow or Keras, at module level or inside a
function. Of those neutral modules, only the entry points (the command-line tool and the
notebooks' set-up cell) may call a framework half, ``tlcourse.torch`` or ``tlcourse.keras``; the
rest receive framework code as callbacks, or through :mod:`tlcourse.frameworks`.
"""
import ast
from pathlib import Path

import pytest

import tlcourse

PACKAGE = Path(tlcourse.__file__).resolve().parent
FRAMEWORKS = {"torch", "torchvision", "tensorflow", "keras", "tf_keras", "jax"}
HALVES = ("tlcourse.torch", "tlcourse.keras")
ENTRY_POINTS = {"cli.py", "setup.py"}
NEUTRAL = sorted(path for path in PACKAGE.rglob("*.py") if path.relative_to(PACKAGE).parts[0] not in ("torch", "keras"))


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every import statement in the file, nested ones included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            raise AssertionError(f"{path}:{node.lineno}: relative import; the package imports by full name")
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) in ("import_module", "__import__"):
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                found.append((node.lineno, node.args[0].value))
    return found


def offences(path: Path) -> list[str]:
    name = path.relative_to(PACKAGE).as_posix()
    wrong = []
    for line, module in imported_modules(path):
        if module.split(".")[0] in FRAMEWORKS:
            wrong.append(f"{name}:{line} imports {module}")
        elif any(module == half or module.startswith(half + ".") for half in HALVES) and name not in ENTRY_POINTS:
            wrong.append(f"{name}:{line} imports {module} (only {', '.join(sorted(ENTRY_POINTS))} may)")
    return wrong


def test_the_rule_finds_what_it_forbids(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import numpy\n\ndef f():\n    import torch.nn as nn\n    from keras import layers\n"
                   "    importlib.import_module('tensorflow')\n    from tlcourse.torch import fit\n")
    found = [module for _, module in imported_modules(bad)]
    assert {"torch.nn", "keras", "tensorflow", "tlcourse.torch"} <= set(found) and "numpy" in found


@pytest.mark.parametrize("path", NEUTRAL, ids=lambda path: path.relative_to(PACKAGE).as_posix())
def test_neutral_modules_import_no_framework(path):
    assert offences(path) == []


def test_every_framework_module_has_its_twin():
    def stems(folder):
        return {path.stem for path in (PACKAGE / folder).glob("*.py") if not path.stem.startswith("_")}

    torch_only = {"zoo"}  # the catalogue measured on torchvision's models
    assert stems("torch") - stems("keras") == torch_only and stems("keras") - stems("torch") == set()


def test_neutral_code_finds_the_half_that_owns_a_model():
    import tlcourse.torch as tt  # noqa: I001  (the course's halves before the frameworks, as everywhere)
    import tlcourse.keras as tk
    import keras
    import torch
    from tlcourse.frameworks import half_for

    assert half_for(torch.nn.Linear(2, 2)) is tt
    assert half_for(keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])) is tk
    with pytest.raises(TypeError, match="nn.Module or a Keras model"):
        half_for(object())


def test_keras_on_another_backend_is_refused_at_import_with_the_fix():
    import os
    import subprocess
    import sys

    env = {**os.environ, "KERAS_BACKEND": "jax"}
    result = subprocess.run([sys.executable, "-c", "import tlcourse.keras"], capture_output=True, text=True, env=env)
    assert result.returncode != 0
    assert "KERAS_BACKEND='jax'" in result.stderr and "unset KERAS_BACKEND" in result.stderr
