import subprocess
import sys

import pytest


@pytest.mark.slow
def test_torch_trains_after_keras_was_imported_through_tlcourse():
    # Without triton loaded first, the optimizer step below kills the interpreter (exit -11).
    code = (
        "import tlcourse.keras, tensorflow, torch, torchvision\n"
        "m = torch.nn.Linear(3, 2); opt = torch.optim.Adam(m.parameters())\n"
        "m(torch.randn(4, 3)).sum().backward(); opt.step(); print('trained')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "trained" in result.stdout


@pytest.mark.slow
def test_torch_trains_when_tensorflow_was_imported_first():
    code = (
        "import warnings, tensorflow, tlcourse.torch, torch, torchvision\n"
        "m = torch.nn.Linear(3, 2); opt = torch.optim.Adam(m.parameters())\n"
        "m(torch.randn(4, 3)).sum().backward(); opt.step(); print('trained')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "trained" in result.stdout and "runs without triton" in result.stderr
