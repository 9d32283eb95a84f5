"""Write benchmark results into README.md: each table there is a script's output, pasted by this one.

README.md marks each result block with a pair of comments naming a script of this folder,
``<!-- benchmark:loop_overhead -->`` ... ``<!-- /benchmark:loop_overhead -->``. This script runs
those scripts (all marked ones, or the names given), one after the other, and replaces each block
with the script's printed table, the command that made it and the machine it ran on.

    python benchmarks/readme.py                        # every marked block
    python benchmarks/readme.py loop_overhead dann     # just these

The chapter-time table has its own command: ``python benchmarks/notebooks.py --update-readme``.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BLOCK = re.compile(r"<!-- benchmark:(\w+) -->.*?<!-- /benchmark:\1 -->", re.S)


def marked_names(text: str) -> list[str]:
    return [match.group(1) for match in BLOCK.finditer(text)]


def run(name: str) -> str:
    script = ROOT / "benchmarks" / f"{name}.py"
    if not script.is_file():
        raise SystemExit(f"README.md marks a block for benchmarks/{name}.py, which does not exist")
    print(f"running benchmarks/{name}.py ...", file=sys.stderr, flush=True)
    result = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"benchmarks/{name}.py failed:\n{result.stderr[-2000:]}")
    return result.stdout.rstrip()


def block(name: str, output: str) -> str:
    machine = f"{os.cpu_count()} CPU cores ({platform.machine()}), {datetime.date.today().isoformat()}"
    return (f"<!-- benchmark:{name} -->\n`python benchmarks/{name}.py` on {machine}:\n\n"
            f"```\n{output}\n```\n<!-- /benchmark:{name} -->")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="benchmark scripts to run (default: every block README marks)")
    args = parser.parse_args()
    text = README.read_text(encoding="utf-8")
    names = args.names or marked_names(text)
    missing = sorted(set(names) - set(marked_names(text)))
    if missing:
        raise SystemExit(f"README.md has no block for {', '.join(missing)}; add "
                         f"<!-- benchmark:NAME --> <!-- /benchmark:NAME --> where its table should go")
    for name in names:
        output = run(name)
        text = README.read_text(encoding="utf-8")  # re-read: nothing else is lost if a later script fails
        text = re.sub(rf"<!-- benchmark:{name} -->.*?<!-- /benchmark:{name} -->", lambda _: block(name, output),
                      text, flags=re.S)
        README.write_text(text, encoding="utf-8")
        print(f"README.md: {name} updated", file=sys.stderr)


if __name__ == "__main__":
    main()
