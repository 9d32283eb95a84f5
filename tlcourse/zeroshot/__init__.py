"""Zero-shot learning from attributes: name images of classes that no training image showed.

Plain NumPy and scikit-learn, over features from any backbone in either framework:

>>> from tlcourse import data, zeroshot as zs
>>> ds = data.load("shapes")
>>> table = zs.AttributeTable.from_dataset(ds)          # 18 classes x 8 attributes
>>> model = zs.DAP().fit(train_features, ds.train.labels, table.subset(ds.seen))
>>> zs.evaluate_zsl(model, test_features, ds.test.labels, table.subset(ds.unseen))
>>> zs.evaluate_gzsl(model, test_features, ds.test.labels, table, seen=ds.seen)

:mod:`~tlcourse.zeroshot.tables` holds the class x attribute tables, :mod:`~tlcourse.zeroshot.models`
the classifiers (DAP, IAP, ESZSL) and :mod:`~tlcourse.zeroshot.evaluation` the protocols
(zero-shot, generalised zero-shot with calibrated stacking, validation on seen classes).
"""
from tlcourse.zeroshot.evaluation import (
    GZSLResult,
    calibrated_predict,
    class_split_validation,
    evaluate_gzsl,
    evaluate_zsl,
    harmonic_mean,
    per_class_accuracy,
    seen_unseen_curve,
)
from tlcourse.zeroshot.models import DAP, ESZSL, IAP, eszsl_solution
from tlcourse.zeroshot.tables import AttributeTable

__all__ = [
    "AttributeTable",
    "DAP",
    "ESZSL",
    "GZSLResult",
    "IAP",
    "calibrated_predict",
    "class_split_validation",
    "eszsl_solution",
    "evaluate_gzsl",
    "evaluate_zsl",
    "harmonic_mean",
    "per_class_accuracy",
    "seen_unseen_curve",
]
