"""The course as a whole: its chapters in order, running them headless, and an HTML copy to browse.

``tlcourse course`` (and ``make course`` / ``make site``) use this module:

- :func:`chapters` lists the notebooks ``NN_name.ipynb`` of a folder in chapter order;
- :func:`execute` runs one notebook top to bottom in a fresh kernel, as a learner would;
- :func:`build_site` writes one HTML page per chapter, with links to the previous and next chapter
  and to an index page, plus the glossary, so the course can be read without Jupyter.

nbformat, nbclient and nbconvert come with JupyterLab (the ``course`` extra); they are imported only
when a function here is called.
"""
from __future__ import annotations

import html
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

CHAPTER_FILE = re.compile(r"^(\d\d)_[\w-]+\.ipynb$")


@dataclass(frozen=True)
class Chapter:
    number: str  # "00", "01", ...
    path: Path
    title: str

    @property
    def page(self) -> str:
        return self.path.with_suffix(".html").name


def chapters(folder: str | os.PathLike = "notebooks") -> list[Chapter]:
    """The folder's chapter notebooks (``NN_name.ipynb``), in chapter order, with their titles."""
    import nbformat

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no notebook folder at {folder}; run this from the course's repository "
                                "or pass the folder (--notebooks DIR)")
    found = []
    for path in sorted(folder.iterdir()):
        match = CHAPTER_FILE.match(path.name)
        if match:
            found.append(Chapter(match.group(1), path, _title(nbformat.read(path, as_version=4), path)))
    if not found:
        raise FileNotFoundError(f"{folder} holds no chapter notebooks named like 01_name.ipynb")
    return found


def _title(notebook, path: Path) -> str:
    """The first Markdown heading of the notebook, without its '#' marks; else the file name."""
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("#"):
                    return re.sub(r"^\d\d\s*[·.:-]\s*", "", line.lstrip("#").strip())  # "01 · Title" → "Title"
    return path.stem


# What ``threads=`` sets for the kernel: PyTorch's and NumPy's OpenMP/BLAS pools and TensorFlow's two.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                    "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")


def execute(path: str | os.PathLike, *, timeout: int = 600, profile: str = "quick", seed: int | None = None,
            threads: int | None = None, allow_errors: bool = False):
    """Run a notebook top to bottom in a fresh kernel (its folder as working directory).

    Returns ``(notebook, seconds)``: the executed notebook (not written anywhere) and the wall time.
    The kernel gets ``TLCOURSE_PROFILE=profile``, ``TLCOURSE_SEED=seed`` when a seed is given, and
    ``threads`` threads for every numeric library when given. A failing cell raises nbclient's
    ``CellExecutionError`` (which shows the cell's traceback) with the notebook executed up to and
    including that cell attached as ``error.notebook``, so the failure can still be rendered; with
    ``allow_errors=True`` the run goes on past failing cells and their errors stay in the outputs.
    """
    import nbformat
    from nbclient import NotebookClient

    path = Path(path)
    notebook = nbformat.read(path, as_version=4)
    environment = {"TLCOURSE_PROFILE": profile}
    if seed is not None:
        environment["TLCOURSE_SEED"] = str(seed)
    if threads is not None:
        environment.update({name: str(threads) for name in THREAD_VARIABLES})
    previous = {name: os.environ.get(name) for name in environment}
    os.environ.update(environment)  # the kernel inherits this process's environment
    started = time.perf_counter()
    try:
        NotebookClient(notebook, timeout=timeout, kernel_name="python3", allow_errors=allow_errors,
                       resources={"metadata": {"path": str(path.parent)}}).execute()
    except Exception as error:
        error.notebook = notebook
        raise
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return notebook, time.perf_counter() - started


@dataclass(frozen=True)
class CellError:
    """A cell that raised: its index among the notebook's cells, the error, and the line that raised."""

    cell: int
    error: str  # "AssertionError: ..." or "NameError: ..."
    line: str   # the cell's source line the traceback points at ("" when it points elsewhere)

    @property
    def is_claim(self) -> bool:
        return self.error.startswith("AssertionError")


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_POINTER = re.compile(r"^-+>\s*\d+\s(.*)$")  # IPython marks the line that raised: "----> 2 assert ..."


def cell_errors(notebook) -> list[CellError]:
    """Every error stored in an executed notebook's outputs (run with ``allow_errors=True``)."""
    found = []
    for index, cell in enumerate(notebook.cells):
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if output.get("output_type") != "error":
                continue
            frames = [_ANSI.sub("", frame) for frame in output.get("traceback", [])]
            cell_frame = next((frame for frame in frames if frame.startswith("Cell In[")), "")
            pointed = [match.group(1) for text in cell_frame.splitlines() if (match := _POINTER.match(text))]
            line = pointed[-1].strip() if pointed else ""
            message = f"{output.get('ename', 'Error')}: {output.get('evalue', '')}".rstrip(": ")
            found.append(CellError(index, message, line))
    return found


_STYLE = """
<style>
  nav.tlcourse { font-family: system-ui, sans-serif; display: flex; gap: 1.5em; align-items: baseline;
                 padding: 0.6em 1.2em; border-bottom: 1px solid #ddd; background: #fafafa; }
  nav.tlcourse a { text-decoration: none; }
  nav.tlcourse .here { font-weight: 600; flex: 1; text-align: center; }
  body.tlcourse-page { font-family: system-ui, sans-serif; max-width: 60em; margin: 0 auto; padding: 0 1em; }
  body.tlcourse-page table { border-collapse: collapse; }
  body.tlcourse-page td, body.tlcourse-page th { border: 1px solid #ddd; padding: 0.3em 0.6em; }
</style>
"""


def _nav(previous: Chapter | None, here: str, following: Chapter | None) -> str:
    def link(chapter: Chapter | None, before: str = "", after: str = "") -> str:
        if chapter is None:
            return "<span></span>"
        return f'<a href="{chapter.page}">{before}{chapter.number} · {html.escape(chapter.title)}{after}</a>'

    return (f'<nav class="tlcourse">{link(previous, before="← ")}<a href="index.html">contents</a>'
            f'<span class="here">{html.escape(here)}</span><a href="glossary.html">glossary</a>'
            f'{link(following, after=" →")}</nav>')


def _with_nav(page: str, nav: str) -> str:
    """Put the navigation bar at the top and bottom of an nbconvert page's body."""
    page = page.replace("</head>", _STYLE + "</head>", 1)
    page = re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + nav, page, count=1)
    return page.replace("</body>", nav + "</body>", 1)


def _local_links(page: str) -> str:
    """Links between chapters and to the glossary point at the site's pages, not the sources."""
    page = re.sub(r'href="(?:\./)?(\d\d_[\w-]+)\.ipynb', r'href="\1.html', page)
    return re.sub(r'href="(?:\.\./)?docs/glossary\.md', 'href="glossary.html', page)


def _markdown_page(markdown_text: str, title: str, nav: str) -> str:
    import mistune

    body = mistune.create_markdown(plugins=["table"])(markdown_text)
    return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"{_STYLE}</head><body class='tlcourse-page'>{nav}{body}{nav}</body></html>\n")


def build_site(notebooks: str | os.PathLike = "notebooks", out: str | os.PathLike = "site", *,
               glossary: str | os.PathLike | None = "docs/glossary.md", executed: dict | None = None) -> Path:
    """Write the course as static HTML into ``out``: ``index.html``, one page per chapter, the glossary.

    Pages show the outputs stored in the notebooks, or those of ``executed`` (chapter file name →
    executed notebook, from :func:`execute`) where given. Returns the index page's path.
    """
    from nbconvert import HTMLExporter

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    listed = chapters(notebooks)
    exporter = HTMLExporter(template_name="lab")
    for number, chapter in enumerate(listed):
        previous = listed[number - 1] if number > 0 else None
        following = listed[number + 1] if number + 1 < len(listed) else None
        notebook = (executed or {}).get(chapter.path.name)
        if notebook is None:
            import nbformat

            notebook = nbformat.read(chapter.path, as_version=4)
        page, _ = exporter.from_notebook_node(notebook, resources={"metadata": {"name": chapter.title}})
        page = _local_links(_with_nav(page, _nav(previous, f"{chapter.number} · {chapter.title}", following)))
        _write(out / chapter.page, page)

    rows = "\n".join(f"| {c.number} | [{c.title}]({c.page}) |" for c in listed)
    contents = ("# tlcourse — transfer learning, in PyTorch and Keras\n\n| # | chapter |\n|---|---|\n"
                f"{rows}\n\nThe [glossary](glossary.html) gives every term in English, 繁體中文 and 简体中文.\n")
    _write(out / "index.html", _markdown_page(contents, "tlcourse", _nav(None, "contents", listed[0])))
    if glossary is not None and Path(glossary).exists():
        text = Path(glossary).read_text(encoding="utf-8")
        _write(out / "glossary.html", _markdown_page(text, "Glossary", _nav(None, "glossary", None)))
    return out / "index.html"


def _write(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)
