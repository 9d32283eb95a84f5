"""2-D feature maps: the embedding keeps what it promises, and the plot shows what it was given."""
import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

from tlcourse import plots


def clusters(seed=0, per_cluster=30, dims=40, centres=3):
    """Well-separated clusters in many dimensions, with their labels."""
    rng = np.random.default_rng(seed)
    middles = rng.normal(0, 10, size=(centres, dims))
    labels = np.repeat(np.arange(centres), per_cluster)
    return middles[labels] + rng.normal(0, 1, size=(len(labels), dims)), labels


def nearest_centroid_accuracy(points, labels):
    centroids = np.stack([points[labels == k].mean(0) for k in np.unique(labels)])
    guesses = np.argmin(((points[:, None, :] - centroids[None]) ** 2).sum(-1), axis=1)
    return (guesses == labels).mean()


@pytest.mark.parametrize("method", plots.EMBEDDING_METHODS)
def test_separated_clusters_stay_separated_in_2d(method):
    features, labels = clusters()
    points = plots.embed_2d(features, method)
    assert points.shape == (len(features), 2)
    assert nearest_centroid_accuracy(points, labels) == 1.0


def test_a_shuffled_control_is_not_separated():
    # the check above can fail: labels unrelated to the features do not cluster
    features, labels = clusters()
    shuffled = np.random.default_rng(1).permutation(labels)
    assert nearest_centroid_accuracy(plots.embed_2d(features, "pca"), shuffled) < 0.7


@pytest.mark.parametrize("method", plots.EMBEDDING_METHODS)
def test_same_seed_same_map(method):
    features, _ = clusters(per_cluster=15)
    np.testing.assert_array_equal(plots.embed_2d(features, method, seed=3), plots.embed_2d(features, method, seed=3))


def test_pca_keeps_the_direction_of_largest_variance():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(200, 5)) * np.array([10.0, 3.0, 0.1, 0.1, 0.1])
    points = plots.embed_2d(features, "pca")
    assert abs(np.corrcoef(points[:, 0], features[:, 0])[0, 1]) > 0.99
    assert abs(np.corrcoef(points[:, 1], features[:, 1])[0, 1]) > 0.99


def test_bad_input_says_what_to_do():
    with pytest.raises(ValueError, match="reshape"):
        plots.embed_2d(np.zeros((10, 4, 4)))
    with pytest.raises(ValueError, match="unknown method"):
        plots.embed_2d(np.zeros((10, 4)), "umap")
    with pytest.raises(ValueError, match="at least 3"):
        plots.embed_2d(np.zeros((2, 4)))
    features, labels = clusters(per_cluster=5)
    with pytest.raises(ValueError, match="one integer per feature row"):
        plots.plot_embedding(features, labels[:-1])
    with pytest.raises(ValueError, match="integers"):
        plots.plot_embedding(features, labels.astype(float))


def legend_texts(axis):
    return [text.get_text() for text in axis.get_legend().get_texts()]


def test_class_and_domain_panels_show_the_same_points():
    features, labels = clusters(per_cluster=10)
    domains = np.arange(len(labels)) % 2
    fig = plots.plot_embedding(features, labels, ["ant", "bee", "cat"], domains=domains,
                               domain_names=["source", "target"], method="pca")
    by_class, by_domain = fig.axes
    assert legend_texts(by_class) == ["ant", "bee", "cat"]
    assert legend_texts(by_domain) == ["source", "target"]
    assert [len(c.get_offsets()) for c in by_class.collections] == [10, 10, 10]
    assert [len(c.get_offsets()) for c in by_domain.collections] == [15, 15]
    class_points = np.concatenate([c.get_offsets() for c in by_class.collections])
    domain_points = np.concatenate([c.get_offsets() for c in by_domain.collections])
    assert sorted(map(tuple, class_points)) == sorted(map(tuple, domain_points))


def test_draws_into_given_axes():
    import matplotlib.pyplot as plt

    features, labels = clusters(per_cluster=5)
    fig, axis = plt.subplots()
    assert plots.plot_embedding(features, labels, ax=axis) is fig
    assert len(axis.collections) == 3
    with pytest.raises(ValueError, match="2 panel"):
        plots.plot_embedding(features, labels, domains=labels, ax=axis)
