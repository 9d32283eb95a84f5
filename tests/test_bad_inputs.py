"""Bad images given to predict and fit, in both frameworks: each error names its fix."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
import tlcourse.torch as tt  # noqa: E402  (torch before TensorFlow: see tlcourse/_coexist.py)
import tlcourse.keras as tk  # noqa: E402
import keras  # noqa: E402

GOOD = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
LABELS = np.array([0, 1, 0, 1])
CASES = {  # name -> (images, the words of the fix)
    "RGBA": (np.concatenate([GOOD, GOOD[..., :1]], axis=-1), "images[..., :3]"),
    "grey without a channel axis": (GOOD[..., 0], "np.repeat(images[..., None], 3, axis=-1)"),
    "grey with one channel": (GOOD[..., :1], "np.repeat(images, 3, axis=-1)"),
    "one image": (GOOD[0], "images[None]"),
    "floats in [0, 1]": (GOOD / 255.0, "(images * 255).round().astype('uint8')"),
    "channels first": (GOOD.transpose(0, 3, 1, 2), "images.transpose(0, 2, 3, 1)"),
}


def torch_model():
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                               torch.nn.Linear(4, 2))


def keras_model():
    inputs = keras.Input((None, None, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inputs))
    return keras.Model(inputs, keras.layers.Dense(2)(pooled))


FRAMEWORKS = {"torch": (tt, torch_model), "keras": (tk, keras_model)}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("call", ["predict", "fit"])
def test_a_bad_batch_gets_an_error_that_names_the_fix(call, framework, case):
    fw, build = FRAMEWORKS[framework]
    images, fix = CASES[case]
    with pytest.raises((TypeError, ValueError)) as raised:
        if call == "predict":
            fw.predict(build(), images)
        else:
            fw.fit(build(), (images, LABELS[: len(images)] if images.ndim == 4 else LABELS[:1]), epochs=1, progress=False)
    message = str(raised.value)
    assert fix in message, message
    assert "images images" not in message


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_the_good_batch_passes(framework):
    fw, build = FRAMEWORKS[framework]
    model = build()
    fw.fit(model, (GOOD, LABELS), epochs=1, progress=False)
    assert fw.predict(model, GOOD).shape == (4, 2)
