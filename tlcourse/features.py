"""Bottleneck features, the framework-neutral half: the on-disk cache and the classifier heads.

``tlcourse.torch.extract_features`` and ``tlcourse.keras.extract_features`` run a backbone over a
split once and hand back one feature vector per image. Everything they share lives here, in
NumPy and scikit-learn, so neither framework repeats it:

* the **cache**: each result is an ``.npz`` under ``tlcourse.cache_dir("features")``, named by a
  key made of the framework, the backbone, a SHA-256 of the weights that feed the requested layer,
  the layer, the input size and a SHA-256 of the images (their bytes and shape). Change a weight
  or a pixel and the key changes, so stale features are never served;
* the **batch loop** (progress bar, concatenation, shape checks);
* the **heads**: :func:`train_head` fits logistic regression, an SVM, a random forest or a small
  dense network on features, and :func:`compare_heads` scores several of them for a table;
* :func:`save_features` / :func:`load_features`, for the "extract once, train from disk" step.

Importing this module imports neither torch nor TensorFlow (scikit-learn is imported when a head
is first built).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import time
import uuid
import zipfile
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from tlcourse.config import cache_dir

# Bump when what a cached file means changes (preprocessing, pooling), so old entries are ignored.
CACHE_FORMAT = 1
HEAD_KINDS = ("logistic", "svm", "random_forest", "dense")

__all__ = [
    "HEAD_KINDS",
    "cache_folder",
    "clear_cache",
    "compare_heads",
    "load_features",
    "make_head",
    "probe_layers",
    "save_features",
    "train_head",
]


# -- inputs ---------------------------------------------------------------------------------------


def images_of(data) -> np.ndarray:
    """The uint8 NHWC images of a ``Split`` (or anything with ``.images``) or of an array."""
    if hasattr(data, "train") and hasattr(data, "test") and not hasattr(data, "images"):
        raise TypeError("got a whole Dataset; pass one split, e.g. extract_features(model, ds.train)")
    images = data.images if hasattr(data, "images") else data
    if hasattr(images, "numpy") and not isinstance(images, np.ndarray):
        images = images.numpy()
    images = np.asarray(images)
    if images.ndim == 3 and images.shape[-1] not in (3, 4):
        images = images[..., None]  # (N, H, W) grey
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(
            f"expected a non-empty batch of images shaped (N, H, W, C), got shape {images.shape}; "
            "pass a Split (ds.train) or a uint8 array"
        )
    return images


def check_channels(images: np.ndarray, gray_to_rgb: bool) -> None:
    """Fail early, naming the fix, on grey images without ``gray_to_rgb`` or on non-uint8 pixels."""
    from tlcourse.lite0 import check_images

    if images.shape[-1] == 1 and not gray_to_rgb:
        raise ValueError(
            f"got grey images (shape {images.shape}) but the backbone expects RGB; pass gray_to_rgb=True "
            "to extract_features to copy the grey channel into R, G and B"
        )
    check_images(images[:1], gray_to_rgb=gray_to_rgb)


def requested_layers(layer, block_names: Sequence[str]) -> tuple[list[str], bool]:
    """``layer`` as a list of known block names, and whether a single name (not a list) was given."""
    single = isinstance(layer, str)
    if not single and not isinstance(layer, (list, tuple)):
        raise TypeError(
            f"layer must be a block name or a list of them, got {layer!r}; choose from: {', '.join(block_names)}"
        )
    wanted = [layer] if single else list(layer)
    if not wanted:
        raise ValueError(f"no layer requested; choose from: {', '.join(block_names)}")
    for name in wanted:
        if name not in block_names:
            raise ValueError(f"unknown layer {name!r}; this backbone's layers are: {', '.join(block_names)}")
    if len(set(wanted)) != len(wanted):
        raise ValueError(f"layer names repeat in {wanted}")
    return wanted, single


def input_size(size: int | None, default: int | None, images: np.ndarray) -> int:
    """The side the images are resized to: ``size``, else the backbone's own, else the images'."""
    if size is None:
        size = default
    if size is None:
        height, width = images.shape[1:3]
        if height != width:
            raise ValueError(f"images are {height}x{width} and this backbone has no default size; pass size=")
        size = height
    if not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"size must be a positive integer (pixels), got {size!r}")
    return int(size)


# -- fingerprints ---------------------------------------------------------------------------------


def _update_with_array(digest, array: np.ndarray) -> None:
    array = np.ascontiguousarray(array)
    digest.update(f"{array.dtype.str}{array.shape}".encode())
    digest.update(array.reshape(-1).view(np.uint8))


def data_fingerprint(images: np.ndarray) -> str:
    """SHA-256 of the images' dtype, shape and every byte: one changed pixel changes it."""
    digest = hashlib.sha256()
    _update_with_array(digest, images)
    return digest.hexdigest()


def weights_fingerprints(blocks: Iterable[tuple[str, Iterable[np.ndarray]]], stop_after: str) -> dict[str, str]:
    """SHA-256 of the weights feeding each block's output, block by block up to ``stop_after``.

    ``blocks`` yields ``(block name, that block's weight arrays)`` from input to output. A block's
    fingerprint covers it and every block before it (a running hash), since all of them shape its
    output; later blocks do not, so e.g. a new classifier leaves "block4" features cached.
    """
    digest = hashlib.sha256()
    fingerprints = {}
    for name, arrays in blocks:
        digest.update(name.encode())
        for array in arrays:
            _update_with_array(digest, array)
        fingerprints[name] = digest.copy().hexdigest()
        if name == stop_after:
            break
    return fingerprints


# -- the cache --------------------------------------------------------------------------------------


def cache_folder() -> Path:
    """Where cached features live: ``<TLCOURSE_HOME>/features``."""
    return cache_dir("features")


def clear_cache() -> int:
    """Delete every cached feature file; returns how many there were."""
    removed = 0
    for path in cache_folder().glob("*.npz"):
        path.unlink(missing_ok=True)
        removed += 1
    return removed


def _entry_path(key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{key['backbone']}-{key['framework']}-{key['layer']}-{key['size']}px")
    return cache_folder() / f"{readable}-{digest}.npz"


def write_npz_atomically(path: str | Path, **arrays) -> Path:
    """``np.savez`` to a temporary file beside ``path``, then rename it into place.

    The rename is atomic, so a reader (another notebook, a second test worker) sees either the
    old file or the whole new one, never half of it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Our own unique name rather than tempfile's, whose files are private (0600) to their creator.
    partial = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.partial")
    try:
        with open(partial, "xb") as handle:
            np.savez(handle, **arrays)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return path


def read_keyed_npz(path: str | Path, key: dict) -> dict[str, np.ndarray] | None:
    """The arrays of an ``.npz`` written with ``key=np.array(json.dumps(key))`` beside them, or
    ``None`` when the file is missing, unreadable, truncated or written for another key."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as stored:
            if json.loads(str(stored["key"])) != key:
                return None
            return {name: stored[name] for name in stored.files if name != "key"}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None


def _read_entry(path: Path, key: dict, count: int) -> np.ndarray | None:
    """The cached features, or ``None`` when the file is missing, unreadable or not for ``key``."""
    stored = read_keyed_npz(path, key)
    features = stored.get("features") if stored else None
    if features is None or features.dtype != np.float32 or features.ndim != 2 or len(features) != count:
        return None
    return features


def extract_cached(
    images: np.ndarray,
    layers: Sequence[str],
    *,
    framework: str,
    backbone: str,
    size: int,
    preprocess: str,
    weights: Callable[[list[str]], dict[str, str]],
    run_batch: Callable[[np.ndarray, list[str]], dict[str, np.ndarray]],
    batch_size: int,
    cache: bool,
    progress: bool,
) -> dict[str, np.ndarray]:
    """Features for each of ``layers``, from the cache where possible, else by running the model.

    ``preprocess`` names the function that turns images into the model's input. The framework
    supplies ``weights(layers)`` (block name -> weights fingerprint, for at least those layers;
    see :func:`weights_fingerprints`) and ``run_batch(uint8 images, layers)`` -> ``{layer:
    (B, C) float32}``. Every layer missing from the cache is computed in one pass over the images.
    """
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    found: dict[str, np.ndarray] = {}
    paths: dict[str, Path] = {}
    keys: dict[str, dict] = {}
    if cache:
        fingerprints = weights(list(layers))
        data = data_fingerprint(images)
        for layer in layers:
            keys[layer] = {
                "format": CACHE_FORMAT, "framework": framework, "backbone": backbone,
                "weights": fingerprints[layer], "layer": layer, "size": size, "preprocess": preprocess,
                "data": data,
            }
            paths[layer] = _entry_path(keys[layer])
            cached = _read_entry(paths[layer], keys[layer], len(images))
            if cached is not None:
                found[layer] = cached
    missing = [layer for layer in layers if layer not in found]
    if missing:
        computed = _run_batches(images, missing, run_batch, batch_size, progress)
        for layer in missing:
            found[layer] = computed[layer]
            if cache:
                write_npz_atomically(paths[layer], features=computed[layer], key=np.array(json.dumps(keys[layer])))
    return {layer: found[layer] for layer in layers}


def _run_batches(images, layers, run_batch, batch_size, progress) -> dict[str, np.ndarray]:
    from tqdm.auto import tqdm

    parts: dict[str, list[np.ndarray]] = {layer: [] for layer in layers}
    label = layers[0] if len(layers) == 1 else f"{len(layers)} layers"
    starts = range(0, len(images), int(batch_size))
    for start in tqdm(starts, desc=f"features ({label})", unit="batch", disable=not progress, leave=False):
        batch = images[start : start + batch_size]
        outputs = run_batch(batch, list(layers))
        for layer in layers:
            values = np.asarray(outputs[layer], dtype=np.float32)
            if values.ndim != 2 or len(values) != len(batch):
                raise RuntimeError(f"layer {layer!r} gave features of shape {values.shape} for {len(batch)} images")
            parts[layer].append(values)
    return {layer: np.concatenate(chunks) for layer, chunks in parts.items()}


# -- features on disk, for the notebook's "train from disk" step ----------------------------------


def save_features(path: str | Path, features, labels) -> Path:
    """Write features ``(N, C)`` and labels ``(N,)`` to one ``.npz`` file (atomically)."""
    features, labels = np.asarray(features), np.asarray(labels)
    if features.ndim != 2 or labels.ndim != 1 or len(features) != len(labels):
        raise ValueError(f"expected features (N, C) and labels (N,), got {features.shape} and {labels.shape}")
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    return write_npz_atomically(path, features=features, labels=labels)


def load_features(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``(features, labels)`` from a file written by :func:`save_features`."""
    with np.load(Path(path), allow_pickle=False) as stored:
        missing = {"features", "labels"} - set(stored.files)
        if missing:
            raise ValueError(f"{path} was not written by save_features (no {', '.join(sorted(missing))})")
        return stored["features"], stored["labels"]


# -- heads ----------------------------------------------------------------------------------------


def make_head(kind: str, *, seed: int = 0, **options):
    """An unfitted scikit-learn pipeline for one kind of head; ``options`` override its classifier.

    ==================  ==========================================================================
    ``"logistic"``      StandardScaler + LogisticRegression (L2, C=1)
    ``"svm"``           StandardScaler + LinearSVC (C=0.01: 1,280 features and a few hundred
                        images call for strong regularisation)
    ``"random_forest"`` RandomForestClassifier, 200 trees (trees need no scaling)
    ``"dense"``         StandardScaler + MLPClassifier, one hidden layer of 256 ReLU units
    ==================  ==========================================================================

    e.g. ``make_head("logistic", C=0.1)`` or ``make_head("dense", hidden_layer_sizes=(64,))``.
    """
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    recipes = {
        "logistic": (LogisticRegression, {"C": 1.0, "max_iter": 2000}, True),
        "svm": (LinearSVC, {"C": 0.01, "max_iter": 5000, "random_state": seed}, True),
        "random_forest": (RandomForestClassifier, {"n_estimators": 200, "random_state": seed}, False),
        "dense": (
            MLPClassifier,
            {"hidden_layer_sizes": (256,), "alpha": 1e-2, "max_iter": 500, "random_state": seed},
            True,
        ),
    }
    if kind not in recipes:
        raise ValueError(f"unknown head kind {kind!r}; choose one of: {', '.join(HEAD_KINDS)}")
    estimator_class, defaults, scale = recipes[kind]
    estimator = estimator_class(**{**defaults, **options})
    return make_pipeline(StandardScaler(), estimator) if scale else make_pipeline(estimator)


def _check_features(features, labels, name: str) -> tuple[np.ndarray, np.ndarray]:
    features, labels = np.asarray(features), np.asarray(labels)
    if features.ndim != 2:
        raise ValueError(f"{name} features must be (N, C), got shape {features.shape}")
    if labels.shape != (len(features),):
        raise ValueError(f"{name}: {len(features)} feature rows but labels of shape {labels.shape}")
    return features, labels


def _blas_threads(count: int | None):
    """Cap BLAS/OpenMP threads while a head fits (``None``: leave them as they are).

    Heads fit on a few thousand rows at most; for matrix products that small, extra BLAS threads
    cost more in start-up and spin-waiting than they save, and on a busy 2-core machine fitting
    the dense head took 5-10x longer with two threads than with one (measured here).
    """
    import contextlib

    if count is None:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=count)


def train_head(kind: str, train_features, train_labels, *, seed: int = 0, blas_threads: int | None = 1, **options):
    """Fit a head of ``kind`` (one of :data:`HEAD_KINDS`) on features; returns the fitted pipeline.

    The result has scikit-learn's usual ``predict`` / ``score``; ``options`` go to the classifier
    (see :func:`make_head`).
    """
    features, labels = _check_features(train_features, train_labels, "train")
    head = make_head(kind, seed=seed, **options)
    with _blas_threads(blas_threads):
        return head.fit(features, labels)


def compare_heads(
    train,
    test,
    kinds: Sequence[str] = HEAD_KINDS,
    *,
    seed: int = 0,
    options: dict | None = None,
    blas_threads: int | None = 1,
) -> list[dict]:
    """Fit each kind of head on ``train`` and score it on ``test``: one row per kind.

    ``train`` and ``test`` are ``(features, labels)`` pairs; ``options`` maps a kind to its
    classifier options (``{"svm": {"C": 0.1}}``). Rows are ``{"kind", "accuracy",
    "fit_seconds"}``, ready for ``pandas.DataFrame(rows)``.
    """
    train_x, train_y = _check_features(*train, "train")
    test_x, test_y = _check_features(*test, "test")
    options = options or {}
    unknown = set(options) - set(kinds)
    if unknown:
        raise ValueError(f"options given for kinds that are not compared: {sorted(unknown)}")
    rows = []
    with _blas_threads(blas_threads):
        for kind in kinds:
            head = make_head(kind, seed=seed, **options.get(kind, {}))
            start = time.perf_counter()
            head.fit(train_x, train_y)
            fit_seconds = time.perf_counter() - start
            accuracy = float(np.mean(head.predict(test_x) == test_y))
            rows.append({"kind": kind, "accuracy": accuracy, "fit_seconds": fit_seconds})
    return rows


def probe_layers(train: tuple, test: tuple, kind: str = "logistic", *, seed: int = 0, **options) -> dict[str, float]:
    """Test accuracy of a ``kind`` head trained on each layer's features: which layer transfers best.

    ``train`` and ``test`` are ``({layer: features}, labels)`` pairs, the dicts as
    ``extract_features(model, split, [layers])`` returns them; the result maps each layer, in the
    same order, to its accuracy (a "linear probe" with the default logistic head).
    """
    train_by_layer, train_labels = train
    test_by_layer, test_labels = test
    missing = [layer for layer in train_by_layer if layer not in test_by_layer]
    if missing:
        raise ValueError(f"layers {missing} have training features but no test features")
    scores = {}
    for layer, features in train_by_layer.items():
        head = train_head(kind, features, train_labels, seed=seed, **options)
        test_x, test_y = _check_features(test_by_layer[layer], test_labels, "test")
        scores[layer] = float(np.mean(head.predict(test_x) == test_y))
    return scores
