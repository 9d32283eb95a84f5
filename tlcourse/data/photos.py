"""The real photos shipped inside the package (quick profile), and how they were made.

``tlcourse/data/shipped/`` holds two small subsets of published photo sets, as class folders that
:func:`tlcourse.data.from_folder` reads like any learner's folder:

- ``flowers/``: 100 photos of each of the 5 classes of TensorFlow's ``flower_photos``
  (``tf_flowers``; Flickr photos, CC BY 2.0), each scaled to 160 px on its shorter side, cut to the
  centre square and saved as a JPEG of quality 85; ``flowers/LICENSE.txt`` credits every photo's author.
- ``eurosat/``: 100 Sentinel-2 patches (64 x 64) of each of the 10 land-use classes of EuroSAT RGB
  (MIT), saved again as JPEG of quality 90; ``eurosat/LICENSE.txt`` is the set's MIT notice.

Which photos: in each class, the 100 whose file names hash lowest (SHA-256), from the 200 per class
of the course's source folders. ``python -m tlcourse.data.photos SOURCE`` rebuilds both from a
folder holding ``tf_flowers/`` and ``eurosat_rgb/`` in class folders, with the same result.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

SHIPPED = Path(__file__).parent / "shipped"
PER_CLASS = 100
# shipped name -> (source folder, stored size, JPEG quality)
SETS = {"flowers": ("tf_flowers", 160, 85), "eurosat": ("eurosat_rgb", 64, 90)}


def folder(name: str) -> Path:
    """Where a shipped set lives: a folder of class sub-folders."""
    if name not in SETS:
        raise KeyError(f"no shipped photo set {name!r}; shipped: {', '.join(SETS)}")
    return SHIPPED / name


def chosen(files: list[str], count: int = PER_CLASS) -> list[str]:
    """The ``count`` file names of a class that are shipped: those whose names hash lowest."""
    from tlcourse.data.folder import lowest_hashes

    return lowest_hashes(files, count)


def rebuild(source: Path, target: Path = SHIPPED) -> None:
    """Write both shipped sets from ``source`` (holding ``tf_flowers/`` and ``eurosat_rgb/``)."""
    from PIL import Image

    from tlcourse.data.images import decode

    for name, (source_name, size, quality) in SETS.items():
        origin, out = Path(source) / source_name, Path(target) / name
        if out.exists():
            shutil.rmtree(out)
        kept = []
        for class_dir in sorted(p for p in origin.iterdir() if p.is_dir()):
            (out / class_dir.name).mkdir(parents=True)
            for filename in chosen([p.name for p in class_dir.iterdir() if p.suffix.lower() == ".jpg"]):
                pixels = decode(class_dir / filename, size)
                Image.fromarray(pixels).save(out / class_dir.name / filename, "JPEG", quality=quality, optimize=True)
                kept.append(f"{class_dir.name}/{filename}")
        _write_licence(origin / "LICENSE.txt", out / "LICENSE.txt", kept, name)


def _write_licence(source: Path, target: Path, kept: list[str], name: str) -> None:
    lines = source.read_text(encoding="utf-8").splitlines()
    if name == "eurosat":
        target.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return
    credits = {line.split(" ", 1)[0]: line for line in lines if line.split(" ", 1)[0].endswith(".jpg")}
    missing = [f for f in kept if f not in credits]
    if missing:
        raise ValueError(f"{source} has no credit line for {', '.join(missing[:5])}")
    header = [line for line in lines if not line.split(" ", 1)[0].endswith(".jpg")]
    while header and not header[-1].strip():
        header.pop()
    note = ("Shipped with tlcourse: each photo below scaled to 160 px on its shorter side, cut to the centre "
            "square and saved again as JPEG (quality 85); the credits are those of the published photos.")
    target.write_text("\n".join([*header, note, "", *(credits[f] for f in kept)]) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Rebuild the photo sets shipped in tlcourse/data/shipped/.")
    parser.add_argument("source", type=Path, help="folder holding tf_flowers/ and eurosat_rgb/ in class folders")
    args = parser.parse_args(argv)
    rebuild(args.source)
    for name in SETS:
        files = [p for p in folder(name).rglob("*") if p.is_file()]
        print(f"{name}: {len(files)} files, {sum(p.stat().st_size for p in files) / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
