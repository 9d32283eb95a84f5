"""Zero-shot learning: attribute tables, DAP / IAP / ESZSL, and the ZSL and GZSL protocols.

The models are tested on synthetic features where the answer is known: an image's features are
its class's attribute signature pushed through a fixed random linear map, plus noise. A model that
learns to read the attributes then names unseen classes from their signatures alone.
"""
import numpy as np
import pytest

from tlcourse import data
from tlcourse import zeroshot as zs

N_CLASSES, N_ATTRIBUTES, WIDTH = 12, 10, 40
UNSEEN = (0, 3, 6, 9)
SEEN = tuple(k for k in range(N_CLASSES) if k not in UNSEEN)


@pytest.fixture(scope="module")
def world():
    """A table, and features for training (seen classes) and test (all classes) drawn from it."""
    rng = np.random.default_rng(7)
    while True:  # distinct signatures, and every attribute both on and off among the seen classes
        signatures = (rng.random((N_CLASSES, N_ATTRIBUTES)) < 0.5).astype(float)
        seen_rows = signatures[list(SEEN)]
        distinct = len(np.unique(signatures, axis=0)) == N_CLASSES
        if distinct and (seen_rows.min(0) == 0).all() and (seen_rows.max(0) == 1).all():
            break
    table = zs.AttributeTable(signatures, [f"class{k}" for k in range(N_CLASSES)],
                              [f"attribute{m}" for m in range(N_ATTRIBUTES)])
    mixing = rng.normal(size=(N_ATTRIBUTES, WIDTH))

    def draw(labels):
        return signatures[labels] @ mixing + rng.normal(scale=1.0, size=(len(labels), WIDTH))

    train_labels = np.repeat(SEEN, 30)
    test_labels = np.repeat(np.arange(N_CLASSES), 25)
    return table, (draw(train_labels), train_labels), (draw(test_labels), test_labels)


MODELS = {"DAP": zs.DAP, "IAP": zs.IAP, "ESZSL": zs.ESZSL}


# --------------------------------------------------------------------------- tables


def test_a_table_keeps_names_and_labels_through_subset():
    table = zs.AttributeTable([[1, 0], [0, 1], [1, 1]], ("zebra", "dolphin", "tiger shark"), ("stripes", "fins"))
    part = table.subset(["tiger shark", 0])
    assert part.classes == ("tiger shark", "zebra") and part.labels.tolist() == [2, 0]
    assert part.values.tolist() == [[1, 1], [1, 0]] and part.attributes == table.attributes
    assert table.is_binary and repr(table) == "AttributeTable(3 classes x 2 binary attributes)"
    assert part.index_of([0, 2, 2]).tolist() == [1, 0, 0]


@pytest.mark.parametrize("values, classes, attributes, message", [
    (np.zeros((3, 2)), ("a", "b"), ("x", "y"), "3 rows .* but 2 class names"),
    (np.zeros((2, 3)), ("a", "b", "c"), ("x", "y"), "transposed"),
    (np.zeros((2, 2)), ("a", "b"), ("x", "y", "z"), "2 columns .* but 3 attribute names"),
    (np.zeros(4), ("a",), ("x",), "2-D"),
    (np.zeros((2, 2)), ("a", "a"), ("x", "y"), "class names must be unique"),
    (np.array([[np.nan, 1], [0, 1]]), ("a", "b"), ("x", "y"), "NaN"),
])
def test_table_shape_errors_say_what_is_wrong(values, classes, attributes, message):
    with pytest.raises(ValueError, match=message):
        zs.AttributeTable(values, classes, attributes)


def test_continuous_tables_binarise_at_their_mean_and_lookups_fail_clearly():
    table = zs.AttributeTable([[0.9, 0.1], [0.2, 0.6]], ("a", "b"), ("x", "y"))
    assert not table.is_binary
    assert table.binary().values.tolist() == [[1, 0], [0, 1]]  # mean 0.45
    assert table.binary(threshold=0.15).values.tolist() == [[1, 0], [1, 1]]
    with pytest.raises(KeyError, match="no class 'c'"):
        table.subset(["c"])
    with pytest.raises(ValueError, match=r"labels \[5\] are not classes"):
        table.index_of([0, 5])


def test_a_model_refuses_candidates_with_other_attributes(world):
    table, (x, y), _ = world
    model = zs.ESZSL().fit(x, y, table.subset(SEEN))
    other = zs.AttributeTable(table.values[:, ::-1], table.classes, table.attributes[::-1])
    with pytest.raises(ValueError, match="attributes the model was trained with"):
        model.predict(x, other)
    with pytest.raises(ValueError, match="40-d features but got 39-d"):
        model.predict(x[:, 1:], table)
    with pytest.raises(ValueError, match="not classes of the attribute table"):
        zs.DAP().fit(x, y, table.subset(SEEN[:-1]))


def test_the_shapes_dataset_gives_seen_and_unseen_tables_and_a_test_set_of_both():
    ds = data.load("shapes")
    table = zs.AttributeTable.from_dataset(ds)
    assert table.shape == (18, 8) and table.attributes == ds.attribute_names
    assert set(ds.seen) | set(ds.unseen) == set(range(18)) and not set(ds.seen) & set(ds.unseen)
    assert set(ds.test.labels.tolist()) == set(range(18)), "GZSL needs seen classes in the test split too"
    assert table.subset(ds.unseen).classes == tuple(ds.classes[k] for k in ds.unseen)
    with pytest.raises(ValueError, match="no attribute table"):
        zs.AttributeTable.from_dataset(data.load("textures"))


# --------------------------------------------------------------------------- models


@pytest.mark.parametrize("name", MODELS)
def test_each_model_names_unseen_classes_far_above_chance(world, name):
    table, (x, y), (test_x, test_y) = world
    model = MODELS[name]().fit(x, y, table.subset(SEEN))
    accuracy = zs.evaluate_zsl(model, test_x, test_y, table.subset(UNSEEN))
    assert accuracy > 0.8, f"{name}: {accuracy:.2f} against chance {1 / len(UNSEEN):.2f}"
    predicted = model.predict(test_x, table.subset(UNSEEN))
    assert set(predicted.tolist()) <= set(UNSEEN), "predictions are the dataset's own labels"


@pytest.mark.parametrize("name", ["DAP", "IAP"])
def test_attribute_models_read_attributes_and_give_a_posterior(world, name):
    table, (x, y), (test_x, test_y) = world
    model = MODELS[name]().fit(x, y, table.subset(SEEN))
    p = model.attribute_proba(test_x)
    assert p.shape == (len(test_x), N_ATTRIBUTES) and (p > 0).all() and (p < 1).all()
    assert ((p > 0.5) == table.values[test_y]).mean() > 0.8
    posterior = model.predict_proba(test_x, table)
    assert np.allclose(posterior.sum(axis=1), 1)


def test_dap_keeps_an_attribute_no_seen_class_varies_as_a_constant(world):
    table, (x, y), (test_x, _) = world
    seen_rows = table.index_of(y)
    flat = zs.AttributeTable(np.column_stack([table.values, np.isin(np.arange(N_CLASSES), SEEN)]),
                             table.classes, (*table.attributes, "always on when seen"))
    assert (flat.values[seen_rows, -1] == 1).all()
    model = zs.DAP().fit(x, y, flat.subset(SEEN))
    assert np.allclose(model.attribute_proba(test_x)[:, -1], 1 - 1e-4)


def test_eszsl_matches_a_direct_solve_and_satisfies_its_normal_equations():
    rng = np.random.default_rng(0)
    d, m, a, z = 6, 30, 4, 5
    X, S = rng.normal(size=(d, m)), rng.normal(size=(a, z))
    Y = -np.ones((m, z))
    Y[np.arange(m), rng.integers(0, z, m)] = 1
    gamma, lam = 0.7, 2.5

    V = zs.eszsl_solution(X, Y, S, gamma, lam)

    direct = np.linalg.inv(X @ X.T + gamma * np.eye(d)) @ X @ Y @ S.T @ np.linalg.inv(S @ S.T + lam * np.eye(a))
    assert V.shape == (d, a) and np.allclose(V, direct)
    # The gradient of ||X'VS - Y||^2 + gamma ||VS||^2 + lam ||X'V||^2 + gamma lam ||V||^2 vanishes there.
    gradient = X @ (X.T @ V @ S - Y) @ S.T + gamma * V @ S @ S.T + lam * X @ X.T @ V + gamma * lam * V
    assert np.allclose(gradient, 0, atol=1e-9)
    with pytest.raises(ValueError, match="Y must be"):
        zs.eszsl_solution(X, Y.T, S, gamma, lam)


def test_models_follow_scikit_learn_conventions(world):
    from sklearn.base import clone

    table, (x, y), _ = world
    model = zs.ESZSL(gamma=3.0, lam=0.5)
    assert clone(model).get_params()["gamma"] == 3.0
    with pytest.raises(RuntimeError, match="not fitted"):
        model.predict(x, table)


# --------------------------------------------------------------------------- metrics and protocols


def test_per_class_accuracy_averages_classes_not_images():
    true = np.array([0, 0, 0, 0, 1, 1])  # class 0: 3 of 4 right; class 1: 0 of 2
    predicted = np.array([0, 0, 0, 1, 7, 7])  # 7 is a class with no test images: only a mistake
    assert zs.per_class_accuracy(true, predicted) == pytest.approx((3 / 4 + 0) / 2)
    assert (predicted == true).mean() == pytest.approx(0.5)  # plain accuracy differs


def test_harmonic_mean_on_hand_made_cases():
    assert zs.harmonic_mean(0.8, 0.2) == pytest.approx(0.32)
    assert zs.harmonic_mean(0.5, 0.5) == pytest.approx(0.5)
    assert zs.harmonic_mean(0.9, 0.0) == 0.0 and zs.harmonic_mean(0.0, 0.0) == 0.0


class FixedScores:
    """A stand-in model whose scores are given."""

    def __init__(self, scores):
        self._scores = np.asarray(scores, float)

    def scores(self, features, table):
        return self._scores


def test_gzsl_names_every_image_among_seen_and_unseen_classes_and_calibration_shifts_the_balance():
    table = zs.AttributeTable(np.eye(3), ("s0", "s1", "u2"), ("x", "y", "z"))
    labels = np.array([0, 1, 2, 2])
    # Seen classes score high everywhere; the unseen image's own class is second best.
    scores = [[5, 1, 0], [1, 5, 0], [4, 1, 3], [1, 4, 3.5]]
    plain = zs.evaluate_gzsl(FixedScores(scores), np.zeros((4, 1)), labels, table, seen=(0, 1))
    assert (plain.seen, plain.unseen, plain.harmonic) == (1.0, 0.0, 0.0)
    calibrated = zs.evaluate_gzsl(FixedScores(scores), np.zeros((4, 1)), labels, table, seen=(0, 1), calibration=1.5)
    assert (calibrated.seen, calibrated.unseen) == (1.0, 1.0) and calibrated.harmonic == 1.0
    with pytest.raises(ValueError, match="both seen and unseen classes"):
        zs.evaluate_gzsl(FixedScores(scores), np.zeros((4, 1)), labels, table, seen=(0, 1, 2))


def test_gzsl_on_learnt_models_includes_seen_classes_among_candidates(world):
    table, (x, y), (test_x, test_y) = world
    model = zs.ESZSL().fit(x, y, table.subset(SEEN))
    predicted = model.predict(test_x, table)
    assert set(predicted.tolist()) & set(SEEN) and set(predicted.tolist()) & set(UNSEEN)
    result = zs.evaluate_gzsl(model, test_x, test_y, table, seen=SEEN)
    assert result.harmonic == pytest.approx(zs.harmonic_mean(result.seen, result.unseen))
    curve = zs.seen_unseen_curve(model, test_x, test_y, table, SEEN)
    assert curve["seen"][0] > 0.9 and curve["unseen"][0] == 0  # everything called seen
    assert curve["seen"][-1] == 0 and curve["unseen"][-1] > 0.8  # everything called unseen
    assert 0 < curve["ausuc"] <= 1 and curve["harmonic"].max() >= result.harmonic


def test_class_split_validation_never_touches_unseen_classes(world):
    table, train, (test_x, test_y) = world
    seen_val = np.isin(test_y, SEEN)
    result = zs.class_split_validation(zs.ESZSL(), train, (test_x[seen_val], test_y[seen_val]), table.subset(SEEN))
    assert result["accuracy"] > 0.5 and 0 < result["harmonic"] <= 1
    assert np.isfinite(result["calibration"])


def test_zeroshot_needs_neither_framework():
    import subprocess
    import sys

    code = ("import sys, tlcourse.zeroshot; "
            "print(sorted(m for m in ('torch', 'tensorflow', 'keras') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
