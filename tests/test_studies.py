"""The committed study chapter 04 plots: shipped as package data, and what its benchmark script would write."""
import importlib.util
import json
import tomllib
from fnmatch import fnmatch
from importlib import resources
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


PACKAGED = resources.files("tlcourse") / "studies" / "staged_unfreezing.json"


def load_benchmark(name: str):
    """A script of benchmarks/ as a module; the scripts import no framework until main() runs."""
    spec = importlib.util.spec_from_file_location(f"{name}_benchmark", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def script():
    return load_benchmark("staged_unfreezing")


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


FOUR_CASES = resources.files("tlcourse") / "studies" / "four_cases.json"


@pytest.fixture(scope="module")
def four_cases_script():
    return load_benchmark("four_cases")


@pytest.fixture(scope="module")
def four_cases():
    return json.loads(FOUR_CASES.read_text())


def test_the_four_cases_are_where_their_script_writes_them(four_cases_script):
    assert Path(str(FOUR_CASES)).resolve() == four_cases_script.STUDY


def test_the_four_strategies_are_the_staged_study_schedules(four_cases, four_cases_script, study):
    assert list(four_cases["strategies"]) == list(four_cases_script.STRATEGIES)
    for strategy, recorded in four_cases["strategies"].items():
        assert recorded["schedule"] == four_cases_script.STRATEGIES[strategy]
        assert study["schedules"][recorded["schedule"]]["stages"] == recorded["stages"]


def test_each_case_has_three_seeds_and_the_larger_runs_are_the_staged_studys(four_cases, study):
    assert set(four_cases["sets"]) == set(study["sets"])
    for set_name, result in four_cases["sets"].items():
        sizes = sorted(result["per_class"], key=int)
        assert len(sizes) == 2 and int(sizes[0]) < int(sizes[1])
        assert result["per_class"][sizes[1]]["train"] == study["sets"][set_name]["train"]
        for size in sizes:
            case = result["per_class"][size]
            assert case["train"] == int(size) * result["classes"]
            for strategy, runs in case["runs"].items():
                assert [run["seed"] for run in runs] == [0, 1, 2]
                assert all(0.0 <= run["test_accuracy"] <= 1.0 for run in runs)
        for strategy, recorded in four_cases["strategies"].items():
            larger = [run["test_accuracy"] for run in result["per_class"][sizes[1]]["runs"][strategy]]
            staged = [run["test_accuracy"] for run in study["sets"][set_name]["runs"][recorded["schedule"]]][:3]
            assert larger == staged, "rerun python benchmarks/four_cases.py after the staged study"


CONSERVATIVE = resources.files("tlcourse") / "studies" / "conservative.json"


@pytest.fixture(scope="module")
def conservative_script():
    return load_benchmark("conservative")


def test_the_conservative_study_is_where_its_script_writes_it(conservative_script):
    assert Path(str(CONSERVATIVE)).resolve() == conservative_script.STUDY


def test_the_conservative_study_ran_every_method_rate_and_seed_in_both_frameworks(conservative_script):
    study = json.loads(CONSERVATIVE.read_text())
    assert set(study["sets"]) == set(conservative_script.SETS) and study["split_at"] == conservative_script.SPLIT_AT
    rates = {f"{lr:g}" for lr in study["lrs"]}
    assert len(rates) >= 2, "the chapter chooses the rate on validation: the study needs more than one"
    for set_name, entry in study["sets"].items():
        assert entry["size"] == conservative_script.SETS[set_name]
        assert len(entry["per_class"]) >= 2
        for per_class, cell in entry["per_class"].items():
            assert set(cell["runs"]) == {"torch", "keras"}
            for framework, methods in cell["runs"].items():
                assert set(methods) == set(conservative_script.METHODS)
                for method, by_rate in methods.items():
                    assert set(by_rate) == rates
                    for runs in by_rate.values():
                        assert [run["seed"] for run in runs] == list(range(len(runs))) and len(runs) >= 3
                        for run in runs:
                            assert 0.0 <= run["val_accuracy"] <= 1.0 and 0.0 <= run["test_accuracy"] <= 1.0
                            assert (run["drift"] == 0) == (method == "frozen"), (set_name, per_class, framework, method)


def test_the_dann_selection_study_scored_every_setting_by_every_signal(capsys):
    script = load_benchmark("dann_selection")
    packaged = resources.files("tlcourse") / "studies" / "dann_selection.json"
    assert Path(str(packaged)).resolve() == script.STUDY
    study = json.loads(packaged.read_text())
    assert study["signals"] == list(script.SIGNALS) and set(study["lower_is_better"]) == script.LOWER_IS_BETTER
    assert set(study["settings"]) == set(script.candidates())
    for setting in study["settings"].values():
        runs = setting["runs"]
        assert [run["seed"] for run in runs] == list(range(len(runs))) and len(runs) >= 3
        for run in runs:
            assert all(0.0 <= run[key] <= 1.0 for key in (*study["signals"], "test"))
    script.summarise(study)  # the table its run ends with, from the stored runs alone
    printed = capsys.readouterr().out
    assert all(f"{signal:20s} picks " in printed for signal in study["signals"])
