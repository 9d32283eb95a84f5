"""The dependency lists agree, the set-up commands are the ones README gives, and the top-level import is light."""
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _project():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _declared(*extras):
    project = _project()
    reqs = list(project["dependencies"])
    for extra in extras:
        reqs += project["optional-dependencies"][extra]
    return sorted(_normal(r) for r in reqs)


def _normal(requirement: str) -> str:
    return re.sub(r"\s+", "", requirement).lower()


def _pip_section(path: Path) -> list[str]:
    env = yaml.safe_load(path.read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    # Options (-e ., --extra-index-url) say where packages come from, not which ones.
    return sorted(_normal(r) for r in pip if not r.startswith("-"))


def test_environment_yml_lists_exactly_the_declared_dependencies():
    assert _pip_section(ROOT / "environment.yml") == _declared("torch", "keras", "course", "test")


def test_binder_environment_lists_exactly_the_declared_dependencies():
    assert _pip_section(ROOT / "binder" / "environment.yml") == _declared("torch", "keras", "course")


def test_binder_uses_cpu_builds_of_both_frameworks():
    text = (ROOT / "binder" / "environment.yml").read_text()
    assert "download.pytorch.org/whl/cpu" in text
    assert "tensorflow-cpu" in text and not re.search(r'"tensorflow[=<>]', text)


def test_torch_is_pinned_to_the_course_versions():
    torch_extra = _project()["optional-dependencies"]["torch"]
    assert "torch==2.14.1" in torch_extra and "torchvision==0.29.1" in torch_extra


def test_ci_runs_the_test_command_that_readme_gives():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and "make lab" in readme
    assert re.search(r"^make test$", ci, re.M)


def test_ci_checks_the_claims_with_another_seed():
    ci = (ROOT / ".ci" / "run").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^make check-claims$", ci, re.M)
    recipe = makefile.split("check-claims:", 1)[1].split("\n\n", 1)[0]
    assert re.search(r"claims --seed [1-9]", recipe), "check-claims must run with a seed other than the stored 0"


def test_import_tlcourse_loads_neither_framework():
    code = (
        "import sys, tlcourse, tlcourse.data, tlcourse.history; "
        "tlcourse.data.cards(); "
        "print(sorted(m for m in ('torch', 'tensorflow', 'keras') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ, check=True)
    assert out.stdout.strip() == "[]"


def test_the_shipped_photos_are_package_data():
    from fnmatch import fnmatch

    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["tlcourse"]
    shipped = [p.relative_to(ROOT / "tlcourse").as_posix() for p in (ROOT / "tlcourse" / "data" / "shipped").rglob("*")
               if p.is_file()]
    assert len(shipped) == 1502
    assert [f for f in shipped if not any(fnmatch(f, pattern) for pattern in patterns)] == []


def test_python_dash_m_tlcourse_is_the_tlcourse_command():
    out = subprocess.run([sys.executable, "-m", "tlcourse", "--help"], capture_output=True, text=True, check=True)
    assert "inspect" in out.stdout


def test_ci_proves_that_make_lab_serves_the_notebooks():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "lab_serves" in ci
    check = (ROOT / ".ci" / "lab_serves").read_text()
    assert "make lab" in check and "/api/contents" in check
