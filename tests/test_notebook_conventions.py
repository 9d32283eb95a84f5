"""Every chapter notebook keeps the course's promises to a learner; checked without running it.

(Running them is `pytest --nbval notebooks/`, the other half of `make test`.)
"""
import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))
REPOSITORY = "tlcourse/tlcourse"


def chapter(path):
    return nbformat.read(path, as_version=4)


def markdown(notebook):
    return "\n".join(c.source for c in notebook.cells if c.cell_type == "markdown")


def code_cells(notebook):
    return [c for c in notebook.cells if c.cell_type == "code"]


def test_the_chapters_are_there():
    numbers = [p.name[:2] for p in NOTEBOOKS]
    assert numbers == sorted(set(numbers)), "two notebooks share a chapter number"
    assert numbers[0] == "00"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_opens_with_title_goals_badges_and_glossary(path):
    first = chapter(path).cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# ")
    assert "By the end you will" in first.source
    colab = f"https://colab.research.google.com/github/{REPOSITORY}/blob/main/notebooks/{path.name}"
    binder = f"https://mybinder.org/v2/gh/{REPOSITORY}/main?urlpath=lab/tree/notebooks/{path.name}"
    assert colab in first.source, "Colab badge missing or pointing at another notebook"
    assert binder in first.source, "Binder badge missing or pointing at another notebook"
    assert "../docs/glossary.md" in first.source, "link the glossary from the first cell"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_first_code_cell_sets_up_anywhere(path):
    setup = code_cells(chapter(path))[0]
    assert "tlcourse.setup()" in setup.source
    assert "%pip install" in setup.source and "except ImportError" in setup.source, "Colab needs the install fallback"
    assert "torch" not in setup.source.split("%pip install", 1)[1].splitlines()[0], "must not reinstall Colab's torch"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_self_checks_and_exercises_with_hidden_solutions(path):
    notebook = chapter(path)
    assert any(re.search(r"^\s*assert ", c.source, re.M) for c in code_cells(notebook)), "no self-check cell"
    solutions = markdown(notebook).count("<details>")
    assert solutions >= (1 if path.name.startswith("00") else 2), "2-4 exercises with solutions in <details>"
    assert solutions <= 6


@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if not p.name.startswith("00")], ids=lambda p: p.stem)
def test_a_widget_to_explore(path):
    sources = "\n".join(c.source for c in code_cells(chapter(path)))
    assert re.search(r"widgets\.|interact", sources), "add at least one ipywidgets control"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_stored_with_outputs_and_nothing_skipped(path):
    notebook = chapter(path)
    for cell in code_cells(notebook):
        assert cell.execution_count is not None, f"not executed: {cell.source[:60]!r}; run make refresh NB={path}"
        assert "nbval-skip" not in cell.metadata.get("tags", []), "every cell must run under nbval"
    counts = [c.execution_count for c in code_cells(notebook)]
    assert counts == list(range(1, len(counts) + 1)), "stored outputs must come from one top-to-bottom run"


# Teaching code is welcome: a chapter writes the plain PyTorch or Keras of its technique (a training
# loop, a head, a gradient reversal) before it calls tlcourse for the same. What is not welcome is
# plumbing: a function long enough to need its own test, or the same function in two chapters.
TEACHING_FUNCTION_LINES = 15


def defined_functions(notebook):
    for cell in code_cells(notebook):
        for match in re.finditer(r"^(?:def|class) (\w+).*?(?=^\S|\Z)", cell.source, re.M | re.S):
            yield match.group(1), match.group(0)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_helper_code_pasted_into_the_notebook(path):
    for name, text in defined_functions(chapter(path)):
        body = [line for line in text.splitlines()[1:] if line.strip() and not line.strip().startswith("#")]
        assert len(body) <= TEACHING_FUNCTION_LINES, f"{name}: move this into tlcourse (with a test): {text[:80]!r}"


def test_no_function_is_written_in_two_chapters():
    seen = {}
    for path in NOTEBOOKS:
        for name, text in defined_functions(chapter(path)):
            lines = [line.strip() for line in text.splitlines()[1:] if line.strip()]
            if len(lines) < 3:  # a one-line adapter such as transform(images) may repeat
                continue
            for key in (name, "\n".join(lines)):
                assert key not in seen or seen[key] == path.name, (
                    f"{name} in {path.name} is also in {seen[key]}: what two chapters need lives in tlcourse")
                seen[key] = path.name


SEEDED_CALL = re.compile(r"(seed_everything|manual_seed|default_rng|set_random_seed)\(\s*\d|\bseed\s*=\s*\d")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_seed_comes_from_the_course_seed(path):
    """make check-claims reruns a chapter with TLCOURSE_SEED changed: a literal seed would not change."""
    cells = code_cells(chapter(path))
    assert 'SEED = info["seed"]' in cells[0].source
    for cell in cells:
        code = "\n".join(line.split("#", 1)[0] for line in cell.source.splitlines())
        assert not SEEDED_CALL.search(code), f"seed this from SEED, not a number: {cell.source[:80]!r}"


def test_each_dataset_card_names_the_chapters_that_load_it():
    from tlcourse.data import registry

    cards = {card.name: card for card in registry.cards()}
    for path in NOTEBOOKS[1:]:  # chapter 00 tours every set
        number = int(path.name[:2])
        code = "\n".join(c.source for c in code_cells(chapter(path)))
        for name in set(re.findall(r'"([a-z0-9_]+)"', code)) & set(cards):
            assert number in cards[name].chapters, f"chapter {number:02d} loads {name!r}: add {number} to its card's chapters"
    for card in cards.values():
        for number in card.chapters:
            path = next(p for p in NOTEBOOKS if int(p.name[:2]) == number)
            code = "\n".join(c.source for c in code_cells(chapter(path)))
            if number != 6:  # chapter 06 loads its sets through tlcourse.dann's recipes
                assert f'"{card.name}"' in code, f"{card.name!r}'s card lists chapter {number:02d}, which never names it"
