"""The course as a whole: chapter order, headless runs, and the HTML site with its navigation."""
import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from tlcourse import cli, course


def write_notebook(path, *cells):
    nbformat.write(new_notebook(cells=list(cells)), path)
    return path


@pytest.fixture
def chapters(tmp_path):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    write_notebook(folder / "02_second.ipynb", new_markdown_cell("# 02 · Second steps\nBack to [the first](01_first.ipynb)."),
                   new_code_cell("import os\nprint('profile', os.environ['TLCOURSE_PROFILE'])"))
    write_notebook(folder / "01_first.ipynb", new_markdown_cell("Intro\n\n## The first chapter"),
                   new_markdown_cell("See the [glossary](../docs/glossary.md) and [next](02_second.ipynb)."),
                   new_code_cell("print(6 * 7)"))
    write_notebook(folder / "scratch.ipynb", new_markdown_cell("# not a chapter"))
    return folder


def test_chapters_are_numbered_notebooks_in_order(chapters):
    found = course.chapters(chapters)
    assert [(c.number, c.title) for c in found] == [("01", "The first chapter"), ("02", "Second steps")]


def test_missing_folder_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="--notebooks"):
        course.chapters(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="01_name.ipynb"):
        course.chapters(tmp_path)


def test_site_pages_link_to_each_other(chapters, tmp_path):
    glossary = tmp_path / "glossary.md"
    glossary.write_text("# Glossary\n\n| English | 繁體中文 |\n|---|---|\n| fine-tuning | 微調 |\n", encoding="utf-8")
    index = course.build_site(chapters, tmp_path / "site", glossary=glossary)
    site = index.parent
    assert sorted(p.name for p in site.iterdir()) == ["01_first.html", "02_second.html", "glossary.html", "index.html"]
    first = (site / "01_first.html").read_text(encoding="utf-8")
    second = (site / "02_second.html").read_text(encoding="utf-8")
    assert '<a href="02_second.html">02 · Second steps →</a>' in first
    assert '<a href="01_first.html">← 01 · The first chapter</a>' in second
    assert 'href="02_second.ipynb' not in first and 'href="02_second.html"' in first  # a link in the text
    assert 'href="glossary.html"' in first and "docs/glossary.md" not in first
    assert index.read_text(encoding="utf-8").index("01_first.html") < index.read_text(encoding="utf-8").index("02_second.html")
    assert "<td>微調</td>" in (site / "glossary.html").read_text(encoding="utf-8")


def test_execute_runs_in_the_requested_profile(chapters, monkeypatch):
    monkeypatch.setenv("TLCOURSE_PROFILE", "quick")
    notebook, seconds = course.execute(chapters / "02_second.ipynb", profile="full")
    assert notebook.cells[1].outputs[0]["text"] == "profile full\n"
    assert seconds > 0
    import os

    assert os.environ["TLCOURSE_PROFILE"] == "quick"  # restored afterwards


@pytest.mark.slow
def test_a_failing_chapter_is_reported_and_still_rendered(chapters, tmp_path, capsys):
    write_notebook(chapters / "03_broken.ipynb", new_markdown_cell("# Broken"),
                   new_code_cell("print('before')"), new_code_cell("raise RuntimeError('no such file: weights.h5')"))
    status = cli.main(["course", "--notebooks", str(chapters), "--out", str(tmp_path / "site"),
                       "--glossary", str(tmp_path / "none.md"), "--execute"])
    out, err = capsys.readouterr()
    assert status == 1
    assert "03_broken.ipynb" in err and "FAILED" in out
    assert "ok" in out.split("01")[1].splitlines()[0]
    page = (tmp_path / "site" / "03_broken.html").read_text(encoding="utf-8")
    assert "before" in page and "no such file: weights.h5" in page


@pytest.mark.slow
def test_claims_reruns_with_another_seed_and_one_thread_and_lists_the_failing_asserts(tmp_path, capsys):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    write_notebook(folder / "01_seeded.ipynb", new_markdown_cell("# 01 · Seeded"),
                   new_code_cell("import os\nSEED = int(os.environ.get('TLCOURSE_SEED', 0))\n"
                                 "print(os.environ['OMP_NUM_THREADS'], os.environ['TF_NUM_INTRAOP_THREADS'])"),
                   new_code_cell("assert SEED == 0, 'only true of the stored run'"),
                   new_code_cell("assert SEED >= 0\nprint('holds on any seed')"))
    write_notebook(folder / "02_fine.ipynb", new_markdown_cell("# 02 · Fine"), new_code_cell("assert True"))
    assert cli.main(["claims", "--notebooks", str(folder), "--seed", "3", "--threads", "1"]) == 1
    captured = capsys.readouterr()
    printed = captured.out
    assert "1 notebook(s) have cells that fail with TLCOURSE_SEED=3" in captured.err
    assert "TLCOURSE_SEED=3, 1 thread" in printed
    assert "cell 2 (claim): assert SEED == 0, 'only true of the stored run'" in printed
    assert "AssertionError: only true of the stored run" in printed
    assert "02" in printed and printed.count("failing cell") == 1
    notebook, _ = course.execute(folder / "01_seeded.ipynb", seed=3, threads=1, allow_errors=True)
    assert notebook.cells[1].outputs[0]["text"] == "1 1\n"  # every numeric library on one thread
    assert [error.cell for error in course.cell_errors(notebook)] == [2]
    assert "holds on any seed" in notebook.cells[3].outputs[0]["text"]  # the run went on past the failure
