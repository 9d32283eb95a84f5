"""tlcourse.torch.fit / evaluate / predict on a tiny conv net and tiny learnable images."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from tlcourse.data.card import Split  # noqa: E402
from tlcourse.history import History  # noqa: E402
from tlcourse.torch.freezing import keep_frozen_layers_in_eval  # noqa: E402
from tlcourse.torch.train import evaluate, fit, lr_factor, predict  # noqa: E402

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


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


def tiny_net(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Dropout(0.1), nn.Linear(32, 4),
    )


def same_numbers(a: History, b: History) -> bool:
    """Equal rows apart from the wall-clock seconds."""
    strip = lambda h: [{k: v for k, v in row.items() if k != "seconds"} for row in h.rows]  # noqa: E731
    return strip(a) == strip(b)


def weights(model: nn.Module) -> dict:
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


def test_loss_falls_and_the_model_learns():
    model = tiny_net()
    history = fit(model, TRAIN, VAL, epochs=4, lr=1e-2, seed=0, progress=False)
    losses = history["loss"]
    assert len(history) == 4 and history["epoch"] == [1, 2, 3, 4]
    assert all(later < earlier for earlier, later in zip(losses, losses[1:]))
    assert history[-1]["val_accuracy"] > 0.8
    assert history.meta["framework"] == "torch" and not model.training


def test_frozen_parameter_does_not_move_even_with_weight_decay():
    model = tiny_net()
    first_conv, last_linear = model[0], model[-1]
    first_conv.weight.requires_grad_(False)
    frozen_before, head_before = first_conv.weight.clone(), last_linear.weight.clone()
    fit(model, TRAIN, epochs=1, optimizer="sgd", lr=0.05, weight_decay=0.1, progress=False)
    assert torch.equal(first_conv.weight, frozen_before)
    assert not torch.equal(last_linear.weight, head_before)


def test_frozen_batchnorm_stays_in_eval_and_keeps_its_statistics():
    model = tiny_net()
    frozen_bn, trained_bn = model[1], model[4]
    frozen_bn.requires_grad_(False)

    model.train()
    keep_frozen_layers_in_eval(model)
    assert not frozen_bn.training and trained_bn.training

    frozen_stats = (frozen_bn.running_mean.clone(), frozen_bn.running_var.clone())
    trained_mean = trained_bn.running_mean.clone()
    fit(model, TRAIN, VAL, epochs=1, lr=1e-2, progress=False)
    assert torch.equal(frozen_bn.running_mean, frozen_stats[0])
    assert torch.equal(frozen_bn.running_var, frozen_stats[1])
    assert frozen_bn.num_batches_tracked.item() == 0
    assert not torch.equal(trained_bn.running_mean, trained_mean)


def test_seeded_runs_repeat_exactly():
    runs = [fit(tiny_net(), TRAIN, VAL, epochs=2, lr=1e-2, seed=3, progress=False) for _ in range(2)]
    assert same_numbers(*runs)


def test_resume_reaches_the_same_numbers_as_an_uninterrupted_run(tmp_path):
    class Interrupted(Exception):
        pass

    def noisy(batches_before_interrupt=None):
        """A random augmentation (so random states must be restored too) that can pull the plug."""
        calls = iter(range(10**9))

        def augment(batch):
            if next(calls) == batches_before_interrupt:
                raise Interrupted
            return batch + 0.05 * torch.randn_like(batch)
        return augment

    settings = dict(epochs=3, lr=0.05, optimizer="sgd", nesterov=True, weight_decay=1e-3, schedule="cosine",
                    clip_grad_norm=1.0, seed=7, progress=False, stage="head")

    straight = tiny_net()
    straight_history = fit(straight, TRAIN, VAL, augment=noisy(), **settings)

    with pytest.raises(Interrupted):  # killed halfway through epoch 3 (6 batches an epoch)
        fit(tiny_net(), TRAIN, VAL, augment=noisy(15), checkpoint=tmp_path / "run.pt", **settings)
    resumed = tiny_net(seed=99)  # a fresh process would start from other weights: the checkpoint wins
    resumed_history = fit(resumed, TRAIN, VAL, augment=noisy(), checkpoint=tmp_path / "run.pt", resume=True,
                          **settings)

    assert resumed_history["epoch"] == [1, 2, 3]
    assert same_numbers(straight_history, resumed_history)
    for name, value in weights(straight).items():
        assert torch.equal(value, weights(resumed)[name]), name


def test_resume_without_a_checkpoint_starts_afresh(tmp_path):
    history = fit(tiny_net(), TRAIN, epochs=1, checkpoint=tmp_path / "none.pt", resume=True, progress=False)
    assert len(history) == 1 and (tmp_path / "none.pt").exists()


def test_early_stopping_stops_and_restores_the_best_weights():
    # Validation labels are shifted by one class: the better the model learns, the worse val_loss gets.
    contrary = Split(VAL.images, (VAL.labels + 1) % 4)
    model = tiny_net()
    history = fit(model, TRAIN, contrary, epochs=20, lr=1e-2, early_stopping=2, seed=0, progress=False)
    best = history.best("val_loss")
    assert len(history) < 20
    assert len(history) == best["epoch"] + 2
    assert history.meta["restored_epoch"] == best["epoch"]
    assert evaluate(model, contrary)["loss"] == pytest.approx(best["val_loss"], rel=1e-5)


def test_resuming_an_early_stopped_run_gives_back_its_best_weights(tmp_path):
    contrary = Split(VAL.images, (VAL.labels + 1) % 4)
    settings = dict(epochs=20, lr=1e-2, early_stopping=2, seed=0, progress=False, checkpoint=tmp_path / "run.pt")
    finished = tiny_net()
    history = fit(finished, TRAIN, contrary, **settings)
    again = tiny_net(seed=5)
    resumed = fit(again, TRAIN, contrary, resume=True, **settings)  # nothing left to train
    assert resumed.rows == history.rows and resumed.meta == history.meta
    for name, value in weights(finished).items():
        assert torch.equal(value, weights(again)[name]), name


def test_a_ready_made_optimizer_keeps_its_layerwise_learning_rates():
    model = tiny_net()
    head, body = list(model[-1].parameters()), [p for layer in model[:-1] for p in layer.parameters()]
    optimizer = torch.optim.SGD([{"params": head, "lr": 0.1}, {"params": body, "lr": 0.01}], momentum=0.9)
    history = fit(model, TRAIN, epochs=2, optimizer=optimizer, schedule="step", progress=False)
    assert [group["lr"] for group in optimizer.param_groups] == pytest.approx([0.01, 0.001])
    assert history["lr"] == pytest.approx([0.1, 0.01])


def net_without_batchnorm() -> nn.Sequential:
    # A bias that feeds BatchNorm gets a gradient of zero plus rounding noise, which Adam scales up
    # to full steps of random sign: two correct Adam implementations part ways there, so leave it out.
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2, padding=1),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 4))


@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_fits_fused_adam_takes_the_steps_of_pytorchs_plain_adam(weight_decay):
    fused = net_without_batchnorm()
    fit(fused, TRAIN, epochs=2, lr=1e-2, weight_decay=weight_decay, seed=0, progress=False)
    plain = net_without_batchnorm()
    kind = torch.optim.AdamW if weight_decay else torch.optim.Adam
    options = {"weight_decay": weight_decay} if weight_decay else {}
    fit(plain, TRAIN, epochs=2, optimizer=kind(plain.parameters(), lr=1e-2, foreach=False, **options),
        seed=0, progress=False)
    start, reference = weights(net_without_batchnorm()), weights(plain)
    for name, value in weights(fused).items():
        assert not torch.equal(value, start[name]), name
        assert torch.allclose(value, reference[name], atol=1e-5), name


def test_history_argument_continues_epochs_and_labels_stages():
    model = tiny_net()
    history = fit(model, TRAIN, epochs=2, stage="top", progress=False)
    model[0].requires_grad_(False)
    same = fit(model, TRAIN, epochs=1, stage="block2", history=history, progress=False)
    assert same is history
    assert history["epoch"] == [1, 2, 3] and history["stage"] == ["top", "top", "block2"]


def test_schedules_set_the_learning_rate_per_epoch():
    history = fit(tiny_net(), TRAIN, epochs=4, lr=0.1, optimizer="sgd", schedule="step", progress=False)
    assert history["lr"] == pytest.approx([0.1, 0.1, 0.01, 0.001])
    history = fit(tiny_net(), TRAIN, epochs=2, lr=0.1, schedule=lambda epoch: 1 / (epoch + 1), progress=False)
    assert history["lr"] == pytest.approx([0.1, 0.05])
    assert [lr_factor("cosine", e, 4) for e in range(4)] == pytest.approx([1, 0.853553, 0.5, 0.146447], abs=1e-6)


def test_gradient_clipping_bounds_each_update():
    model = tiny_net()
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    fit(model, TRAIN, epochs=1, lr=0.1, optimizer="sgd", momentum=0.0, clip_grad_norm=1e-3, batch_size=64,
        progress=False)
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    steps = 3
    assert (after - before).norm() <= 0.1 * 1e-3 * steps * 1.001


def test_evaluate_and_predict_agree():
    model = tiny_net()
    fit(model, TRAIN, epochs=2, lr=1e-2, progress=False)
    probabilities = predict(model, VAL.images, batch_size=20)
    assert probabilities.shape == (len(VAL), 4) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(1), 1, rtol=1e-5)
    scores = evaluate(model, (VAL.images, VAL.labels), batch_size=20)
    assert scores["accuracy"] == pytest.approx(np.mean(probabilities.argmax(1) == VAL.labels))
    picked = probabilities[np.arange(len(VAL)), VAL.labels]
    assert scores["loss"] == pytest.approx(-np.log(picked).mean(), rel=1e-4)


def test_bad_input_gets_an_error_that_names_the_fix():
    from tlcourse.data.card import Card, Dataset

    with pytest.raises(ValueError, match="channels-first"):
        fit(tiny_net(), (TRAIN.images.transpose(0, 3, 1, 2).copy(), TRAIN.labels), progress=False)
    with pytest.raises(ValueError, match="num_classes=6"):
        fit(tiny_net(), (TRAIN.images, np.where(TRAIN.labels == 0, 5, TRAIN.labels)), progress=False)
    with pytest.raises(ValueError, match="validation split"):
        fit(tiny_net(), TRAIN, early_stopping=2, progress=False)
    card = Card("t", "classification", ("a",), "none", "here", "tiny", "quick")
    with pytest.raises(TypeError, match="ds.train"):
        fit(tiny_net(), Dataset(TRAIN, VAL, VAL, ("a", "b", "c", "d"), card), progress=False)


@pytest.mark.gpu
@needs_cuda
def test_cuda_runs_mixed_precision_and_channels_last():
    seen = {}

    class Probe(nn.Module):
        def forward(self, x):
            if self.training:
                seen["autocast"] = torch.is_autocast_enabled("cuda")
                seen["channels_last"] = x.is_contiguous(memory_format=torch.channels_last)
                seen["device"] = x.device.type
            return x

    model = tiny_net()
    model.insert(0, Probe())
    model[2].requires_grad_(False)  # the first BatchNorm, frozen
    frozen_mean = model[2].running_mean.clone()
    history = fit(model, TRAIN, VAL, epochs=3, lr=1e-2, progress=False)
    assert seen == {"autocast": True, "channels_last": True, "device": "cuda"}
    assert history["loss"][-1] < history["loss"][0]
    assert torch.equal(model[2].running_mean.cpu(), frozen_mean)
    assert predict(model, VAL.images).shape == (len(VAL), 4)
