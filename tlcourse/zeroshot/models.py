"""Three classic zero-shot classifiers over image features: DAP, IAP and ESZSL.

Each is fitted on images of the *seen* classes with their attribute table, and then names images
among any *candidate* classes described by the same attributes, including classes it has never
seen an image of:

>>> model = ESZSL().fit(train_features, train_labels, table.subset(ds.seen))
>>> model.predict(test_features, table.subset(ds.unseen))     # labels of unseen classes

- :class:`DAP`, direct attribute prediction (Lampert, Nickisch & Harmeling, TPAMI 2014): one
  logistic regression per attribute says how likely an image has it; a class is scored by how well
  its attribute signature agrees with those probabilities.
- :class:`IAP`, indirect attribute prediction (same paper): one multi-class logistic regression
  over the seen classes; an attribute's probability is the probability mass of the seen classes
  that have it. Then the same scoring as DAP.
- :class:`ESZSL` (Romera-Paredes & Torr, ICML 2015): one linear map from features to attributes,
  found in closed form (:func:`eszsl_solution`); a class's score is the bilinear compatibility
  ``features @ V @ signature``.

``scores(features, table)`` gives one number per image and candidate class (higher is more
likely); ``predict`` takes the best. DAP and IAP use the 0/1 version of the table (a continuous
one is thresholded, see :meth:`AttributeTable.binary`); ESZSL uses the values as they are.
Features come from any backbone and either framework: these models only see numpy arrays.
"""
from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator

from tlcourse.zeroshot.tables import AttributeTable

__all__ = ["DAP", "ESZSL", "IAP", "eszsl_solution"]

# Attribute probabilities are kept inside [EPS, 1 - EPS], so that no single attribute's log can
# veto a class outright (log 0 = -inf).
EPS = 1e-4


class _ZeroShotModel(BaseEstimator):
    """What the three share: checks, the seen table, predict from scores."""

    def fit(self, features, labels, table: AttributeTable):
        """Learn from ``features`` (N, D) of images whose ``labels`` are classes of ``table``."""
        features = _check_features(features)
        if not isinstance(table, AttributeTable):
            raise TypeError(f"table must be an AttributeTable, got {type(table).__name__}")
        labels = np.asarray(labels)
        if labels.shape != (len(features),):
            raise ValueError(f"{len(features)} feature rows but labels of shape {labels.shape}")
        rows = table.index_of(labels)
        if len(np.unique(rows)) < 2:
            raise ValueError("training images must come from at least two seen classes")
        self.seen_table_ = table
        self.n_features_in_ = features.shape[1]
        self._fit(features, rows, table)
        return self

    def scores(self, features, table: AttributeTable) -> np.ndarray:
        """(N, K): how well each image fits each of the ``K`` candidate classes in ``table``."""
        self._check_fitted()
        features = _check_features(features, self.n_features_in_)
        self.seen_table_.check_attributes(table)
        return self._scores(features, table)

    def predict(self, features, table: AttributeTable) -> np.ndarray:
        """The dataset label (``table.labels``) of the best-scoring candidate class, per image."""
        return table.labels[np.argmax(self.scores(features, table), axis=1)]

    def _check_fitted(self):
        if not hasattr(self, "seen_table_"):
            raise RuntimeError(f"this {type(self).__name__} is not fitted yet; call fit(features, labels, seen_table)")


class _AttributeProbabilityModel(_ZeroShotModel):
    """DAP and IAP: attribute probabilities per image, then Lampert et al.'s class posterior.

    With ``p_m = p(a_m = 1 | x)`` and the attribute prior ``pi_m``, a candidate class ``z`` with
    0/1 signature ``a^z`` scores ``log p(z | x) = sum_m log(p(a_m = a^z_m | x) / p(a_m = a^z_m)) + const``
    (the paper's equation, in logs, with equal class priors). ``prior="seen"`` takes ``pi_m`` as
    the mean of attribute ``m`` over the seen classes, as the paper does; ``"uniform"`` takes 1/2.
    """

    def _prepare(self, table: AttributeTable) -> AttributeTable:
        if self.prior not in ("seen", "uniform"):
            raise ValueError(f"prior must be 'seen' or 'uniform', got {self.prior!r}")
        if self.threshold is None and not table.is_binary:
            self.threshold_ = float(table.values.mean())
        else:
            self.threshold_ = 0.5 if self.threshold is None else float(self.threshold)
        binary = table.binary(self.threshold_)
        prior = binary.values.mean(axis=0) if self.prior == "seen" else np.full(len(table.attributes), 0.5)
        self.attribute_prior_ = np.clip(prior, EPS, 1 - EPS)
        return binary

    def attribute_proba(self, features) -> np.ndarray:
        """(N, A): the probability that each image shows each attribute."""
        self._check_fitted()
        features = _check_features(features, self.n_features_in_)
        return np.clip(self._attribute_proba(features), EPS, 1 - EPS)

    def _scores(self, features, table):
        signatures = table.binary(self.threshold_).values  # (K, A)
        p = np.clip(self._attribute_proba(features), EPS, 1 - EPS)  # (N, A)
        prior = self.attribute_prior_
        return np.log(p / prior) @ signatures.T + np.log((1 - p) / (1 - prior)) @ (1 - signatures).T

    def predict_proba(self, features, table: AttributeTable) -> np.ndarray:
        """(N, K): the class posterior over the candidates in ``table`` (rows sum to 1)."""
        scores = self.scores(features, table)
        scores = np.exp(scores - scores.max(axis=1, keepdims=True))
        return scores / scores.sum(axis=1, keepdims=True)


class DAP(_AttributeProbabilityModel):
    """Direct attribute prediction: one scikit-learn logistic regression per attribute.

    Every training image is labelled with its class's 0/1 attributes; attribute ``m``'s classifier
    learns ``p(a_m = 1 | x)`` from all of them at once. Features are standardised first. ``C`` is
    the inverse L2 strength of every regression; ``n_jobs`` fits attributes in parallel. An
    attribute that every seen class has (or none has) cannot be learnt, and keeps that constant.
    ``threshold`` binarises a continuous table (default: its mean value).
    """

    def __init__(self, C: float = 1.0, prior: str = "seen", threshold: float | None = None,
                 max_iter: int = 1000, n_jobs: int | None = None):
        self.C = C
        self.prior = prior
        self.threshold = threshold
        self.max_iter = max_iter
        self.n_jobs = n_jobs

    def _fit(self, features, rows, table):
        from sklearn.linear_model import LogisticRegression
        from sklearn.multioutput import MultiOutputClassifier
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        targets = self._prepare(table).values[rows].astype(np.int64)  # (N, A), each image's 0/1 attributes
        varies = targets.min(axis=0) != targets.max(axis=0)
        self.constant_attributes_ = np.where(varies, np.nan, targets[0].astype(float))
        self.classifier_ = None
        if varies.any():
            regression = LogisticRegression(C=self.C, max_iter=self.max_iter)
            self.classifier_ = make_pipeline(StandardScaler(), MultiOutputClassifier(regression, n_jobs=self.n_jobs))
            self.classifier_.fit(features, targets[:, varies])
        self.learnt_attributes_ = np.flatnonzero(varies)

    def _attribute_proba(self, features):
        p = np.tile(self.constant_attributes_, (len(features), 1))
        if self.classifier_ is not None:
            per_attribute = self.classifier_.predict_proba(features)  # one (N, 2) array per attribute
            p[:, self.learnt_attributes_] = np.column_stack([proba[:, 1] for proba in per_attribute])
        return p


class IAP(_AttributeProbabilityModel):
    """Indirect attribute prediction: a multinomial logistic regression over the seen classes.

    ``p(a_m = 1 | x) = sum_k p(y_k | x) a^{y_k}_m``: the probability of the seen classes that have
    attribute ``m``. Features are standardised first; ``C`` is the inverse L2 strength.
    """

    def __init__(self, C: float = 1.0, prior: str = "seen", threshold: float | None = None, max_iter: int = 1000):
        self.C = C
        self.prior = prior
        self.threshold = threshold
        self.max_iter = max_iter

    def _fit(self, features, rows, table):
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        binary = self._prepare(table)
        self.classifier_ = make_pipeline(StandardScaler(), LogisticRegression(C=self.C, max_iter=self.max_iter))
        self.classifier_.fit(features, rows)
        self.class_signatures_ = binary.values[self.classifier_.classes_]  # (seen classes, A)

    def _attribute_proba(self, features):
        return self.classifier_.predict_proba(features) @ self.class_signatures_


def eszsl_solution(X: np.ndarray, Y: np.ndarray, S: np.ndarray, gamma: float, lam: float) -> np.ndarray:
    """ESZSL's closed form ``V = (X X^T + gamma I)^-1 X Y S^T (S S^T + lam I)^-1``, in the paper's layout.

    ``X`` is (d, m): one *column* per training image; ``Y`` is (m, z) with +1 for an image's class
    and -1 elsewhere; ``S`` is (a, z): one column of attributes per seen class. Returns ``V`` (d, a),
    the minimiser of ``||X^T V S - Y||^2 + gamma ||V S||^2 + lam ||X^T V||^2 + gamma lam ||V||^2``
    (Frobenius norms), i.e. the solution of ``(X X^T + gamma I) V (S S^T + lam I) = X Y S^T``.
    Two linear solves, no explicit inverse.
    """
    d, m = X.shape
    a, z = S.shape
    if Y.shape != (m, z):
        raise ValueError(f"Y must be (images, classes) = ({m}, {z}) for X {X.shape} and S {S.shape}, got {Y.shape}")
    left = X @ X.T + gamma * np.eye(d)
    right = S @ S.T + lam * np.eye(a)
    V = np.linalg.solve(left, X @ Y @ S.T)  # (d, a)
    return np.linalg.solve(right, V.T).T  # right is symmetric: V right^-1 = (right^-1 V^T)^T


class ESZSL(_ZeroShotModel):
    """Embarrassingly simple zero-shot learning: a linear map to attributes, in closed form.

    ``gamma`` penalises the map's reach in feature space and ``lam`` in attribute space (the
    paper's gamma and lambda; it searched both over 10^-3 ... 10^3). Features are standardised
    first (``standardize``); each class signature is scaled to unit length (``normalize_signatures``,
    as in Xian et al.'s benchmark), so that classes with many attributes do not win by size alone.
    """

    def __init__(self, gamma: float = 1.0, lam: float = 1.0, standardize: bool = True,
                 normalize_signatures: bool = True):
        self.gamma = gamma
        self.lam = lam
        self.standardize = standardize
        self.normalize_signatures = normalize_signatures

    def _fit(self, features, rows, table):
        from sklearn.preprocessing import StandardScaler

        self.scaler_ = StandardScaler(with_std=True).fit(features) if self.standardize else None
        X = self._transform(features).T  # (d, m)
        Y = -np.ones((len(rows), len(table)))
        Y[np.arange(len(rows)), rows] = 1.0
        S = self._signatures(table).T  # (a, z)
        self.V_ = eszsl_solution(X, Y, S, self.gamma, self.lam)

    def _transform(self, features):
        return self.scaler_.transform(features) if self.scaler_ is not None else features

    def _signatures(self, table):
        values = table.values
        if self.normalize_signatures:
            norms = np.linalg.norm(values, axis=1, keepdims=True)
            values = values / np.where(norms > 0, norms, 1.0)
        return values

    def _scores(self, features, table):
        return self._transform(features) @ self.V_ @ self._signatures(table).T


def _check_features(features, expected_width: int | None = None) -> np.ndarray:
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or len(features) == 0:
        raise ValueError(
            f"features must be a non-empty (N, D) array, one row per image, got shape {features.shape}; "
            "extract them with tlcourse.torch.extract_features or tlcourse.keras.extract_features"
        )
    if expected_width is not None and features.shape[1] != expected_width:
        raise ValueError(
            f"the model was fitted on {expected_width}-d features but got {features.shape[1]}-d ones; "
            "use the same backbone, layer and size for training and test images"
        )
    if not np.isfinite(features).all():
        raise ValueError("features hold NaN or infinite values")
    return features
