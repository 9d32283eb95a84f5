import random
import subprocess
import sys

import numpy as np
import pytest

import tlcourse
from tlcourse import config


def test_quick_is_the_default_profile(monkeypatch):
    monkeypatch.delenv("TLCOURSE_PROFILE", raising=False)
    assert tlcourse.profile() == "quick"


def test_profile_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("TLCOURSE_PROFILE", "FULL")
    assert tlcourse.profile() == "full"


def test_unknown_profile_names_the_choices(monkeypatch):
    monkeypatch.setenv("TLCOURSE_PROFILE", "fast")
    with pytest.raises(ValueError, match="quick, full"):
        tlcourse.profile()


def test_cache_root_follows_tlcourse_home(monkeypatch, tmp_path):
    monkeypatch.setenv("TLCOURSE_HOME", str(tmp_path / "cache"))
    assert tlcourse.home() == tmp_path / "cache"
    made = tlcourse.cache_dir("datasets", "mnist")
    assert made == tmp_path / "cache" / "datasets" / "mnist" and made.is_dir()


def test_cache_root_defaults_under_the_user_cache(monkeypatch):
    monkeypatch.delenv("TLCOURSE_HOME", raising=False)
    assert tlcourse.home().parts[-2:] == (".cache", "tlcourse")


def test_seed_everything_repeats_python_and_numpy_draws():
    tlcourse.seed_everything(7)
    first = (random.random(), np.random.rand(3))
    tlcourse.seed_everything(7)
    second = (random.random(), np.random.rand(3))
    assert first[0] == second[0] and np.array_equal(first[1], second[1])
    assert tlcourse.current_seed() == 7


@pytest.mark.slow
def test_seed_is_applied_when_torch_is_imported_later():
    def first_draw(seed):
        code = f"import tlcourse; tlcourse.seed_everything({seed}); import tlcourse.torch, torch; print(torch.rand(1).item())"
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout

    expected = subprocess.run(
        [sys.executable, "-c", "import torch; torch.manual_seed(3); print(torch.rand(1).item())"],
        capture_output=True, text=True, check=True,
    ).stdout
    assert first_draw(3) == expected
    assert first_draw(4) != expected


def test_setup_reports_profile_and_device(monkeypatch, capsys):
    monkeypatch.setenv("TLCOURSE_PROFILE", "quick")
    info = tlcourse.setup()
    printed = capsys.readouterr().out
    assert info["profile"] == "quick" and info["device"] in ("cpu", "cuda")
    assert "profile : quick" in printed and "device" in printed
    assert info["torch"] == "2.14.1"


def test_setup_seeds_with_tlcourse_seed(monkeypatch, capsys):
    import random

    monkeypatch.setenv("TLCOURSE_SEED", "5")
    info = tlcourse.setup()
    first = random.random()
    random.seed(5)
    assert info["seed"] == 5 == tlcourse.course_seed() == tlcourse.current_seed() and first == random.random()
    assert "seed    : 5" in capsys.readouterr().out
    monkeypatch.delenv("TLCOURSE_SEED")
    assert tlcourse.setup(verbose=False)["seed"] == 0


def test_a_seed_that_is_not_a_number_says_so(monkeypatch):
    monkeypatch.setenv("TLCOURSE_SEED", "one")
    with pytest.raises(ValueError, match="TLCOURSE_SEED='one' is not a whole number"):
        tlcourse.course_seed()
