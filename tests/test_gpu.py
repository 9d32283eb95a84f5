"""Every training loop on a GPU, in both frameworks: what differs on CUDA, checked where it runs.

Each test skips where its framework sees no GPU; ``pytest -m gpu`` runs only these (``make test-gpu``).
The CPU paths of the same loops are tested in the other files; here the GPU-only parts: mixed
precision and its gradient scaler, channels-last, the optimizer rebuilt on the device per stage,
the reversal layer under autocast, the penalty kept in float32, checkpoints written and resumed on
the device, and results handed back as CPU numpy arrays.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
import tlcourse  # noqa: E402
import tlcourse.torch as tt  # noqa: E402  (torch before TensorFlow: see tlcourse/_coexist.py)
import tlcourse.keras as tk  # noqa: E402
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from tlcourse.data.card import Split  # noqa: E402
from tlcourse.stages import Stage  # noqa: E402

pytestmark = pytest.mark.gpu
torch_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="torch sees no CUDA device")
keras_gpu = pytest.mark.skipif(not tf.config.list_physical_devices("GPU"), reason="TensorFlow sees no GPU")
# Checkpoints resume on the GPU to this tolerance: cuDNN picks kernels per run, so bit-exactness
# (which the CPU tests assert) is not promised there.
RESUME_TOLERANCE = 1e-4


def quadrants(n: int, size: int = 32, seed: int = 0) -> Split:
    """Images with one bright quadrant each; the label says which: learnable in a few epochs."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, n)
    images = rng.integers(0, 60, (n, size, size, 3), dtype=np.uint8)
    half = size // 2
    for image, label in zip(images, labels):
        top, left = divmod(int(label), 2)
        image[top * half:(top + 1) * half, left * half:(left + 1) * half] += 180
    return Split(images, labels)


TRAIN, VAL = quadrants(96), quadrants(32, seed=1)


def lite0(fw):
    """Lite0 with a 4-class head, from the same random start every time."""
    tlcourse.seed_everything(0)
    return fw.swap_head(fw.build_lite0(weights=None), num_classes=4)


def crash_at(epoch_to_stop: int):
    class Interrupted(Exception):
        pass

    def schedule(epoch):
        if epoch == epoch_to_stop:
            raise Interrupted
        return 1.0

    return schedule, Interrupted


# -- PyTorch -----------------------------------------------------------------------------------
@torch_gpu
def test_torch_fit_uses_mixed_precision_and_channels_last_and_keeps_frozen_batchnorm():
    seen = {}

    class Probe(torch.nn.Module):
        def forward(self, x):
            if self.training:
                seen.update(autocast=torch.is_autocast_enabled("cuda"), device=x.device.type,
                            channels_last=x.is_contiguous(memory_format=torch.channels_last))
            return x

    model = lite0(tt)
    tt.freeze(model)
    tt.unfreeze(model, "block7")  # BatchNorm stays frozen: its running statistics must not move
    frozen_bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    frozen_mean = frozen_bn.running_mean.clone()
    probed = torch.nn.Sequential(Probe(), model)
    history = tt.fit(probed, TRAIN, VAL, epochs=3, lr=1e-2, optimizer="sgd", seed=0, progress=False)
    assert seen == {"autocast": True, "device": "cuda", "channels_last": True}
    assert history["loss"][-1] < history["loss"][0]
    assert torch.equal(frozen_bn.running_mean.cpu(), frozen_mean.cpu())


@torch_gpu
def test_torch_fit_staged_rebuilds_the_optimizer_on_the_device_per_stage():
    model = lite0(tt)
    block6 = [p.detach().clone() for p in tt.blocks(model)["block6"].parameters()]
    history = tt.fit_staged(model, TRAIN, VAL, [Stage("head", 1, 1e-2), Stage("block7", 1, 1e-3)], seed=0,
                            progress=False)
    assert history["stage"] == ["head", "block7"]
    assert all(p.device.type == "cuda" for p in model.parameters())
    assert all(torch.equal(before.cpu(), after.detach().cpu())
               for before, after in zip(block6, tt.blocks(model)["block6"].parameters()))


@torch_gpu
def test_torch_reversed_gradients_stay_reversed_under_autocast_and_fit_dann_runs():
    x = torch.randn(4, 5, device="cuda", requires_grad=True)
    upstream = torch.randn(4, 5, device="cuda")
    with torch.autocast("cuda", dtype=torch.float16):
        y = tt.reverse_gradient(torch.nn.functional.linear(x, torch.eye(5, device="cuda")), 0.5)
    assert y.dtype == torch.float16
    y.backward(upstream.half())
    assert torch.allclose(x.grad, -0.5 * upstream, atol=1e-2)  # float16 on the way back
    model = tt.build_dann_digits(4, (32, 32, 3), batchnorm=True, filters=(8, 16))
    history = tt.fit_dann(model, TRAIN, VAL.images, epochs=2, batch_size=16, target_eval=VAL, seed=0, progress=False)
    assert all(p.device.type == "cuda" for p in model.parameters())
    assert history["domain_accuracy"][-1] is not None and np.isfinite(history["loss"]).all()


@torch_gpu
def test_torch_l2sp_penalty_stays_float32_under_autocast():
    model = lite0(tt).cuda()
    penalty = tt.L2SP(model, alpha=0.1, beta=0.01)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.01)
    with torch.autocast("cuda", dtype=torch.float16):
        value = penalty(model)
    assert value.dtype == torch.float32 and value.item() > 0


@torch_gpu
def test_torch_features_and_cached_upper_blocks_on_the_gpu_match_the_cpu():
    model = lite0(tt).eval()
    on_cpu = tt.extract_features(model, VAL, "top", size=32, cache=False, progress=False)
    on_gpu = tt.extract_features(model.cuda(), VAL, "top", size=32, cache=False, progress=False)
    assert isinstance(on_gpu, np.ndarray) and np.allclose(on_cpu, on_gpu, atol=1e-3)
    tt.freeze(model)
    tt.unfreeze(model, "block7")
    train = tt.block_inputs(model, TRAIN, "block7", size=64)
    upper = tt.upper_blocks(model, "block7")
    history = tt.fit(upper, train, epochs=2, lr=1e-2, optimizer="sgd", transform=tt.maps_transform, seed=0,
                     progress=False)
    assert history["loss"][-1] < history["loss"][0]


@torch_gpu
def test_torch_checkpoint_resumes_on_the_gpu(tmp_path):
    settings = dict(epochs=3, lr=1e-2, optimizer="sgd", seed=0, progress=False)
    straight = lite0(tt)
    tt.fit(straight, TRAIN, VAL, **settings)
    schedule, interrupted = crash_at(2)
    with pytest.raises(interrupted):
        tt.fit(lite0(tt), TRAIN, VAL, schedule=schedule, checkpoint=tmp_path / "run.pt", **settings)
    resumed = lite0(tt)
    history = tt.fit(resumed, TRAIN, VAL, schedule=lambda epoch: 1.0, checkpoint=tmp_path / "run.pt", resume=True,
                     **settings)
    assert history["epoch"] == [1, 2, 3]
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        assert torch.allclose(a.float().cpu(), b.float().cpu(), atol=RESUME_TOLERANCE)


@torch_gpu
def test_torch_evaluate_and_predict_hand_back_cpu_numbers():
    model = lite0(tt).cuda()
    probabilities = tt.predict(model, VAL.images)
    assert isinstance(probabilities, np.ndarray) and probabilities.shape == (len(VAL), 4)
    scores = tt.evaluate(model, VAL)
    assert isinstance(scores["accuracy"], float) and isinstance(scores["loss"], float)


# -- Keras on TensorFlow ----------------------------------------------------------------------------
@keras_gpu
def test_keras_fit_runs_on_the_gpu_and_keeps_frozen_batchnorm():
    model = lite0(tk)
    tk.freeze(model)
    tk.unfreeze(model, "block7")
    frozen_bn = next(layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization))
    frozen_mean = keras.ops.convert_to_numpy(frozen_bn.moving_mean)
    history = tk.fit(model, TRAIN, VAL, epochs=3, lr=1e-2, optimizer="sgd", seed=0, progress=False)
    assert history["loss"][-1] < history["loss"][0]
    assert np.array_equal(keras.ops.convert_to_numpy(frozen_bn.moving_mean), frozen_mean)
    assert "GPU" in model.trainable_weights[0].value.device.upper()


@keras_gpu
def test_keras_fit_staged_trains_each_stage_on_the_gpu():
    model = lite0(tk)
    history = tk.fit_staged(model, TRAIN, VAL, [Stage("head", 1, 1e-2), Stage("block7", 1, 1e-3)], seed=0,
                            progress=False)
    assert history["stage"] == ["head", "block7"] and np.isfinite(history["loss"]).all()


@keras_gpu
def test_keras_reversed_gradients_and_fit_dann_on_the_gpu():
    x = tf.Variable(tf.random.normal((4, 5)))
    upstream = tf.random.normal((4, 5))
    with tf.device("/GPU:0"), tf.GradientTape() as tape:
        y = tk.reverse_gradient(x, 0.5)
    np.testing.assert_allclose(tape.gradient(y, x, output_gradients=upstream).numpy(), -0.5 * upstream.numpy(), rtol=1e-6)
    model = tk.build_dann_digits(4, (32, 32, 3), batchnorm=True, filters=(8, 16))
    history = tk.fit_dann(model, TRAIN, VAL.images, epochs=2, batch_size=16, target_eval=VAL, seed=0, progress=False)
    assert history["domain_accuracy"][-1] is not None and np.isfinite(history["loss"]).all()


@keras_gpu
def test_keras_l2sp_and_features_on_the_gpu():
    model = lite0(tk)
    penalty = tk.L2SP(model, alpha=0.1, beta=0.01)
    for weight in model.trainable_weights:
        weight.assign(weight + 0.01)
    value = penalty(model)
    assert value.dtype == tf.float32 and float(value) > 0
    features = tk.extract_features(model, VAL, "top", size=32, cache=False, progress=False)
    assert isinstance(features, np.ndarray) and len(features) == len(VAL)


@keras_gpu
def test_keras_checkpoint_resumes_on_the_gpu(tmp_path):
    settings = dict(epochs=3, lr=1e-2, optimizer="sgd", seed=0, progress=False)
    straight = lite0(tk)
    tk.fit(straight, TRAIN, VAL, **settings)
    schedule, interrupted = crash_at(2)
    with pytest.raises(interrupted):
        tk.fit(lite0(tk), TRAIN, VAL, schedule=schedule, checkpoint=tmp_path / "run.ckpt", **settings)
    resumed = lite0(tk)
    history = tk.fit(resumed, TRAIN, VAL, schedule=lambda epoch: 1.0, checkpoint=tmp_path / "run.ckpt", resume=True,
                     **settings)
    assert history["epoch"] == [1, 2, 3]
    for a, b in zip(straight.get_weights(), resumed.get_weights()):
        np.testing.assert_allclose(a, b, atol=RESUME_TOLERANCE)


@keras_gpu
def test_keras_evaluate_and_predict_hand_back_cpu_numbers():
    model = lite0(tk)
    probabilities = tk.predict(model, VAL.images)
    assert isinstance(probabilities, np.ndarray) and probabilities.shape == (len(VAL), 4)
    scores = tk.evaluate(model, VAL)
    assert isinstance(scores["accuracy"], float) and isinstance(scores["loss"], float)
