"""Models of several inputs through the adapters: a two-input torch module and Keras model, IG per
input against Captum's tuple inputs on the same weights, completeness over all inputs together,
and Keras text models (Embedding -> pooling -> Dense softmax) against Captum's LayerIntegratedGradients."""

from __future__ import annotations

import os

import pytest

torch = pytest.importorskip("torch")
captum_attr = pytest.importorskip("captum.attr")
os.environ.setdefault("KERAS_BACKEND", "jax")
keras = pytest.importorskip("keras")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import xai_core as xc  # noqa: E402
from xai_core.adapters import TextModel, from_keras, from_torch  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients")
L = keras.layers
TARGETS = [0, 2]


class TwoInputs(torch.nn.Module):
    """forward(image, meta): a conv branch and a dense branch, joined; softmax at the end.
    Smooth (softplus), so IG converges fast enough to test completeness exactly."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(2, 4, 3, padding=1)
        self.meta = torch.nn.Linear(3, 4)
        self.head = torch.nn.Linear(8, 3)

    def logits(self, image: torch.Tensor, meta: torch.Tensor) -> torch.Tensor:
        a = torch.nn.functional.softplus(self.conv(image)).mean((2, 3))
        return self.head(torch.cat([a, torch.tanh(self.meta(meta))], 1))

    def forward(self, image: torch.Tensor, meta: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits(image, meta), 1)


def rel(ours: object, theirs: torch.Tensor) -> float:
    ours, theirs = np.asarray(ours, np.float64), theirs.detach().double().numpy()
    return float(np.abs(ours - theirs).max() / np.abs(theirs).max())


def ig_batch(m, xs, options):
    return jax.jit(jax.vmap(lambda m, x, t: xc.attribute(m.score(t), x, method="ig", **options),
                            in_axes=(None, 0, 0)))(m, xs, jnp.array(TARGETS))


def test_a_two_input_torch_module_matches_captum_per_input() -> None:
    net = TwoInputs().eval()
    gen = torch.Generator().manual_seed(3)
    image, meta = torch.rand(2, 2, 6, 6, generator=gen), torch.rand(2, 3, generator=gen)
    m = from_torch(net, (image[:1], meta[:1]))
    assert m.input_shape == ((2, 6, 6), (3,)) and m.cut == "softmax"
    xs = (jnp.asarray(image.numpy()), jnp.asarray(meta.numpy()))
    np.testing.assert_allclose(jax.vmap(m.logits)(xs), net.logits(image, meta).detach().numpy(), rtol=1e-5, atol=1e-6)
    theirs = captum_attr.IntegratedGradients(net.logits).attribute(
        (image, meta), baselines=(image * 0, meta * 0 + 0.5), target=TARGETS, n_steps=20, method="gausslegendre")
    ours = ig_batch(m, xs, {"steps": 20, "rule": "gauss_legendre", "baseline": (0.0, 0.5)})
    assert isinstance(ours, tuple) and ours[0].shape == (2, 2, 6, 6) and ours[1].shape == (2, 3)
    for k in range(2):
        err = rel(ours[k], theirs[k])
        print(f"\nIG torch input {k}: {err:.1e}")
        assert err < 1e-4
    with pytest.raises(ValueError, match=r"expects one example shaped \(\(2, 6, 6\), \(3,\)\)"):
        m.logits(xs[0][0])


def test_completeness_over_every_input_of_a_torch_model(x64: None) -> None:
    net = TwoInputs().double().eval()
    m = from_torch(net, (torch.zeros(1, 2, 6, 6, dtype=torch.float64), torch.zeros(1, 3, dtype=torch.float64)))
    x = (jax.random.uniform(jax.random.key(0), (2, 6, 6), jnp.float64), jnp.array([0.3, -0.2, 0.9]))
    a = xc.attribute(m.score(1), x, method="ig", steps=128, rule="gauss_legendre")
    change = m.score(1)(x) - m.score(1)(jax.tree.map(jnp.zeros_like, x))
    assert abs(float(xc.completeness_gap(m.score(1), x, a))) < 1e-6 * abs(float(change))
    assert abs(float(a[1].sum() - change)) > 1e-4  # one input alone is not the whole change


def keras_two_inputs():
    keras.utils.set_random_seed(0)
    a, b = keras.Input((4,), name="a"), keras.Input((3,), name="b")
    h = L.Dense(8, activation="tanh", name="hidden")(L.Concatenate(name="join")([a, b]))
    return keras.Model([a, b], L.Dense(3, activation="softmax", name="out")(h))


def torch_twin_of(net) -> torch.nn.Module:
    """The same two-layer network in torch, with Keras's weights (logits, no softmax)."""
    hidden, out = net.get_layer("hidden"), net.get_layer("out")
    twin = torch.nn.Sequential(torch.nn.Linear(7, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).double()
    with torch.no_grad():
        for lin, layer in ((twin[0], hidden), (twin[2], out)):
            lin.weight.copy_(torch.tensor(np.asarray(layer.kernel).T))
            lin.bias.copy_(torch.tensor(np.asarray(layer.bias)))
    return twin


def test_a_two_input_keras_model_matches_captum_per_input() -> None:
    net = keras_two_inputs()
    m = from_keras(net)
    assert m.input_shape == ((4,), (3,)) and m.cut == "softmax"
    twin = torch_twin_of(net)
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 4)), rng.normal(size=(2, 3))
    theirs = captum_attr.IntegratedGradients(lambda a, b: twin(torch.cat([a, b], 1))).attribute(
        (torch.tensor(a), torch.tensor(b)), target=TARGETS, n_steps=20, method="gausslegendre")
    ours = ig_batch(m, (jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)),
                    {"steps": 20, "rule": "gauss_legendre"})
    for k in range(2):
        err = rel(ours[k], theirs[k])
        print(f"\nIG keras input {k}: {err:.1e}")
        assert err < 1e-4


def keras_text(mask_zero: bool):
    keras.utils.set_random_seed(1)
    return keras.Sequential([
        keras.Input((None,), dtype="int32"), L.Embedding(50, 8, mask_zero=mask_zero, name="emb"),
        L.GlobalAveragePooling1D(name="pool"), L.Dense(3, activation="softmax", name="fc")])


def test_a_keras_text_model_matches_captum_layer_integrated_gradients() -> None:
    net = keras_text(mask_zero=True)
    m = from_keras(net)
    assert isinstance(m, TextModel) and m.embedding == "emb" and m.cut == "softmax"
    ids = m.pad([[5, 9, 14, 3], [7, 21]])  # padding with 0, which mask_zero masks
    table, fc = np.asarray(net.get_layer("emb").embeddings), net.get_layer("fc")

    class Twin(torch.nn.Module):  # masked mean over tokens, then the dense layer's logits
        def __init__(self) -> None:
            super().__init__()
            self.emb = torch.nn.Embedding.from_pretrained(torch.tensor(table, dtype=torch.float64))
            self.fc = torch.nn.Linear(8, 3).double()
            with torch.no_grad():
                self.fc.weight.copy_(torch.tensor(np.asarray(fc.kernel).T))
                self.fc.bias.copy_(torch.tensor(np.asarray(fc.bias)))

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            keep = (ids != 0).unsqueeze(-1).double()
            return self.fc((self.emb(ids) * keep).sum(1) / keep.sum(1))

    twin = Twin()
    ids_t = torch.tensor(np.asarray(ids), dtype=torch.long)
    np.testing.assert_allclose(jax.vmap(lambda i: m.logits(m.inputs(i)))(ids), twin(ids_t).detach().numpy(),
                               rtol=1e-5, atol=1e-6)
    reference = torch.where(ids_t == 0, ids_t, torch.full_like(ids_t, 1))
    theirs = captum_attr.LayerIntegratedGradients(twin, twin.emb).attribute(
        ids_t, baselines=reference, target=TARGETS, n_steps=16, method="gausslegendre")

    def one(m, i, t):
        x = m.inputs(i)
        return xc.attribute(m.score(t), x, method="ig", baseline=m.baseline(x, token=1), steps=16,
                            rule="gauss_legendre")["embeddings"]

    ours = jax.jit(jax.vmap(one, in_axes=(None, 0, 0)))(m, ids, jnp.array(TARGETS))
    err = rel(ours, theirs)
    print(f"\nLayerIG keras text: {err:.1e}")
    assert err < 1e-4
    np.testing.assert_array_equal(ours[1, 2:], 0.0)  # padding
    other = m.pad([[5, 9, 14, 3, 8, 8, 2]])  # another length: traced anew, same model
    assert jax.vmap(lambda i: m.logits(m.inputs(i)))(other).shape == (1, 3)


def test_keras_text_model_errors() -> None:
    keras.utils.set_random_seed(2)
    ids = keras.Input((5,), dtype="int32")
    two = keras.Model(ids, L.Dense(2)(L.GlobalAveragePooling1D()(L.Add()([L.Embedding(9, 4, name="e1")(ids),
                                                                         L.Embedding(9, 4, name="e2")(ids)]))))
    with pytest.raises(ValueError, match="several, so name one with embedding='...': e1, e2"):
        from_keras(two)
    assert from_keras(two, embedding="e2").embedding == "e2"
    plain = keras.Sequential([keras.Input((5,), dtype="int32"), L.Dense(2)])
    with pytest.raises(TypeError, match="takes int32 inputs.*no Embedding layer"):
        from_keras(plain)
