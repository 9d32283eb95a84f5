"""The committed study chapter 04 plots: shipped as package data, and what its benchmark script would write."""
import importlib.util
import json
import tomllib
from fnmatch import fnmatch
from importlib import resources
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "staged_unfreezing.py"


PACKAGED = resources.files("tlcourse") / "studies" / "staged_unfreezing.json"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("staged_unfreezing_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # the script imports no framework until main() runs
    return module


@pytest.fixture(scope="module")
def study():
    return json.loads(PACKAGED.read_text())


def test_the_study_is_package_data():
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["tlcourse"]
    assert any(fnmatch("studies/staged_unfreezing.json", pattern) for pattern in patterns)


def test_the_study_is_where_the_script_writes_it(script):
    assert Path(str(PACKAGED)).resolve() == script.STUDY


def test_the_study_ran_the_schedules_the_script_defines(study, script):
    expected = {name: {"pretrained": p, "stages": [list(s) for s in stages], "lr_decay": d}
                for name, (p, stages, d) in script.SCHEDULES.items()}
    assert study["schedules"] == expected, "the schedules changed: rerun python benchmarks/staged_unfreezing.py"
    assert set(study["sets"]) == set(script.SETS)


def test_every_run_has_every_epoch_and_one_test_score(study, script):
    for set_name, result in study["sets"].items():
        assert result["size"] == script.SETS[set_name]
        for name, schedule in study["schedules"].items():
            runs = result["runs"][name]
            assert [run["seed"] for run in runs] == list(range(len(runs))) and len(runs) >= 3
            epochs = sum(stage[1] for stage in schedule["stages"])
            for run in runs:
                assert [row["epoch"] for row in run["epochs"]] == list(range(1, epochs + 1))
                assert all(0.0 <= row["val_accuracy"] <= 1.0 for row in run["epochs"])
                assert 0.0 <= run["test_accuracy"] <= 1.0 and run["seconds"] > 0
