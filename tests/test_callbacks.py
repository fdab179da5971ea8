"""Explain while training: the Keras callback on tf-explain's tutorial model (event file read
back with TensorBoard's own reader, each image the logit's gradient at that epoch's weights),
no recompilation across epochs, Flax / optax and PyTorch loops, writers, and the errors."""

from __future__ import annotations

import io
import os
import re

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import xai_core as xc  # noqa: E402
from xai_core import callbacks  # noqa: E402

keras = pytest.importorskip("keras")
event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def digits(n: int) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits, upsampled to 16x16x1 in [0, 1]."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return np.kron(d.images[:n] / 16.0, np.ones((2, 2)))[..., None].astype(np.float32), d.target[:n]


def tutorial_cnn() -> keras.Model:
    """tf-explain's tutorial model: Conv2D 32/64/128 ReLU, Flatten, Dense 128 ReLU, Dense 10 softmax."""
    L = keras.layers
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((16, 16, 1)), L.Conv2D(32, 3, activation="relu"),
                              L.Conv2D(64, 3, activation="relu"), L.Conv2D(128, 3, activation="relu"), L.Flatten(),
                              L.Dense(128, activation="relu"), L.Dense(10, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    return model


class Snapshots(keras.callbacks.Callback):
    """The weights at the end of every epoch (to recompute the maps directly)."""

    def __init__(self) -> None:
        super().__init__()
        self.weights: list[tuple[list, list]] = []

    def on_epoch_end(self, epoch: int, logs: object = None) -> None:
        self.weights.append(([np.asarray(v.value) for v in self.model.trainable_variables],
                             [np.asarray(v.value) for v in self.model.non_trainable_variables]))


def read_images(log_dir: str) -> dict[str, list[tuple[int, np.ndarray]]]:
    from PIL import Image

    acc = event_accumulator.EventAccumulator(log_dir, size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    return {tag: [(e.step, np.asarray(Image.open(io.BytesIO(e.encoded_image_string)))) for e in acc.Images(tag)]
            for tag in acc.Tags()["images"]}


def test_tf_explain_tutorial_with_vanilla_gradients_callback(tmp_path) -> None:
    from xai_core.adapters import from_keras

    x, y = digits(512)
    model = tutorial_cnn()
    snaps = Snapshots()
    cb = callbacks.VanillaGradientsCallback(validation_data=(x[:4], y[:4]), class_index=0, output_dir=str(tmp_path))
    model.fit(x, y, epochs=2, batch_size=64, callbacks=[snaps, cb], verbose=0)
    assert cb.explainer.compiled() == 1  # one program for both epochs: the weights are arguments
    images = read_images(str(tmp_path))
    assert sorted(images) == [f"attribution/gradient/{i}" for i in range(4)]
    m = from_keras(model)
    for epoch, weights in enumerate(snaps.weights):
        me = m.with_params(weights)
        for i in range(4):
            step, got = images[f"attribution/gradient/{i}"][epoch]
            assert step == epoch
            grad = jax.grad(lambda v: me.logits(v)[0])(jnp.asarray(x[i]))  # the logit's, not the probability's
            want = callbacks.picture(x[i], np.asarray(grad), channels_first=False)
            assert got.shape == want.shape
            assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
            prob = jax.grad(lambda v: jax.nn.softmax(me.logits(v))[0])(jnp.asarray(x[i]))
            assert np.abs(callbacks.picture(x[i], np.asarray(prob), False).astype(int) - got.astype(int)).max() > 1


def test_ig_gap_localization_png_writer_and_every_n_epochs(tmp_path) -> None:
    x, y = digits(128)
    model = tutorial_cnn()
    masks = x[:3, ..., 0] > 0.3
    cb = callbacks.AttributionCallback((x[:3], y[:3]), method="ig", log_dir=tmp_path, writer="png", every_n_epochs=2,
                                       masks=masks, steps=8)
    model.fit(x, y, epochs=3, batch_size=64, callbacks=[cb], verbose=0)
    pngs = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.png"))
    assert pngs == [f"attribution/integrated_gradients/{i}/step_000001.png" for i in range(3)]
    rows = (tmp_path / "scalars.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows] == ["attribution/integrated_gradients/completeness_gap",
                                               "attribution/integrated_gradients/localization"]
    assert 0 <= float(rows[1].split(",")[2]) <= 1


def test_bad_validation_data_and_unknown_methods_fail_at_construction(tmp_path) -> None:
    x, y = digits(8)
    with pytest.raises(ValueError, match="unknown method 'gradiant'.*Did you mean 'gradient'"):
        callbacks.AttributionCallback((x, y), method="gradiant", log_dir=tmp_path)
    with pytest.raises(ValueError, match="validation_data must be a tuple"):
        callbacks.AttributionCallback(x, log_dir=tmp_path)
    with pytest.raises(ValueError, match="8 examples but labels of shape"):
        callbacks.AttributionCallback((x, y[:3]), log_dir=tmp_path)
    with pytest.raises(ValueError, match="targets must be 'label', 'predicted'"):
        callbacks.AttributionCallback((x, y), targets="labels", log_dir=tmp_path)
    cb = callbacks.AttributionCallback((np.zeros((2, 8, 8, 1), np.float32), y[:2]), log_dir=tmp_path)
    with pytest.raises(ValueError, match=r"validation images have shape \(8, 8, 1\), the model takes \(16, 16, 1\)"):
        tutorial_cnn().fit(x, y, epochs=1, callbacks=[cb], verbose=0)


def tiny_classifier(classes: int = 10) -> keras.Model:
    """A 4x4x1 -> ``classes`` softmax classifier, quick to fit."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(classes, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy")
    return model


@pytest.mark.parametrize("targets, says", [
    (dict(class_index=10), "VanillaGradientsCallback: class_index=10 is out of range for a model with 10 classes: "
                           "use 0..9."),
    (dict(class_index=-1), "VanillaGradientsCallback: class_index=-1 is out of range"),
    (dict(class_index=np.array([0, 3, 12, 1])), "class_index=12 (example 2) is out of range"),
    (dict(labels=np.array([0, 1, 10, 2])), "VanillaGradientsCallback: labels=10 (example 2) is out of range"),
])
def test_a_class_out_of_range_fails_when_training_begins(tmp_path, targets, says) -> None:
    """Not an epoch of empty maps (a NaN score, a zero gradient) and no error."""
    x, y = np.random.default_rng(0).uniform(size=(4, 4, 4, 1)).astype(np.float32), np.array([0, 1, 2, 3])
    labels = targets.pop("labels", y)
    cb = callbacks.VanillaGradientsCallback((x, labels), output_dir=str(tmp_path), writer="png", **targets)
    with pytest.raises(ValueError, match=re.escape(says)):
        tiny_classifier().fit(x, y, epochs=1, callbacks=[cb], verbose=0)
    assert not list(tmp_path.rglob("*.png"))


def test_log_attributions_checks_the_class_range(tmp_path) -> None:
    from xai_core.adapters import from_keras

    m, x = from_keras(tiny_classifier()), np.zeros((2, 4, 4, 1), np.float32)
    writer = callbacks.PNGWriter(tmp_path)
    with pytest.raises(ValueError, match=re.escape("log_attributions: targets=10 is out of range for a model with "
                                                   "10 classes: use 0..9.")):
        callbacks.log_attributions(writer, 0, m, x, 10)
    with pytest.raises(ValueError, match=re.escape("targets=-1 (example 1) is out of range")):
        callbacks.log_attributions(writer, 0, m, x, [9, -1])
    assert callbacks.log_attributions(writer, 0, m, x, [9, 0]).shape == x.shape


def test_a_flax_optax_loop_logs_the_maps_of_its_steps(tmp_path) -> None:
    import flax.linen as nn
    import optax

    from xai_core.adapters import from_flax

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.relu(nn.Conv(8, (3, 3))(x))
            return nn.Dense(10)(x.mean(axis=(1, 2)))

    x, y = digits(64)
    net = Net()
    params = net.init(jax.random.key(0), x[:1])
    m = from_flax(net, params)
    opt = optax.adam(1e-2)
    state = opt.init(params)
    loss = lambda p: optax.softmax_cross_entropy_with_integer_labels(net.apply(p, x), y).mean()  # noqa: E731
    writer = callbacks.PNGWriter(tmp_path)
    for step in range(3):
        grads = jax.grad(loss)(params)
        updates, state = opt.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        maps = callbacks.log_attributions(writer, step, m, x[:4], y[:4], method="gradient_x_input", params=params)
        direct = jax.vmap(lambda v, t: xc.attribute(m.with_params(params).score(t), v, method="gradient_x_input"))(
            jnp.asarray(x[:4]), jnp.asarray(y[:4]))
        np.testing.assert_allclose(maps, direct, rtol=1e-5, atol=1e-7)
    writer.close()
    assert len(list(tmp_path.rglob("*.png"))) == 12
    assert callbacks.explain._EXPLAINERS[("gradient_x_input", "[]")].compiled() == 1


def test_a_pytorch_loop_logs_the_maps_of_its_steps(tmp_path) -> None:
    torch = pytest.importorskip("torch")
    from xai_core.adapters import from_torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten(), torch.nn.Linear(8, 10))
    x, y = digits(64)
    xt, yt = torch.from_numpy(np.moveaxis(x, -1, 1).copy()), torch.from_numpy(y)
    m = from_torch(net, xt[:1])
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    writer = callbacks.PNGWriter(tmp_path)
    explainer = callbacks.Explainer("integrated_gradients", steps=8)
    for step in range(3):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(xt), yt).backward()
        opt.step()
        maps = callbacks.log_attributions(writer, step, m, xt[:2].numpy(), 3, params=net, explainer=explainer)
        fresh = from_torch(net, xt[:1])  # converted again with this step's weights: the reference
        direct = jax.vmap(lambda v: xc.attribute(fresh.score(3), v, method="ig", steps=8))(jnp.asarray(xt[:2].numpy()))
        np.testing.assert_allclose(maps, direct, rtol=1e-4, atol=1e-6)
    writer.close()
    assert explainer.compiled() == 1
    assert len(list(tmp_path.rglob("*.png"))) == 6


def test_tensorboard_renders_the_attribution_images_in_a_browser(tmp_path, browser) -> None:
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    from xai_core.adapters import Model

    w = jax.random.normal(jax.random.key(0), (16 * 16, 3))
    m = Model(lambda p, v: v.reshape(-1) @ p, w)
    x, _ = digits(3)
    writer = callbacks.TensorBoardWriter(tmp_path / "logs")
    for step in range(2):
        callbacks.log_attributions(writer, step, m, x, [0, 1, 2], method="gradient")
    writer.close()

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", str(tmp_path / "logs"),
                               "--host", "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(120):
            try:
                tags = urllib.request.urlopen(f"{url}/data/plugin/images/tags", timeout=2).read().decode()
                if "attribution/gradient/2" in tags:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        else:
            raise AssertionError("TensorBoard did not serve the images")
        page = browser.new_page()
        page.goto(f"{url}/#images", wait_until="networkidle")
        images = page.locator("img")  # Playwright's CSS locators pierce TensorBoard's shadow roots
        sizes: list = []
        for _ in range(120):
            sizes = images.evaluate_all("els => els.map(e => [e.complete, e.naturalWidth, e.naturalHeight, e.src])")
            if sum(1 for done, w, h, _ in sizes if done and w > 0 and h > 0) >= 3:
                break
            time.sleep(0.5)
        page.screenshot(path=str(tmp_path / "tensorboard.png"), full_page=True)
        page.close()
        drawn = [(w, h) for done, w, h, src in sizes if done and w > 0 and "individualImage" in src]
        print(f"\nTensorBoard in headless Chromium drew {len(drawn)} attribution images, sizes {sorted(set(drawn))}")
        assert len(drawn) >= 3, sizes
        assert all((w, h) == (32, 16) for w, h in drawn)  # the 16x16 input beside its 16x16 map
        assert (tmp_path / "tensorboard.png").stat().st_size > 0
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_grad_cam_and_activations_callbacks(tmp_path) -> None:
    from xai_core import viz
    from xai_core.adapters import from_keras

    x, y = digits(128)
    model = tutorial_cnn()
    layer = model.layers[2].name  # the third Conv2D (128 channels, 10x10)
    snaps = Snapshots()
    cams = callbacks.GradCAMCallback(validation_data=(x[:2], y[:2]), class_index=0, layer_name=layer,
                                     output_dir=str(tmp_path / "cam"))
    acts = callbacks.ActivationsVisualizationCallback(validation_data=(x[:2], y[:2]), layers_name=[layer],
                                                      output_dir=str(tmp_path / "acts"))
    model.fit(x, y, epochs=2, batch_size=64, callbacks=[snaps, cams, acts], verbose=0)
    assert cams.explainer.compiled() == 1
    m = from_keras(model).with_params(snaps.weights[-1])
    cam_images, act_images = read_images(str(tmp_path / "cam")), read_images(str(tmp_path / "acts"))
    for i in range(2):
        heat = xc.cam.grad_cam(m, layer)(jnp.asarray(x[i]), 0)
        want = callbacks.picture(x[i], np.asarray(heat), channels_first=False)
        step, got = cam_images[f"attribution/grad_cam/{i}"][-1]
        assert step == 1 and np.abs(got.astype(int) - want.astype(int)).max() <= 1
        grid = viz.activation_grid(np.asarray(xc.layer.activation(m, layer)(jnp.asarray(x[i]))))
        step, got = act_images[f"activations/{layer}/{i}"][-1]
        assert step == 1 and np.abs(got[..., 0].astype(int) - grid.astype(int)).max() <= 1
    with pytest.raises(ValueError, match="a CAM needs the layer"):
        callbacks.AttributionCallback((x[:2], y[:2]), method="grad_cam", log_dir=tmp_path)


def test_other_names_do_not_import_keras() -> None:
    import subprocess
    import sys

    code = ("import sys, inspect, xai_core.callbacks as c; inspect.unwrap(c); "
            "assert not hasattr(c, '__wrapped__'); assert 'keras' not in sys.modules; "
            "from xai_core.callbacks import keras as k; assert sorted(k.__all__) == sorted(c.KERAS_CALLBACKS)")
    subprocess.run([sys.executable, "-c", code], check=True)
