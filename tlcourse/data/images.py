"""One image file in, one ``size`` x ``size`` RGB uint8 array out: the decoder behind ``from_folder``.

The policy, the same for every file and every caller:

1. open whatever Pillow reads (JPEG, PNG, GIF, BMP, WebP, TIFF, ...); an animated GIF or a
   multi-page TIFF gives its first frame;
2. turn the picture upright as its EXIF orientation tag says (phones store photos sideways and
   set the tag; ``torchvision``'s and Keras's loaders ignore it);
3. convert to RGB: grey is copied into R, G and B; a palette is looked up; CMYK goes through
   Pillow's conversion; 16-bit grey is divided by 257, other integer or floating-point grey is
   scaled so that its brightest pixel is 255 (or from 0..1, where all values lie in it);
   **transparency is flattened onto white**
   (what an image viewer on a white page shows; dropping the alpha channel, as the frameworks'
   loaders do, would show whatever colour the transparent pixels happen to store);
4. scale the shorter side to ``size`` (bilinear, antialiased), then cut the centre square:
   ``torchvision.transforms.Resize(size)`` followed by ``CenterCrop(size)``, and the crop that
   ``keras.utils.image_dataset_from_directory(image_size=(size, size), crop_to_aspect_ratio=True)``
   makes.

JPEGs are decoded in Pillow's draft mode: the decoder itself scales by 1/2, 1/4 or 1/8, which is
much faster than decoding every pixel. The draft is asked for at least twice the final size, so
step 4 still does the last reduction with its own filter. Measured on 50 flower photos enlarged to
2000 x 1500 px (where the draft does shrink them), at 96 to 224 px: 0.13 to 0.20 grey levels from a
full decode on average, 3 at most; a draft of the final size itself differs by 0.35 to 1.8 on
average and by up to 44 at sharp edges. Photos of ~500 px are rarely drafted at these sizes.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

# What from_folder treats as an image; every other file is ignored. Pillow reads all of these but
# HEIC/HEIF (iPhone photos), which need the pillow-heif plugin: without it they are reported, not
# skipped, so that a class of iPhone photos does not vanish without a word.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".apng", ".gif", ".bmp", ".dib", ".webp", ".tif",
                  ".tiff", ".avif", ".mpo", ".jp2", ".qoi", ".tga", ".ppm", ".pgm", ".pnm", ".heic", ".heif")
HEIF_SUFFIXES = (".heic", ".heif")
DRAFT_MARGIN = 2  # the draft keeps at least this many times the final size
BACKGROUND = (255, 255, 255)  # transparency is flattened onto white
EXIF_ORIENTATION = 0x0112


class ImageProblem(Exception):
    """A file that cannot be decoded; the message says what is wrong with it, in a few words."""


def is_image_name(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_SUFFIXES


def decode(path: str | Path, size: int) -> np.ndarray:
    """The image at ``path`` as a ``(size, size, 3)`` uint8 array (see the module's policy).

    Raises :class:`ImageProblem` for an empty, unreadable, truncated or corrupt file, or one that
    is not an image at all.
    """
    from PIL import Image, ImageOps

    with _opened(path) as picture:
        if picture.format in ("JPEG", "MPO"):
            _ask_for_draft(picture, size)
        try:
            picture.load()
            rgb = to_rgb(ImageOps.exif_transpose(picture))
        except Image.DecompressionBombError as error:
            raise ImageProblem(f"too large to decode safely ({error}); shrink the photo") from None
        except (OSError, ValueError, SyntaxError) as error:
            raise ImageProblem(_damage(error)) from None
    return np.asarray(ImageOps.fit(rgb, (size, size), Image.Resampling.BILINEAR), dtype=np.uint8)


def header(path: str | Path) -> tuple[str, str, tuple[int, int], bool]:
    """``(format, mode, (width, height), turned)`` as stored, read without decoding the pixels.

    ``turned``: the EXIF orientation tag asks for the picture to be rotated or flipped.
    """
    with _opened(path) as picture:
        try:
            orientation = picture.getexif().get(EXIF_ORIENTATION, 1)
        except Exception:  # noqa: BLE001 -- a broken EXIF block is not worth failing a report for
            orientation = 1
        return picture.format or "?", picture.mode, picture.size, orientation not in (0, 1)


def to_rgb(picture):
    """A Pillow image of any mode as RGB, transparency flattened onto :data:`BACKGROUND`."""
    from PIL import Image

    mode = picture.mode
    if mode == "RGB":
        return picture
    if mode.startswith("I;16") or mode in ("I", "F"):
        values = np.asarray(picture, dtype=np.float64)
        brightest = values.max(initial=0)
        if mode.startswith("I;16"):
            scale = 1 / 257
        elif mode == "F" and brightest <= 1.0:
            scale = 255.0  # a float image in 0..1
        else:
            scale = 255.0 / brightest if brightest > 255 else 1.0
        grey = np.clip(np.round(values * scale), 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in picture.info
    if has_alpha:
        rgba = picture.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return picture.convert("RGB")


class _opened:
    """``Image.open`` whose failures become :class:`ImageProblem` with a plain reason."""

    def __init__(self, path):
        self.path = Path(path)
        self.picture = None

    def __enter__(self):
        from PIL import Image, UnidentifiedImageError

        try:
            if self.path.stat().st_size == 0:
                raise ImageProblem("empty file (0 bytes)")
            self.picture = Image.open(self.path)
        except ImageProblem:
            raise
        except Image.DecompressionBombError as error:
            raise ImageProblem(f"too large to decode safely ({error}); shrink the photo") from None
        except UnidentifiedImageError:
            if self.path.suffix.lower() in HEIF_SUFFIXES or _looks_like_heif(self.path):
                raise ImageProblem(
                    "a HEIC/HEIF photo (the iPhone's format), which Pillow reads only with a plugin: convert it "
                    "to JPEG, or `pip install pillow-heif` and run `import pillow_heif; "
                    "pillow_heif.register_heif_opener()` first"
                ) from None
            raise ImageProblem("not an image Pillow can read (the name says image, the bytes do not)") from None
        except PermissionError:
            raise ImageProblem("cannot be read: permission denied") from None
        except OSError as error:
            raise ImageProblem(f"cannot be read: {error.strerror or error}") from None
        except (ValueError, SyntaxError) as error:
            raise ImageProblem(_damage(error)) from None
        return self.picture

    def __exit__(self, *exc):
        if self.picture is not None:
            self.picture.close()
        return False


def _looks_like_heif(path: Path) -> bool:
    with open(path, "rb") as stream:
        head = stream.read(12)
    return head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"mif1", b"msf1", b"heim", b"heis")


def _ask_for_draft(picture, size: int) -> None:
    width, height = picture.size
    scale = DRAFT_MARGIN * size / min(width, height)
    if scale < 1:
        picture.draft("RGB", (int(width * scale) + 1, int(height * scale) + 1))


def _damage(error: Exception) -> str:
    text = str(error).strip() or type(error).__name__
    if "truncated" in text.lower():
        return f"truncated or damaged ({text})"
    return f"damaged: {text}"
