"""tlcourse.keras.fit / evaluate / predict on a tiny conv net and tiny learnable images."""
import importlib.util

import numpy as np
import pytest

if importlib.util.find_spec("tensorflow") is None:
    pytest.skip("needs TensorFlow", allow_module_level=True)
import tlcourse.keras  # noqa: E402,F401  (first: it prepares the process before keras loads)
import keras  # noqa: E402

from tlcourse.data.card import Split  # noqa: E402
from tlcourse.history import History  # noqa: E402
from tlcourse.keras.train import evaluate, fit, lr_factor, predict  # noqa: E402

layers = keras.layers


def quadrant_images(n: int, seed: int) -> Split:
    """16x16 noise images; the label says which quadrant is brighter (4 classes)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 120, (n, 16, 16, 3), dtype=np.uint8)
    labels = rng.integers(0, 4, n)
    for image, label in zip(images, labels):
        row, col = divmod(int(label), 2)
        image[row * 8:(row + 1) * 8, col * 8:(col + 1) * 8] += 100
    return Split(images, labels)


TRAIN, VAL = quadrant_images(192, seed=0), quadrant_images(64, seed=1)


def tiny_net(seed: int = 0) -> keras.Sequential:
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((16, 16, 3)),
        layers.Conv2D(8, 3, padding="same", name="conv1"), layers.BatchNormalization(name="bn1"), layers.ReLU(),
        layers.Conv2D(8, 3, strides=2, padding="same"), layers.BatchNormalization(name="bn2"), layers.ReLU(),
        layers.AveragePooling2D(4), layers.Flatten(), layers.Dropout(0.1), layers.Dense(4, name="head"),
    ])


def same_numbers(a: History, b: History) -> bool:
    """Equal rows apart from the wall-clock seconds."""
    strip = lambda h: [{k: v for k, v in row.items() if k != "seconds"} for row in h.rows]  # noqa: E731
    return strip(a) == strip(b)


def assert_same_weights(a: keras.Model, b: keras.Model) -> None:
    for left, right in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(left, right)


@pytest.mark.slow
def test_loss_falls_and_the_model_learns():
    history = fit(tiny_net(), TRAIN, VAL, epochs=4, lr=1e-2, seed=0, progress=False)
    losses = history["loss"]
    assert history["epoch"] == [1, 2, 3, 4] and history.meta["framework"] == "keras"
    assert all(later < earlier for earlier, later in zip(losses, losses[1:]))
    assert history[-1]["val_accuracy"] > 0.8
    assert history["lr"] == [0.01] * 4


def test_frozen_layer_and_frozen_batchnorm_do_not_move():
    model = tiny_net()
    model.get_layer("conv1").trainable = False
    model.get_layer("bn1").trainable = False  # Keras 3 then also runs it in inference mode
    conv, frozen_bn, trained_bn = (model.get_layer(name) for name in ("conv1", "bn1", "bn2"))
    conv_before = conv.kernel.numpy().copy()
    frozen_mean, trained_mean = frozen_bn.moving_mean.numpy().copy(), trained_bn.moving_mean.numpy().copy()
    fit(model, TRAIN, epochs=1, optimizer="sgd", lr=0.05, weight_decay=0.1, progress=False)
    np.testing.assert_array_equal(conv.kernel.numpy(), conv_before)
    np.testing.assert_array_equal(frozen_bn.moving_mean.numpy(), frozen_mean)
    assert not np.array_equal(trained_bn.moving_mean.numpy(), trained_mean)


@pytest.mark.slow
def test_seeded_runs_repeat_exactly():
    runs = [fit(tiny_net(), TRAIN, VAL, epochs=2, lr=1e-2, seed=3, progress=False) for _ in range(2)]
    assert same_numbers(*runs)


@pytest.mark.slow
def test_resume_reaches_the_same_numbers_as_an_uninterrupted_run(tmp_path):
    class Interrupted(Exception):
        pass

    def cosine_then_crash(epoch):  # pulls the plug as epoch 3 begins, after epoch 2's checkpoint
        if epoch == 2:
            raise Interrupted
        return lr_factor("cosine", epoch, 3)

    settings = dict(epochs=3, lr=0.05, optimizer="sgd", nesterov=True, weight_decay=1e-3,
                    clip_grad_norm=1.0, seed=7, progress=False, stage="head")
    straight = tiny_net()
    straight_history = fit(straight, TRAIN, VAL, schedule="cosine", **settings)

    with pytest.raises(Interrupted):
        fit(tiny_net(), TRAIN, VAL, schedule=cosine_then_crash, checkpoint=tmp_path / "run.ckpt", **settings)
    resumed = tiny_net(seed=99)  # a fresh process would start from other weights: the checkpoint wins
    resumed_history = fit(resumed, TRAIN, VAL, schedule="cosine", checkpoint=tmp_path / "run.ckpt", resume=True,
                          **settings)
    assert resumed_history["epoch"] == [1, 2, 3]
    assert same_numbers(straight_history, resumed_history)
    assert_same_weights(straight, resumed)


@pytest.mark.slow
def test_early_stopping_stops_and_restores_the_best_weights():
    # Validation labels are shifted by one class: the better the model learns, the worse val_loss gets.
    contrary = Split(VAL.images, (VAL.labels + 1) % 4)
    model = tiny_net()
    history = fit(model, TRAIN, contrary, epochs=20, lr=1e-2, early_stopping=2, seed=0, progress=False)
    best = history.best("val_loss")
    assert len(history) < 20
    assert len(history) == best["epoch"] + 2
    assert history.meta["restored_epoch"] == best["epoch"]
    assert evaluate(model, contrary)["loss"] == pytest.approx(best["val_loss"], rel=1e-4)


@pytest.mark.slow
def test_resuming_an_early_stopped_run_gives_back_its_best_weights(tmp_path):
    contrary = Split(VAL.images, (VAL.labels + 1) % 4)
    settings = dict(epochs=20, lr=1e-2, early_stopping=2, seed=0, progress=False, checkpoint=tmp_path / "run.ckpt")
    finished = tiny_net()
    history = fit(finished, TRAIN, contrary, **settings)
    again = tiny_net(seed=5)
    resumed = fit(again, TRAIN, contrary, resume=True, **settings)  # nothing left to train
    assert resumed.rows == history.rows and resumed.meta == history.meta
    assert_same_weights(finished, again)


@pytest.mark.slow
def test_history_argument_continues_epochs_and_labels_stages():
    model = tiny_net()
    history = fit(model, TRAIN, epochs=1, stage="top", progress=False)
    model.get_layer("conv1").trainable = False
    same = fit(model, TRAIN, epochs=2, stage="block2", history=history, schedule="step", lr=0.1,
               optimizer="sgd", progress=False)
    assert same is history
    assert history["epoch"] == [1, 2, 3] and history["stage"] == ["top", "block2", "block2"]
    assert history["lr"][1:] == pytest.approx([0.1, 0.01])


@pytest.mark.slow
def test_evaluate_and_predict_agree_and_accept_a_numpy_transform():
    model = tiny_net()
    fit(model, TRAIN, epochs=1, lr=1e-2, progress=False)
    probabilities = predict(model, VAL.images, batch_size=20)
    assert probabilities.shape == (len(VAL), 4) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(1), 1, rtol=1e-5)
    scores = evaluate(model, (VAL.images, VAL.labels), batch_size=20)
    assert scores["accuracy"] == pytest.approx(np.mean(probabilities.argmax(1) == VAL.labels))
    picked = probabilities[np.arange(len(VAL)), VAL.labels]
    assert scores["loss"] == pytest.approx(-np.log(picked).mean(), rel=1e-4)

    def numpy_only(batch):  # cannot be traced by tf.data: runs through tf.numpy_function
        return batch.astype(np.float32) / 255
    assert evaluate(model, VAL, transform=numpy_only)["loss"] == pytest.approx(scores["loss"], rel=1e-5)


def test_bad_input_gets_an_error_that_names_the_fix():
    with pytest.raises(ValueError, match="channels-first"):
        fit(tiny_net(), (TRAIN.images.transpose(0, 3, 1, 2).copy(), TRAIN.labels), progress=False)
    with pytest.raises(ValueError, match="num_classes=6"):
        fit(tiny_net(), (TRAIN.images, np.where(TRAIN.labels == 0, 5, TRAIN.labels)), progress=False)
    with pytest.raises(ValueError, match="validation split"):
        fit(tiny_net(), TRAIN, early_stopping=2, progress=False)


def test_keras_step_retracing_warning_is_dropped_and_other_tensorflow_warnings_pass():
    import logging

    from tensorflow.python.platform import tf_logging

    seen = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    logger = logging.getLogger("tensorflow")
    logger.addHandler(handler)
    try:
        tf_logging.warning("5 out of the last 28 calls to <function TensorFlowTrainer._make_function.<locals>."
                           "multi_step_on_iterator at 0x7f0> triggered tf.function retracing. Tracing is expensive")
        tf_logging.warning("5 out of the last 6 calls to <function my_step at 0x7f0> triggered tf.function retracing.")
        tf_logging.warning("an unrelated warning")
    finally:
        logger.removeHandler(handler)
    assert seen == ["5 out of the last 6 calls to <function my_step at 0x7f0> triggered tf.function retracing.",
                    "an unrelated warning"]
