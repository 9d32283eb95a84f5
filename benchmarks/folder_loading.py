"""How fast does from_folder load a folder of photos? Decode rate on the first load, reload from the cache.

Without ``--folder`` the script writes two folders of its own from the 500 shipped flower photos,
enlarged and saved as JPEG (quality 90): 1,000 photos of 500 x 375 px (each flower twice, under
two names; the size of photos on the web) and 250 of 2,000 x 1,500 px (a phone camera's).
Then, for each folder and size, in one run, after one untimed pass that brings the files into
the operating system's cache:

- the first load, which decodes every photo (JPEG draft mode, one thread per core), in images/s
  (the best of two runs);
- the same decode with draft mode off (every pixel decoded) and with one thread, for the ratios;
- the second load, which reads the decoded arrays back from the cache, in seconds.

Draft mode halves a photo only while it keeps at least twice the size asked for, so on 500 x 375
photos it changes nothing at these sizes (the table shows "-" there); on phone photos it is most
of the speed.

Usage: python benchmarks/folder_loading.py [--folder PATH] [--sizes 96 128 224]
"""
from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

from tlcourse.data import folder as folders
from tlcourse.data import images as image_files
from tlcourse.data import photos


def sample_folder(root: Path, dims: tuple[int, int], copies: int, every: int = 1) -> Path:
    from PIL import Image

    for class_dir in sorted(p for p in photos.folder("flowers").iterdir() if p.is_dir()):
        (root / class_dir.name).mkdir(parents=True)
        for source in sorted(class_dir.glob("*.jpg"))[::every]:
            with Image.open(source) as opened:
                large = opened.convert("RGB").resize(dims, Image.Resampling.BICUBIC)
            for copy in range(copies):
                large.save(root / class_dir.name / f"{source.stem}_{copy}.jpg", "JPEG", quality=90)
    return root


def first_load(root: Path, size: int, repeats: int = 2) -> float:
    """Images/s of an uncached load, the best of ``repeats`` (a shared machine's noise only slows)."""
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        decoded = folders.read_folder(root, size, cache=False, progress=False)
        best = max(best, len(decoded.labels) / (time.perf_counter() - start))
    return best


def drafts(root: Path, size: int) -> bool:
    """Whether Pillow's draft mode shrinks any of the folder's first photos at this size."""
    found = folders.scan(root)
    paths = [root / path for pairs in found.files.values() for path, _ in pairs][:20]
    # The decoder asks for DRAFT_MARGIN x size; Pillow halves only while the result stays that large.
    return any(min(image_files.header(p)[2]) >= 2 * image_files.DRAFT_MARGIN * size for p in paths)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, help="a from_folder layout (default: 1,000 photos made here)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[96, 128, 224])
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        os.environ["TLCOURSE_HOME"] = str(Path(scratch) / "cache")  # an empty cache of its own
        if args.folder:
            folders_to_time = {args.folder.name: args.folder}
        else:
            folders_to_time = {"500x375 JPEGs": sample_folder(Path(scratch) / "web", (500, 375), copies=2),
                               "2000x1500 JPEGs": sample_folder(Path(scratch) / "phone", (2000, 1500), 1, every=2)}
        print(f"{platform.machine()}, {folders.worker_count()} decoding threads")
        header = (f"{'folder':16s} {'photos':>6s} {'size':>4s} {'img/s':>6s} {'no draft':>8s} {'1 thread':>8s} "
                  f"{'draft gain':>10s} {'thread gain':>11s} {'reload s':>8s}")
        print(header)
        print("-" * len(header))
        for label, root in folders_to_time.items():
            count = folders.scan(root).count
            first_load(root, args.sizes[0], repeats=1)  # untimed: the files into the operating system's cache
            for size in args.sizes:
                draft = first_load(root, size)
                if drafts(root, size):
                    margin, image_files.DRAFT_MARGIN = image_files.DRAFT_MARGIN, 10**6  # never draft
                    whole = first_load(root, size)
                    image_files.DRAFT_MARGIN = margin
                else:
                    whole = None  # the same code would run twice: the ratio would show only noise
                threads, folders.worker_count = folders.worker_count, lambda: 1
                single = first_load(root, size)
                folders.worker_count = threads
                folders.read_folder(root, size, progress=False)  # fills the cache
                start = time.perf_counter()
                folders.read_folder(root, size, progress=False)
                reload = time.perf_counter() - start
                whole_cell = f"{whole:8.0f}" if whole else f"{'-':>8s}"
                gain_cell = f"{draft / whole:10.2f}" if whole else f"{'-':>10s}"
                print(f"{label:16s} {count:6d} {size:4d} {draft:6.0f} {whole_cell} {single:8.0f} {gain_cell} "
                      f"{draft / single:11.2f} {reload:8.2f}", flush=True)
        print("img/s: photos decoded per second of wall time on the first load, scan included; reload: seconds "
              "for the second from_folder of an unchanged folder (targets for 1,000 photos of ~500 px: "
              "300 img/s or more, reload 0.5 s or less)")


if __name__ == "__main__":
    main()
