"""How zero-shot models are scored, the way the literature reports them.

- **Zero-shot** (:func:`evaluate_zsl`): test images of the unseen classes only, named among the
  unseen classes only. The number is the *per-class mean* accuracy (each class's accuracy, then
  their average), so a class with many test images does not count more than a rare one.
- **Generalised zero-shot** (:func:`evaluate_gzsl`, the protocol of Xian, Lampert, Schiele & Akata,
  TPAMI 2018): every test image, seen or unseen, is named among *all* classes. Per-class mean
  accuracy is taken separately on the test images of seen classes and of unseen classes, and
  summarised by their harmonic mean ``H = 2 s u / (s + u)``, which is high only when both are.
- **Calibrated stacking** (Chao, Changpinyo, Gong & Sha, ECCV 2016): models trained on seen classes
  score them too highly, so in GZSL almost everything is called a seen class. Subtracting a constant
  ``calibration`` from every seen class's score trades seen accuracy for unseen accuracy;
  :func:`seen_unseen_curve` sweeps it (its area is the AUSUC) and :func:`class_split_validation`
  picks it, like every other hyperparameter, without ever looking at an unseen class.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tlcourse.zeroshot.tables import AttributeTable

__all__ = [
    "GZSLResult",
    "calibrated_predict",
    "class_split_validation",
    "evaluate_gzsl",
    "evaluate_zsl",
    "harmonic_mean",
    "per_class_accuracy",
    "seen_unseen_curve",
]


def per_class_accuracy(true_labels, predicted_labels) -> float:
    """Mean over the classes present in ``true_labels`` of the fraction of that class predicted right.

    Predictions may name classes that never occur in ``true_labels`` (in GZSL they often do); they
    simply count as mistakes. This is scikit-learn's macro-averaged recall over the true classes.
    """
    from sklearn.metrics import recall_score

    true_labels, predicted_labels = np.asarray(true_labels), np.asarray(predicted_labels)
    if true_labels.shape != predicted_labels.shape or true_labels.ndim != 1:
        raise ValueError(f"labels of shapes {true_labels.shape} and {predicted_labels.shape}; expected two equal (N,)")
    if len(true_labels) == 0:
        raise ValueError("no labels to score")
    present = np.unique(true_labels)
    return float(recall_score(true_labels, predicted_labels, labels=present, average="macro", zero_division=0))


def harmonic_mean(seen: float, unseen: float) -> float:
    """``2 s u / (s + u)``: GZSL's summary of seen and unseen accuracy (0 when both are 0)."""
    total = seen + unseen
    return 0.0 if total == 0 else float(2 * seen * unseen / total)


def evaluate_zsl(model, features, labels, unseen_table: AttributeTable) -> float:
    """Per-class mean accuracy on the images of ``unseen_table``'s classes, named among those classes only.

    Images of other classes in ``features`` are ignored, so a whole test split can be passed.
    """
    features, labels = np.asarray(features), np.asarray(labels)
    keep = np.isin(labels, unseen_table.labels)
    if not keep.any():
        raise ValueError(f"no test image belongs to the candidate classes {unseen_table.labels.tolist()}")
    return per_class_accuracy(labels[keep], model.predict(features[keep], unseen_table))


@dataclass(frozen=True)
class GZSLResult:
    """Generalised zero-shot accuracy: per-class mean on seen and unseen test images, and H."""

    seen: float
    unseen: float
    harmonic: float
    calibration: float = 0.0

    def __str__(self) -> str:
        return f"seen {self.seen:.1%}, unseen {self.unseen:.1%}, H {self.harmonic:.1%}"


def calibrated_predict(scores, table: AttributeTable, seen, calibration: float = 0.0) -> np.ndarray:
    """Labels from ``scores`` (N, K) over ``table``'s classes, after subtracting ``calibration`` from seen ones."""
    scores = np.asarray(scores, dtype=float)
    if scores.shape[1:] != (len(table),):
        raise ValueError(f"scores of shape {scores.shape} for a table of {len(table)} classes")
    penalty = calibration * _seen_columns(table, seen)
    return table.labels[np.argmax(scores - penalty, axis=1)]


def evaluate_gzsl(model, features, labels, table: AttributeTable, seen, calibration: float = 0.0) -> GZSLResult:
    """Name every test image among all of ``table``'s classes; score seen and unseen images apart.

    ``table`` holds every candidate class, seen and unseen; ``seen`` lists the labels the model was
    trained on (``ds.seen``). ``calibration`` is subtracted from seen classes' scores.
    """
    features, labels = np.asarray(features), np.asarray(labels)
    is_seen = _split_test_images(labels, table, seen)
    predicted = calibrated_predict(model.scores(features, table), table, seen, calibration)
    seen_accuracy = per_class_accuracy(labels[is_seen], predicted[is_seen])
    unseen_accuracy = per_class_accuracy(labels[~is_seen], predicted[~is_seen])
    return GZSLResult(seen_accuracy, unseen_accuracy, harmonic_mean(seen_accuracy, unseen_accuracy), calibration)


def seen_unseen_curve(model, features, labels, table: AttributeTable, seen, points: int = 41) -> dict:
    """Seen and unseen accuracy as the calibration grows from "always seen" to "always unseen".

    The calibrations tried are quantiles of the gap between each image's best seen and best unseen
    score (where its prediction flips), so the sweep adapts to any model's score scale. Returns
    ``{"calibration", "seen", "unseen", "harmonic"}`` arrays and ``"ausuc"``, the area under the
    unseen-vs-seen accuracy curve (Chao et al.'s summary; 1 is perfect).
    """
    features, labels = np.asarray(features), np.asarray(labels)
    is_seen = _split_test_images(labels, table, seen)
    scores = model.scores(features, table)
    seen_columns = _seen_columns(table, seen).astype(bool)
    gap = scores[:, seen_columns].max(axis=1) - scores[:, ~seen_columns].max(axis=1)
    spread = max(float(np.ptp(gap)), 1e-9)
    calibrations = np.unique(np.concatenate([
        np.quantile(gap, np.linspace(0, 1, points)), [0.0, gap.min() - spread, gap.max() + spread],
    ]))
    seen_acc, unseen_acc = [], []
    for calibration in calibrations:
        predicted = calibrated_predict(scores, table, seen, calibration)
        seen_acc.append(per_class_accuracy(labels[is_seen], predicted[is_seen]))
        unseen_acc.append(per_class_accuracy(labels[~is_seen], predicted[~is_seen]))
    seen_acc, unseen_acc = np.array(seen_acc), np.array(unseen_acc)
    # Calibrations ascend, so unseen accuracy rises and seen accuracy falls along the arrays.
    ausuc = float(np.trapezoid(seen_acc, unseen_acc))
    harmonic = np.array([harmonic_mean(s, u) for s, u in zip(seen_acc, unseen_acc)])
    return {"calibration": calibrations, "seen": seen_acc, "unseen": unseen_acc, "harmonic": harmonic, "ausuc": ausuc}


def class_split_validation(estimator, train, val, seen_table: AttributeTable, holdout: float = 0.25,
                           repeats: int = 3, seed: int = 0) -> dict:
    """Validate a zero-shot model using seen classes only: some of them play the unseen ones.

    ``train`` and ``val`` are ``(features, labels)`` of seen-class images. Each repeat hides a
    random ``holdout`` fraction of the seen classes (at least two), fits a clone of ``estimator`` on
    the training images of the rest, and scores it on the validation images: zero-shot accuracy
    among the hidden classes, and the GZSL calibration that maximises H among all seen classes.
    Returns ``{"accuracy": mean ZSL accuracy, "harmonic": mean best H, "calibration": median best
    calibration}``; choose layers, hyperparameters and the calibration by it, never by test images.
    """
    from sklearn.base import clone

    train_x, train_y = map(np.asarray, train)
    val_x, val_y = map(np.asarray, val)
    labels = seen_table.labels
    n_hidden = max(2, int(round(holdout * len(labels))))
    if len(labels) - n_hidden < 2:
        raise ValueError(f"{len(labels)} seen classes are too few to hide {n_hidden} and train on the rest")
    rng = np.random.default_rng(seed)
    accuracies, harmonics, calibrations = [], [], []
    for _ in range(repeats):
        hidden = np.sort(rng.choice(labels, size=n_hidden, replace=False))
        kept = np.setdiff1d(labels, hidden)
        fit_rows = np.isin(train_y, kept)
        model = clone(estimator).fit(train_x[fit_rows], train_y[fit_rows], seen_table.subset(kept))
        accuracies.append(evaluate_zsl(model, val_x, val_y, seen_table.subset(hidden)))
        curve = seen_unseen_curve(model, val_x, val_y, seen_table, kept)
        best = int(np.argmax(curve["harmonic"]))
        harmonics.append(curve["harmonic"][best])
        calibrations.append(curve["calibration"][best])
    return {
        "accuracy": float(np.mean(accuracies)),
        "harmonic": float(np.mean(harmonics)),
        "calibration": float(np.median(calibrations)),
    }


def _seen_columns(table: AttributeTable, seen) -> np.ndarray:
    seen = np.asarray(list(seen), dtype=np.int64)
    is_seen = np.isin(table.labels, seen).astype(float)
    if not 0 < is_seen.sum() < len(table):
        raise ValueError(
            "GZSL needs both seen and unseen classes among the candidates; pass the whole table "
            f"(AttributeTable.from_dataset(ds)) and seen=ds.seen (got {int(is_seen.sum())} seen of {len(table)})"
        )
    return is_seen


def _split_test_images(labels, table: AttributeTable, seen) -> np.ndarray:
    """Which test images belong to seen classes; every label must be a candidate class, both kinds present."""
    _seen_columns(table, seen)
    table.index_of(labels)  # every test label must be a candidate
    is_seen = np.isin(labels, np.asarray(list(seen)))
    if is_seen.all() or not is_seen.any():
        kind = "unseen" if is_seen.all() else "seen"
        raise ValueError(f"GZSL needs test images of both seen and unseen classes; there are none of {kind} ones")
    return is_seen
