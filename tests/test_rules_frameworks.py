"""One rule method, one map, whatever framework the model was written in: the same CNN as a
torch, a Keras and a Flax model with the same weights gets the same LRP / DeepLift / guided
backprop map (rules attach to the traced program's operations, not to framework classes)."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_core as xc

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")
nn = pytest.importorskip("flax.linen")

from rule_models import CNN  # noqa: E402

from xai_core.adapters import from_flax, from_keras, from_torch  # noqa: E402


def torch_cnn() -> torch.nn.Module:
    torch.manual_seed(0)
    return CNN().eval()


def weights(net: torch.nn.Module) -> list[tuple[np.ndarray, np.ndarray]]:
    """(kernel, bias) of each conv / dense of ``net``, in the channels-last layout."""
    out = []
    for m in net.modules():
        w = getattr(m, "weight", None)
        if w is None:
            continue
        w = w.detach().numpy()
        out.append((w.transpose(2, 3, 1, 0) if w.ndim == 4 else w.T, m.bias.detach().numpy()))
    return out


def keras_cnn(ws: list[tuple[np.ndarray, np.ndarray]]) -> object:
    L = keras.layers
    model = keras.Sequential([
        keras.Input((16, 16, 3)), L.Conv2D(6, 3, padding="same", name="conv1"), L.ReLU(), L.AveragePooling2D(2),
        L.Conv2D(8, 3, padding="same", name="conv2"), L.ReLU(), L.GlobalAveragePooling2D(), L.Dense(5, name="fc")])
    for layer, (k, b) in zip([model.get_layer(n) for n in ("conv1", "conv2", "fc")], ws):
        layer.set_weights([k, b])
    return model


class FlaxCNN(nn.Module):
    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = nn.avg_pool(nn.relu(nn.Conv(6, (3, 3), padding="SAME", name="conv1")(x)), (2, 2), (2, 2))
        x = nn.relu(nn.Conv(8, (3, 3), padding="SAME", name="conv2")(x))
        return nn.Dense(5, name="fc")(jnp.mean(x, axis=(1, 2)))


def flax_variables(ws: list[tuple[np.ndarray, np.ndarray]]) -> dict:
    names = ("conv1", "conv2", "fc")
    return {"params": {n: {"kernel": jnp.asarray(k), "bias": jnp.asarray(b)} for n, (k, b) in zip(names, ws)}}


METHODS = {
    "lrp epsilon_plus_flat": ("lrp", {"composite": "epsilon_plus_flat"}),
    "lrp epsilon_alpha2_beta1": ("lrp", {"composite": "epsilon_alpha2_beta1"}),
    "lrp epsilon_gamma_box": ("lrp", {"composite": "epsilon_gamma_box", "low": -3.0, "high": 3.0}),
    "deeplift": ("deeplift", {}),
    "guided_backprop": ("guided_backprop", {}),
}


@pytest.fixture(scope="module")
def three_frameworks() -> dict[str, object]:
    net = torch_cnn()
    ws = weights(net)
    x_nchw = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    return {"torch": from_torch(net, x_nchw), "keras": from_keras(keras_cnn(ws)),
            "flax": from_flax(FlaxCNN(), flax_variables(ws)), "x": x_nchw.numpy()[0]}


@pytest.mark.parametrize("label", sorted(METHODS))
def test_the_same_map_for_torch_keras_and_flax(label: str, three_frameworks: dict[str, object]) -> None:
    method, options = METHODS[label]
    x_chw = jnp.asarray(three_frameworks["x"])
    x_hwc = jnp.transpose(x_chw, (1, 2, 0))
    maps = {"torch": np.transpose(np.asarray(xc.attribute(three_frameworks["torch"].score(3), x_chw, method=method, **options)), (1, 2, 0))}
    for fw in ("keras", "flax"):
        maps[fw] = np.asarray(xc.attribute(three_frameworks[fw].score(3), x_hwc, method=method, **options))
    scale = np.abs(maps["torch"]).max()
    for fw in ("keras", "flax"):
        err = np.abs(maps[fw] - maps["torch"]).max() / scale
        print(f"\n{label}: {fw} vs torch {err:.1e}")
        assert err < 1e-4


CAM_LAYERS = {"torch": "3", "keras": "conv2", "flax": "conv2"}  # the second convolution, as each framework names it


@pytest.mark.parametrize("name", ["grad_cam", "hires_cam", "grad_cam_plus_plus", "xgrad_cam", "layer_cam", "eigen_cam",
                                  "score_cam", "ablation_cam"])
def test_the_same_cam_for_torch_keras_and_flax(name: str, three_frameworks: dict[str, object]) -> None:
    x_chw = jnp.asarray(three_frameworks["x"])
    x = {"torch": x_chw, "keras": jnp.transpose(x_chw, (1, 2, 0)), "flax": jnp.transpose(x_chw, (1, 2, 0))}
    build = getattr(xc.cam, name)
    for target in range(5):
        maps = {fw: np.asarray(build(three_frameworks[fw], CAM_LAYERS[fw])(x[fw], target)) for fw in x}
        scale = np.abs(maps["torch"]).max()
        for fw in ("keras", "flax"):
            np.testing.assert_allclose(maps[fw], maps["torch"], rtol=1e-4, atol=1e-4 * scale + 1e-7)
