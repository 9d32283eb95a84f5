"""How long each chapter takes and how much memory it needs, in one table.

Every chapter notebook runs top to bottom in a fresh kernel, one after the other, in the chosen
profile (``quick`` by default), exactly as ``tlcourse course --execute`` runs them. For each one
the table gives the wall time and the kernel's peak resident memory (RSS): the number that must
stay under Binder's usual 2 GiB. Each notebook runs in its own child process, so the peak read
from ``getrusage(RUSAGE_CHILDREN)`` there is that notebook's kernel and nothing else.

Usage:
  python benchmarks/notebooks.py                      # print the table
  python benchmarks/notebooks.py --update-readme      # also write it into README.md and docs/instructor.md
  python benchmarks/notebooks.py 03_bottleneck_features.ipynb   # only some chapters
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BINDER_LIMIT_GIB = 2.0
README_START, README_END = "<!-- chapter-times:start -->", "<!-- chapter-times:end -->"


def run_one(path: Path, profile: str) -> dict:
    """Run one notebook in this process's kernel child and measure it (called in a child process)."""
    import resource

    from tlcourse import course

    notebook, seconds = course.execute(path, profile=profile)
    del notebook
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # Linux reports KiB
    return {"seconds": seconds, "peak_rss_gib": peak_kib / 2**20}


def measure(path: Path, profile: str) -> dict:
    result = subprocess.run([sys.executable, __file__, "--child", str(path), "--profile", profile],
                            capture_output=True, text=True, cwd=ROOT)
    if result.returncode != 0:
        tail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": tail}
    return json.loads(result.stdout.strip().splitlines()[-1])


def table(rows: list[tuple], profile: str) -> str:
    lines = [f"| # | chapter | time ({profile}) | peak memory |", "|---|---|---|---|"]
    for chapter, result in rows:
        if "error" in result:
            lines.append(f"| {chapter.number} | `{chapter.path.stem}` | failed: {result['error'][:60]} | - |")
        else:
            lines.append(f"| {chapter.number} | `{chapter.path.stem}` | {result['seconds']:.0f} s "
                         f"| {result['peak_rss_gib']:.2f} GiB |")
    return "\n".join(lines)


DOCUMENTS = ("README.md", "docs/instructor.md")  # each holds one block between the two markers


def update_documents(markdown: str, machine: str) -> None:
    block = (f"{README_START}\n<!-- written by `python benchmarks/notebooks.py --update-readme`; do not edit -->\n"
             f"{markdown}\n\n{machine}\n{README_END}")
    for name in DOCUMENTS:
        path = ROOT / name
        text = path.read_text(encoding="utf-8")
        if README_START not in text or README_END not in text:
            raise SystemExit(f"{name} has no {README_START} ... {README_END} block to fill")
        text = re.sub(re.escape(README_START) + ".*?" + re.escape(README_END), lambda _: block, text, flags=re.S)
        path.write_text(text, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="chapter notebooks to run (default: all)")
    parser.add_argument("--profile", choices=("quick", "full"), default="quick")
    parser.add_argument("--update-readme", action="store_true", help="write the table into README.md and docs/instructor.md")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_one(Path(args.child), args.profile)))
        return

    from tlcourse import course

    every = course.chapters(ROOT / "notebooks")
    chapters = [c for c in every if not args.names or {c.path.name, c.path.stem} & set(args.names)]
    unknown = set(args.names) - {n for c in every for n in (c.path.name, c.path.stem)}
    if unknown:
        raise SystemExit(f"no chapter notebook named {', '.join(sorted(unknown))}; "
                         f"choose from {', '.join(c.path.stem for c in every)}")
    rows = []
    for chapter in chapters:
        result = measure(chapter.path, args.profile)
        rows.append((chapter, result))
        print(f"{chapter.path.name:32} {json.dumps(result)}", file=sys.stderr, flush=True)
    markdown = table(rows, args.profile)
    done = [r for _, r in rows if "error" not in r]
    total = sum(r["seconds"] for r in done)
    worst = max((r["peak_rss_gib"] for r in done), default=float("nan"))
    cores = len(os.sched_getaffinity(0))
    version, torch_gib = _torch_import_footprint()
    machine = (f"Measured with {cores} CPU cores{', no GPU' if not _has_gpu() else ''}: {total / 60:.1f} min for "
               f"the {len(done)} notebooks; the largest peak, {worst:.2f} GiB, is "
               f"{'under' if worst < BINDER_LIMIT_GIB else 'OVER'} Binder's {BINDER_LIMIT_GIB:g} GiB. "
               f"Of each peak, `import torch` alone (torch {version}) holds {torch_gib:.2f} GiB.")
    print(markdown)
    print()
    print(machine)
    if args.update_readme:
        if args.names:
            raise SystemExit("--update-readme needs every chapter: run it without naming notebooks")
        update_documents(markdown, machine)
        print("updated: " + ", ".join(DOCUMENTS))


def _torch_import_footprint() -> tuple[str, float]:
    """Torch's version and the resident memory of a fresh process that has only imported it (GiB)."""
    script = ("import torch; status = open('/proc/self/status').read(); "
              "print(torch.__version__, int(status.split('VmRSS:')[1].split()[0]) / 2**20)")
    version, gib = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                                  check=True).stdout.split()
    return version, float(gib)


def _has_gpu() -> bool:
    try:
        return subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode == 0
    except OSError:
        return False


if __name__ == "__main__":
    main()
