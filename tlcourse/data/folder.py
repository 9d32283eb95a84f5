"""A folder of your own photos in, the course's :class:`Dataset` out: :func:`from_folder`.

Two layouts, the ones ``torchvision.datasets.ImageFolder`` and
``keras.utils.image_dataset_from_directory`` read:

``path/<class>/<image>``
    one sub-folder per class; the images are divided into train/val/test (60/20/20 unless
    ``fractions`` says otherwise), class by class. Each file's place follows from a hash of its
    name, so the split is the same on every machine and in every run, and adding a photo moves
    at most two other photos of its class (one across each split boundary).
``path/train/<class>/<image>``, ``path/val/...``, ``path/test/...``
    the folder's own splits, used as they are (``valid`` and ``validation`` also name the
    validation split). With no ``test/``, the ``val/`` images are halved into val and test; with
    no ``val/``, validation is carved from ``train/`` (a quarter of it at the default fractions);
    with neither, ``train/`` is split as in the first layout.

Classes are the class folders' names in sorted order and labels count from 0 in that order:
the numbering ``ImageFolder`` and ``image_dataset_from_directory`` give the same folder. Images
inside sub-folders of a class folder belong to that class. Every image goes through
:func:`tlcourse.data.images.decode` (EXIF orientation, RGB, shorter side to ``size``, centre crop).

Ignored without a word: files whose name does not end in an image suffix (a README, a
``LICENSE.txt``), hidden files and folders, ``__MACOSX``, ``.ipynb_checkpoints``, ``Thumbs.db``,
``desktop.ini`` and ``.DS_Store``. Anything else that is wrong stops the load with a
:class:`FolderError` that names the files and the fix; ``on_error="skip"`` instead leaves the bad
files (and classes left with no images) out, with one warning listing them. Photos Pillow reads
only with a plugin (HEIC from iPhones) are reported with the fix, not skipped.

The decoded arrays are cached under ``TLCOURSE_HOME/folders``, keyed by every file's path, size and
modification time and by the options; the second load of an unchanged folder reads one file.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tlcourse.config import home
from tlcourse.config import profile as active_profile
from tlcourse.data import images as image_files
from tlcourse.data.card import Card, Dataset, Split

SPLITS = ("train", "val", "test")
SPLIT_FOLDERS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
IGNORED_NAMES = {"__macosx", ".ipynb_checkpoints", "thumbs.db", "desktop.ini", ".ds_store"}
DEFAULT_FRACTIONS = (0.6, 0.2, 0.2)
MEMORY_SHARE = 0.25  # refuse to decode a folder that would take more than this share of the RAM
CGROUP_LIMITS = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")  # v2, v1
CACHE_FORMAT = 2  # bump when what a cached file holds changes
LISTED = 12  # problems named in one message; the rest are counted


class FolderError(ValueError):
    """The folder cannot be loaded as it is; the message names the files and what to do."""


class FolderWarning(UserWarning):
    """The folder loaded, but something in it deserves a look: files ``on_error="skip"`` left out,
    or a class with no image in one of the splits. The message lists them."""


@dataclass(frozen=True)
class Problem:
    path: str  # relative to the folder
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass
class Scan:
    """What is in a folder, before any pixel is decoded."""

    root: Path
    layout: str  # "classes" or "splits"
    classes: tuple[str, ...]
    files: dict[str, list[tuple[str, int]]]  # folder split ("all" or train/val/test) -> (path, label)
    problems: list[Problem] = field(default_factory=list)

    @property
    def count(self) -> int:
        return sum(len(v) for v in self.files.values())


@dataclass
class Decoded:
    """A decoded folder: what :func:`from_folder` wraps into a Dataset (and the cache stores)."""

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    splits: dict[str, np.ndarray]
    files: tuple[str, ...]
    problems: list[Problem]
    notes: list[str]
    cautions: list[str]  # worth a warning, not an error: a class missing from a split, copied files


# --------------------------------------------------------------------------- the public call


def from_folder(
    path,
    size: int = 128,
    *,
    per_class: int | None = None,
    fractions=DEFAULT_FRACTIONS,
    on_error: str = "raise",
    name: str | None = None,
    cache: bool = True,
    progress: bool = True,
) -> Dataset:
    """Load a folder of class sub-folders as a :class:`Dataset` (train/val/test, uint8 NHWC).

    ``size``: every image becomes ``size`` x ``size`` (shorter side scaled to ``size``, centre
    crop). ``per_class``: read at most this many images of each class (in each split folder, for
    the train/val/test layout), always the same ones, *before* splitting; use it, or a smaller
    ``size``, for folders too large for memory. (``data.load(name, per_class=n)`` means something
    else: it keeps ``n`` training images per class and val and test whole.) ``fractions``:
    train/val/test shares where the folder has no splits of its own. ``on_error``: ``"raise"``
    (default) stops on a damaged folder and lists every problem; ``"skip"`` loads the rest and
    warns once with what it left out. A folder that loads but deserves a look (a class with no
    image in val or test, the same file in two splits) loads with a :class:`FolderWarning`.
    ``name``: the dataset's name on its card (default: the folder's name). ``cache``: keep the
    decoded arrays under ``TLCOURSE_HOME/folders`` and reuse them while no file changes.
    ``progress``: a progress bar while decoding.

    ``ds.extra["files"]`` maps each split to the image paths (relative to the folder) in the order
    of its images and labels; ``ds.extra["skipped"]`` lists what ``on_error="skip"`` left out.
    """
    root = Path(path).expanduser()
    decoded = read_folder(root, size, per_class=per_class, fractions=fractions, on_error=on_error,
                          cache=cache, progress=progress)
    parts = {s: slice(int(idx[0]), int(idx[-1]) + 1) for s, idx in decoded.splits.items()}  # contiguous
    splits = [Split(decoded.images[parts[s]], decoded.labels[parts[s]]) for s in SPLITS]
    files = {s: decoded.files[parts[s]] for s in SPLITS}
    total = len(decoded.labels)
    card = Card(
        name=name or root.resolve().name,
        task="classification",
        classes=decoded.classes,
        licence="as its owner states (a folder of your own)",
        source=str(root.resolve()),
        size=f"{total:,} images, {size}x{size} RGB, {len(decoded.classes)} classes",
        profile=active_profile(),
        description=" ".join(["Loaded with tlcourse.data.from_folder.", *decoded.notes]),
    )
    return Dataset(*splits, classes=decoded.classes, card=card,
                   extra={"files": files, "skipped": [str(p) for p in decoded.problems]})


def read_folder(root: Path, size: int, *, per_class=None, fractions=DEFAULT_FRACTIONS, on_error="raise",
                cache=True, progress=True) -> Decoded:
    """The arrays behind :func:`from_folder` (also what the embedded photo sets load with)."""
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', not {on_error!r}")
    if int(size) != size or size < 8:
        raise ValueError(f"size must be a whole number of pixels, at least 8; got {size!r}")
    if per_class is not None and per_class < 1:
        raise ValueError(f"per_class must be at least 1, got {per_class}")
    fractions = _check_fractions(fractions)
    size = int(size)
    found = scan(root, per_class=per_class)
    check_memory(found.count, size, root, len(found.classes))

    key = _cache_key(found, size, per_class, fractions)
    path = _cache_path(root, key) if cache else None
    decoded = _read_cache(path, key) if path is not None else None
    if decoded is None:
        decoded = _decode(found, size, fractions, progress)
        if path is not None:
            _write_cache(path, key, decoded)
    if decoded.problems:
        if on_error == "raise":
            raise FolderError(_problems_message(root, decoded.problems))
        warnings.warn(_skipped_message(root, decoded.problems), FolderWarning, stacklevel=3)
    if decoded.cautions:
        warnings.warn(f"{root}: " + "; ".join(decoded.cautions), FolderWarning, stacklevel=3)
    return decoded


# --------------------------------------------------------------------------- what is in the folder


def scan(root: Path, per_class: int | None = None) -> Scan:
    """Classes, files and structural problems of ``root``; raises FolderError where no layout fits."""
    root = Path(root).expanduser()
    if not root.exists():
        raise FolderError(f"{root} does not exist; give the path of a folder that holds one sub-folder per class")
    if not root.is_dir():
        raise FolderError(f"{root} is a file, not a folder; give the folder that holds one sub-folder per class")
    folders, loose = _entries(root)
    if loose:
        raise FolderError(
            f"{root} holds {len(loose)} image(s) directly inside it ({_some(loose)}); the class of an image is the "
            f"name of the sub-folder it is in, so move each image into a sub-folder named after its class "
            f"({root}/<class>/<image>)"
        )
    if not folders:
        raise FolderError(
            f"{root} holds no class folders; put the images of each class in a sub-folder named after the class "
            f"({root}/<class>/<image>), or give the folder that holds those sub-folders"
        )
    split_named = [f for f in folders if f.name.lower() in SPLIT_FOLDERS]
    if split_named and len(split_named) < len(folders):
        others = sorted(f.name for f in folders if f not in split_named)
        raise FolderError(
            f"{root} mixes split folders ({', '.join(sorted(f.name for f in split_named))}) with class folders "
            f"({', '.join(others)}); use either <class>/ folders or train/<class>/ and val/<class>/ folders "
            f"(the names {', '.join(sorted(SPLIT_FOLDERS))} are kept for splits: rename a class that has one)"
        )
    if split_named:
        return _scan_splits(root, split_named, per_class)
    classes, files, problems = _classes_of(root, folders, per_class, prefix="")
    found = Scan(root, "classes", classes, {"all": files}, problems)
    _check_class_count(found)
    return found


def _scan_splits(root: Path, folders: list[Path], per_class) -> Scan:
    by_split: dict[str, Path] = {}
    for folder in folders:
        which = SPLIT_FOLDERS[folder.name.lower()]
        if which in by_split:
            raise FolderError(
                f"{root} has two folders for the {which} split: {by_split[which].name}/ and {folder.name}/; keep one"
            )
        by_split[which] = folder
    if "train" not in by_split:
        raise FolderError(
            f"{root} has {', '.join(f.name + '/' for f in by_split.values())} but no train/ folder; add train/<class>/ "
            "folders, or put the class folders directly in the folder and let from_folder split them"
        )
    train_dirs, loose = _entries(by_split["train"])
    if loose:
        raise FolderError(f"{by_split['train']} holds images directly inside it ({_some(loose)}); move each into "
                          f"{by_split['train'].name}/<class>/")
    classes, train_files, problems = _classes_of(root, train_dirs, per_class, prefix=by_split["train"].name + "/")
    files = {"train": train_files}
    for which in ("val", "test"):
        if which not in by_split:
            continue
        class_dirs, loose = _entries(by_split[which])
        if loose:
            raise FolderError(
                f"{by_split[which]} holds images directly inside it ({_some(loose)}); move each into "
                f"{by_split[which].name}/<class>/, or, if they are unlabelled (a competition's test set), move "
                f"{by_split[which].name}/ out of {root}"
            )
        train_names = {d.name for d in train_dirs}
        unknown = sorted(d.name for d in class_dirs if d.name not in train_names)
        if unknown:
            by_case = {n.lower(): n for n in train_names}
            named = [f"{n} (train/ has {by_case[n.lower()]}: names are case-sensitive)" if n.lower() in by_case
                     else n for n in unknown]
            raise FolderError(
                f"{by_split[which]} has class folders that train/ lacks: {', '.join(named)}; a class needs training "
                "images, so add them to train/ (or rename or remove these folders)"
            )
        label_of = {c: k for k, c in enumerate(classes)}
        files[which] = []
        for folder in class_dirs:
            listed = _images_in(folder, root, per_class)
            if folder.name not in label_of:  # its train/ folder is empty
                if listed:
                    problems.append(Problem(f"{folder.relative_to(root).as_posix()}/",
                                            f"{len(listed)} image(s) left out: train/ has none of this class"))
                continue
            files[which] += [(f, label_of[folder.name]) for f in listed]
    found = Scan(root, "splits", classes, files, problems)
    _check_class_count(found)
    return found


def _classes_of(root: Path, folders: list[Path], per_class, prefix: str):
    """Class names (sorted), (path, label) pairs and the problem of each class folder without images."""
    problems, files, classes = [], [], []
    for folder in sorted(folders, key=lambda f: f.name):
        listed = _images_in(folder, root, per_class)
        if not listed:
            problems.append(Problem(prefix + folder.name + "/", "class folder holds no images"))
            continue
        files += [(f, len(classes)) for f in listed]
        classes.append(folder.name)
    return tuple(classes), files, problems


def _check_class_count(found: Scan) -> None:
    if len(found.classes) >= 2:
        return
    empty = f" ({len(found.problems)} class folder(s) hold no images: {', '.join(p.path for p in found.problems)})"
    if not found.classes:
        raise FolderError(f"{found.root}: no class folder holds images{empty if found.problems else ''}; put each "
                          "class's images in its own sub-folder")
    only = found.classes[0]
    inner = found.root / ("train" if found.layout == "splits" else "") / only
    wrapper = [d.name for d in inner.iterdir() if d.is_dir() and not is_ignored(d.name)] if inner.is_dir() else []
    hint = (f"; if {only}/ is the folder that holds your class folders (an unzipped archive often adds one), "
            f"give {inner} instead" if len(wrapper) >= 2 else "")
    raise FolderError(
        f"{found.root} holds a single class with images ({only}){empty if found.problems else ''}{hint}; a "
        "classifier needs at least two classes, so add a folder of images for each other class"
    )


def _entries(folder: Path) -> tuple[list[Path], list[Path]]:
    """Visible sub-folders and image files of ``folder``, junk left out."""
    folders, loose = [], []
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if is_ignored(entry.name):
            continue
        if entry.is_dir():
            folders.append(entry)
        elif image_files.is_image_name(entry.name):
            loose.append(entry)
    return folders, loose


def _images_in(folder: Path, root: Path, per_class: int | None) -> list[str]:
    """Image paths under ``folder`` (any depth), relative to ``root``, sorted; ``per_class`` of them."""
    found = []
    for here, filenames in walk(folder):
        found += [(here / f).relative_to(root).as_posix() for f in filenames
                  if not is_ignored(f) and image_files.is_image_name(f)]
    return lowest_hashes(found, per_class)


def lowest_hashes(names: list[str], count: int | None) -> list[str]:
    """The ``count`` names whose SHA-256 is lowest, sorted: a pick the same on every machine."""
    if count is not None and len(names) > count:
        names = sorted(names, key=_hash_rank)[:count]
    return sorted(names)


def walk(folder: Path):
    """``(folder, file names)`` for ``folder`` and every visible folder below it, linked ones
    included (as ImageFolder follows them), each real folder once, so a link that points back up
    adds nothing twice."""
    seen: set[str] = set()
    start = os.path.realpath(folder)
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen or start.startswith(real + os.sep):  # visited, or a link up to an ancestor
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not is_ignored(d))
        yield Path(dirpath), filenames


def is_ignored(name: str) -> bool:
    return name.startswith(".") or name.lower() in IGNORED_NAMES


def _hash_rank(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


# --------------------------------------------------------------------------- decoding and splits


def decode_all(root: Path, paths: list[str], size: int, progress: bool = True):
    """Decode ``paths`` (relative to ``root``) in parallel.

    Returns the image array, the problem of each bad file (by index; its slot stays black and the
    caller leaves it out) and a digest of each good file's bytes, to find copies.
    """
    from tqdm.auto import tqdm

    out = np.zeros((len(paths), size, size, 3), np.uint8)
    problems: dict[int, Problem] = {}
    digests: dict[int, bytes] = {}

    def work(index: int) -> None:
        try:
            out[index] = image_files.decode(root / paths[index], size)
            digests[index] = file_digest(root / paths[index])
        except image_files.ImageProblem as problem:
            problems[index] = Problem(paths[index], str(problem))

    bar = tqdm(total=len(paths), desc=f"decoding {root.name}", unit="img", disable=not progress, leave=False)
    try:
        with ThreadPoolExecutor(max_workers=worker_count()) as pool:
            for _ in pool.map(work, range(len(paths))):
                bar.update()
    finally:
        bar.close()
    return out, problems, digests


def file_digest(path: Path) -> bytes:
    return hashlib.blake2b(path.read_bytes(), digest_size=16).digest()


def worker_count() -> int:
    """Decoding threads: one per core this process may use (Pillow releases the GIL while decoding)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(8, cores))


def _decode(found: Scan, size: int, fractions, progress: bool) -> Decoded:
    entries = [(split, path, label) for split, pairs in found.files.items() for path, label in pairs]
    paths = [path for _, path, _ in entries]
    pixels, bad, digests = decode_all(found.root, paths, size, progress)
    good = [i for i in range(len(entries)) if i not in bad]
    problems = list(found.problems) + [bad[i] for i in sorted(bad)]

    # Classes left without a single readable image are dropped and the labels renumbered.
    counts = Counter(entries[i][2] for i in good)
    kept = [k for k in range(len(found.classes)) if counts[k]]
    for k in range(len(found.classes)):
        if not counts[k] and any(label == k for _, _, label in entries):
            problems.append(Problem(_class_folder(found, k), "class left with no readable image"))
    classes = tuple(found.classes[k] for k in kept)
    if len(classes) < 2:
        raise FolderError(_problems_message(found.root, problems) + "; fewer than two classes have readable images")
    relabel = {k: i for i, k in enumerate(kept)}

    labels = np.array([relabel[entries[i][2]] for i in good], np.int64)
    files = tuple(entries[i][1] for i in good)
    origin = np.array([entries[i][0] for i in good])
    splits, notes = assign_splits(found.layout, origin, labels, files, fractions)
    for which in SPLITS:
        if len(splits[which]) == 0:
            raise FolderError(
                f"{found.root}: {len(labels)} readable images are too few to give every split (train, val, test) at "
                f"least one; add images, or give the folder its own train/ val/ test/ sub-folders"
            )
    cautions = missing_from_splits(classes, labels, splits)
    cautions += copies(files, [digests[i] for i in good], splits, labels)
    # Stored split after split, so that each split is a slice (a view, not a copy) of one array.
    order = np.concatenate([splits[s] for s in SPLITS])
    ends = np.cumsum([len(splits[s]) for s in SPLITS])
    ranges = {s: np.arange(end - len(splits[s]), end) for s, end in zip(SPLITS, ends)}
    images = pixels[np.asarray(good, np.int64)[order]]
    return Decoded(images, labels[order], classes, ranges, tuple(files[i] for i in order), problems, notes, cautions)


def missing_from_splits(classes, labels: np.ndarray, splits: dict) -> list[str]:
    """A sentence for each split that lacks a class: "roses has no val images"."""
    lines = []
    for which in SPLITS:
        present = set(labels[splits[which]].tolist())
        absent = [classes[k] for k in range(len(classes)) if k not in present]
        if absent:
            lines.append(f"{', '.join(absent)} {'has' if len(absent) == 1 else 'have'} no {which} images, so the "
                         f"{which} score says nothing about {'it' if len(absent) == 1 else 'them'}")
    return lines


def copies(files, digests, splits: dict, labels: np.ndarray) -> list[str]:
    """A sentence for files whose bytes are identical across splits (a test photo also trained on)
    or across classes (one photo, two labels)."""
    split_of = np.empty(len(files), object)
    for which, idx in splits.items():
        split_of[idx] = which
    groups: dict[bytes, list[int]] = {}
    for i, digest in enumerate(digests):
        groups.setdefault(digest, []).append(i)
    lines = []
    for what, key in (("split", lambda i: split_of[i]), ("class", lambda i: int(labels[i]))):
        crossing = [g for g in groups.values() if len({key(i) for i in g}) > 1]
        if crossing:
            example = " = ".join(files[i] for i in crossing[0][:2])
            lines.append(f"{len(crossing)} file(s) have an identical copy in another {what} (e.g. {example})"
                         + ("; a photo scored in val or test that training also saw flatters the scores"
                            if what == "split" else "; one photo with two labels"))
    return lines


def _class_folder(found: Scan, label: int) -> str:
    prefix = "" if found.layout == "classes" else "train/"
    return f"{prefix}{found.classes[label]}/"


def assign_splits(layout, origin, labels, files, fractions):
    """Index arrays of train/val/test and a sentence for each split not taken from the folder."""
    everything = np.arange(len(labels))
    if layout == "classes":
        parts = _cut(everything, labels, files, fractions)
        share = "/".join(f"{round(100 * f)}" for f in fractions)
        note = f"Split {share} into train/val/test, class by class, by a hash of each file's name."
        return dict(zip(SPLITS, parts)), [note]
    present = set(origin.tolist())
    train = everything[origin == "train"]
    notes = []
    if "val" in present and "test" in present:
        splits = {"train": train, "val": everything[origin == "val"], "test": everything[origin == "test"]}
    elif "val" in present:
        held = everything[origin == "val"]
        _, val, test = _cut(held, labels, files, (0.0, 0.5, 0.5))
        splits = {"train": train, "val": val, "test": test}
        notes.append("The folder has no test/ images: its val/ images were halved into val and test.")
    else:
        carve = fractions[1] / (fractions[0] + fractions[1])
        if "test" in present:
            kept, val, _ = _cut(train, labels, files, (1 - carve, carve, 0.0))
            splits = {"train": kept, "val": val, "test": everything[origin == "test"]}
            notes.append(f"The folder has no val/ images: {round(100 * carve)}% of train/ became val.")
        else:
            parts = _cut(train, labels, files, fractions)
            splits = dict(zip(SPLITS, parts))
            share = "/".join(f"{round(100 * f)}" for f in fractions)
            notes.append(f"The folder has images in train/ only: they were split {share} into train/val/test.")
    return {k: _shuffled(v, files) for k, v in splits.items()}, notes


def _cut(indices: np.ndarray, labels: np.ndarray, files, fractions) -> tuple[np.ndarray, ...]:
    """Divide ``indices`` in ``fractions``, class by class, in the order of their files' name hashes."""
    parts: list[list[int]] = [[] for _ in fractions]
    for label in np.unique(labels[indices]):
        members = [int(i) for i in indices if labels[i] == label]
        members.sort(key=lambda i: _hash_rank(Path(files[i]).name))
        cuts = np.cumsum(_shares(len(members), fractions))[:-1]
        for part, chunk in zip(parts, np.split(np.array(members, int), cuts)):
            part += chunk.tolist()
    return tuple(_shuffled(np.array(p, np.int64), files) for p in parts)


def _shares(count: int, fractions) -> np.ndarray:
    """How many of ``count`` images each split gets: every split with a share gets at least one
    where there are enough, the rest by largest remainder (3 images at 60/20/20 give 1/1/1)."""
    wanted = np.asarray(fractions) * count
    shares = np.floor(wanted).astype(int)
    if count >= np.count_nonzero(wanted):
        shares[(wanted > 0) & (shares == 0)] = 1
    while shares.sum() > count:
        shares[np.argmax(shares)] -= 1
    left = wanted - shares
    while shares.sum() < count:
        shares[np.argmax(left)] += 1
        left[np.argmax(left)] = -np.inf
    return shares


def _shuffled(indices: np.ndarray, files) -> np.ndarray:
    """A fixed order with the classes mixed: by a hash of each image's path."""
    return np.array(sorted(indices.tolist(), key=lambda i: _hash_rank(files[i])), np.int64)


def _check_fractions(fractions) -> tuple[float, float, float]:
    values = tuple(float(f) for f in fractions)
    if len(values) != 3 or min(values) <= 0 or not np.isclose(sum(values), 1.0):
        raise ValueError(
            f"fractions must be three shares (train, val, test), each above 0, that sum to 1; got {fractions!r}"
        )
    return values


# --------------------------------------------------------------------------- memory


def memory_budget() -> int:
    """Bytes a folder may take once decoded: a quarter of the memory this process may use.

    That is the machine's physical memory, or less where a container limits it (Binder, Docker,
    a JupyterHub): the cgroup's limit is read where there is one.
    """
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        total = 8 * 2**30
    for limit_file in CGROUP_LIMITS:
        try:
            text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return int(total * MEMORY_SHARE)


def decoded_bytes(count: int, size: int) -> int:
    return count * size * size * 3


def check_memory(count: int, size: int, root: Path, classes: int = 1) -> None:
    need, budget = decoded_bytes(count, size), memory_budget()
    if need <= budget:
        return
    raise FolderError(f"{root}: {memory_advice(count, size, classes)}")


def memory_advice(count: int, size: int, classes: int) -> str:
    """What a folder too large for :func:`memory_budget` would take, and the settings that fit."""
    need, budget = decoded_bytes(count, size), memory_budget()
    fits_size = int((budget / (3 * count)) ** 0.5)
    fits_per_class = budget // (3 * size * size * max(1, classes))
    return (
        f"{count:,} images at {size}x{size} would take {_gib(need)} once decoded, more than the "
        f"{_gib(budget, round_up=False)} allowed (a quarter of the memory this machine gives Python); pass a "
        f"smaller size= (size={fits_size} fits) or per_class= to read fewer images of each class "
        f"(per_class={fits_per_class} fits at size={size})"
    )


def _gib(nbytes: int, round_up: bool = True) -> str:
    hundredths = nbytes * 100 / 2**30
    return f"{(np.ceil(hundredths) if round_up else np.floor(hundredths)) / 100:.2f} GiB"


# --------------------------------------------------------------------------- the cache


def _cache_key(found: Scan, size: int, per_class, fractions) -> dict:
    listing = []
    for split, pairs in found.files.items():
        for path, label in pairs:
            try:
                stat = (found.root / path).stat()
                listing.append((split, path, label, stat.st_size, stat.st_mtime_ns))
            except OSError:
                listing.append((split, path, label, -1, -1))
    digest = hashlib.sha256(json.dumps(listing).encode()).hexdigest()
    return {
        "format": CACHE_FORMAT, "decoder": image_files.DRAFT_MARGIN, "root": str(found.root.resolve()),
        "size": size, "per_class": per_class, "fractions": list(fractions), "classes": list(found.classes),
        "problems": [str(p) for p in found.problems], "files": digest,
    }


def _cache_path(root: Path, key: dict) -> Path:
    options = {k: v for k, v in key.items() if k != "files"}
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in root.resolve().name)[:40] or "folder"
    option_digest = hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()[:12]
    return home() / "folders" / f"{stem}-{option_digest}-{key['files'][:12]}.npz"


def _read_cache(path: Path, key: dict) -> Decoded | None:
    from tlcourse.features import read_keyed_npz

    stored = read_keyed_npz(path, key)  # None when unreadable or stale: decode again and overwrite it
    if stored is None or any(name not in stored for name in (*SPLITS, "images", "cautions")):
        return None
    return Decoded(
        images=stored["images"], labels=stored["labels"], classes=tuple(stored["classes"].tolist()),
        splits={s: stored[s] for s in SPLITS}, files=tuple(stored["files"].tolist()),
        problems=[Problem(*p.split("\0", 1)) for p in stored["problems"].tolist()],
        notes=stored["notes"].tolist(), cautions=stored["cautions"].tolist(),
    )


def _write_cache(path: Path, key: dict, decoded: Decoded) -> None:
    from tlcourse.features import write_npz_atomically

    write_npz_atomically(
        path, key=np.array(json.dumps(key)), images=decoded.images, labels=decoded.labels,
        classes=np.array(decoded.classes, dtype=str), files=np.array(decoded.files, dtype=str),
        problems=np.array([f"{p.path}\0{p.reason}" for p in decoded.problems], dtype=str),
        notes=np.array(decoded.notes, dtype=str), cautions=np.array(decoded.cautions, dtype=str), **decoded.splits,
    )
    # Older entries for the same folder and options describe files that have since changed.
    for stale in path.parent.glob(path.name.rsplit("-", 1)[0] + "-*.npz"):
        if stale != path:
            stale.unlink(missing_ok=True)


# --------------------------------------------------------------------------- messages


def _some(paths: list[Path]) -> str:
    names = [p.name for p in paths[:3]]
    return ", ".join(names) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")


def _listed(problems: list[Problem]) -> str:
    lines = [f"  {p}" for p in problems[:LISTED]]
    if len(problems) > LISTED:
        lines.append(f"  ... and {len(problems) - LISTED} more")
    return "\n".join(lines)


def _problems_message(root: Path, problems: list[Problem]) -> str:
    return (
        f"{root}: {len(problems)} problem(s) (paths relative to the folder):\n{_listed(problems)}\n"
        "Fix: replace or delete these files, remove empty class folders, or pass on_error='skip' to load the rest "
        "(`tlcourse inspect` lists every problem)"
    )


def _skipped_message(root: Path, problems: list[Problem]) -> str:
    return f"{root}: left out {len(problems)} file(s) or class(es) it could not use:\n{_listed(problems)}"
