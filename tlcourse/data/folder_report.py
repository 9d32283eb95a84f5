"""What :func:`tlcourse.data.from_folder` would see in a folder, as a report: ``tlcourse inspect``.

The report opens and decodes every image exactly as ``from_folder`` would (so a file that would
stop the load is listed here), but keeps nothing: it counts classes per split, image sizes, modes
and formats, the files ``from_folder`` ignores, copies of one file, and how much memory the
decoded set would take.
"""
from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tlcourse.data import folder as folders
from tlcourse.data import images as image_files


@dataclass
class FolderReport:
    root: Path
    layout: str
    classes: tuple[str, ...]
    counts: dict[str, dict[str, int]]  # class -> split -> images that decode
    sizes: list[tuple[int, int]]
    modes: Counter
    formats: Counter
    rotated: int  # images whose EXIF orientation turns them
    enlarged: int  # images whose shorter side is below the size asked for
    ignored: dict[str, list[str]]  # suffix -> files from_folder does not read
    problems: list[folders.Problem]  # what stops from_folder
    cautions: list[str]  # what it loads with a warning
    notes: list[str]
    size: int
    decoded_bytes: int
    budget: int  # what from_folder allows: folders.memory_budget()

    @property
    def ok(self) -> bool:
        return not self.problems

    def text(self) -> str:
        total = sum(sum(c.values()) for c in self.counts.values())
        layout = ("one sub-folder per class" if self.layout == "classes"
                  else "train/ val/ test/ sub-folders, each with a sub-folder per class")
        lines = [f"folder   {self.root}", f"layout   {layout}", *[f"         {n}" for n in self.notes],
                 f"classes  {len(self.classes)}, {total:,} images that decode", ""]
        rows = [("class", "train", "val", "test", "total")]
        for name in self.classes:
            per = self.counts.get(name, {})
            rows.append((name, *(str(per.get(s, 0)) for s in folders.SPLITS), str(sum(per.values()))))
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        for row in rows:
            lines.append("  ".join([row[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(row[1:], widths[1:]))]))
        lines.append("")
        if self.sizes:
            w, h = np.array(self.sizes).T
            lines.append(f"sizes    width {w.min()}-{w.max()} px (median {int(np.median(w))}), "
                         f"height {h.min()}-{h.max()} px (median {int(np.median(h))})")
            lines.append("modes    " + ", ".join(f"{m} {n}" for m, n in self.modes.most_common()))
            lines.append("formats  " + ", ".join(f"{f} {n}" for f, n in self.formats.most_common()))
        if self.enlarged:
            lines.append(f"enlarged {self.enlarged} image(s) smaller than {self.size} px on their shorter side are "
                         "scaled up (blurred); a smaller --size keeps them sharp")
        if self.rotated:
            lines.append(f"EXIF     {self.rotated} image(s) stored sideways or flipped; from_folder turns them upright")
        if self.ignored:
            count = sum(len(v) for v in self.ignored.values())
            kinds = ", ".join(f"{suffix or '(no suffix)'} {len(files)} ({', '.join(files[:2])}"
                              f"{', ...' if len(files) > 2 else ''})" for suffix, files in self.ignored.items())
            lines.append(f"ignored  {count} file(s) that are not images by their names: {kinds}")
        fits = "fits" if self.decoded_bytes <= self.budget else "does NOT fit"
        lines.append(f"memory   {self.decoded_bytes / 2**30:.2f} GiB decoded at {self.size}x{self.size} px; {fits} in "
                     f"the {self.budget / 2**30:.2f} GiB from_folder allows (a quarter of the memory Python may use)")
        if self.cautions:
            lines += ["", "warnings (from_folder loads the folder, and warns):"] + [f"  {c}" for c in self.cautions]
        if self.problems:
            lines += ["", f"problems ({len(self.problems)}): from_folder stops on these (on_error='skip' leaves "
                          "damaged files and empty classes out)"]
            lines += [f"  {p}" for p in self.problems]
        else:
            lines += ["", "problems none"]
        return "\n".join(lines)


def inspect_folder(path, size: int = 128, per_class: int | None = None) -> FolderReport:
    """Report on ``path`` as ``from_folder(path, size, per_class=...)`` would load it.

    Raises :class:`FolderError` where no layout fits (the message says why).
    """
    root = Path(path).expanduser()
    found = folders.scan(root, per_class=per_class)
    entries = [(split, p, label) for split, pairs in found.files.items() for p, label in pairs]
    with ThreadPoolExecutor(max_workers=folders.worker_count()) as pool:
        looks = list(pool.map(lambda e: _look(root / e[1], size), entries))

    problems = list(found.problems)
    good = [i for i, look in enumerate(looks) if look["problem"] is None]
    problems += [folders.Problem(entries[i][1], look["problem"]) for i, look in enumerate(looks) if look["problem"]]
    counts: dict[str, dict[str, int]] = {name: {} for name in found.classes}
    notes, cautions = [], []
    if good:
        labels = np.array([entries[i][2] for i in good])
        files = tuple(entries[i][1] for i in good)
        origin = np.array([entries[i][0] for i in good])
        splits, notes = folders.assign_splits(found.layout, origin, labels, files, folders.DEFAULT_FRACTIONS)
        for split, idx in splits.items():
            for label, n in Counter(labels[idx].tolist()).items():
                counts[found.classes[label]][split] = n
        present = sorted(set(labels.tolist()))  # a class with no readable image is a problem, below
        renumbered = np.searchsorted(present, labels)
        cautions = folders.missing_from_splits(tuple(found.classes[k] for k in present), renumbered, splits)
        cautions += folders.copies(files, [looks[i]["digest"] for i in good], splits, labels)
    for name, per in counts.items():
        if not per:
            problems.append(folders.Problem(name + "/", "class left with no readable image"))
    need, budget = folders.decoded_bytes(len(good), size), folders.memory_budget()
    if need > budget:
        problems.append(folders.Problem(".", folders.memory_advice(len(good), size, len(found.classes))))
    return FolderReport(
        root=root, layout=found.layout, classes=found.classes, counts=counts,
        sizes=[looks[i]["dims"] for i in good], modes=Counter(looks[i]["mode"] for i in good),
        formats=Counter(looks[i]["format"] for i in good), rotated=sum(looks[i]["turned"] for i in good),
        enlarged=sum(min(looks[i]["dims"]) < size for i in good), ignored=_ignored_files(root),
        problems=problems, cautions=cautions, notes=notes, size=size, decoded_bytes=need, budget=budget,
    )


def _look(path: Path, size: int) -> dict:
    """Format, mode, size, EXIF turn and digest of one file, or the problem that stops it."""
    try:
        kind, mode, dims, turned = image_files.header(path)
        image_files.decode(path, size)
        return {"format": kind, "mode": mode, "dims": dims, "turned": turned,
                "digest": folders.file_digest(path), "problem": None}
    except image_files.ImageProblem as problem:
        return {"problem": str(problem)}


def _ignored_files(root: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for here, filenames in folders.walk(root):
        for name in sorted(filenames):
            if not folders.is_ignored(name) and not image_files.is_image_name(name):
                found.setdefault(Path(name).suffix.lower(), []).append((here / name).relative_to(root).as_posix())
    return dict(sorted(found.items(), key=lambda item: -len(item[1])))
