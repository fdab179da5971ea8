"""Guided backprop and deconvnet on the traced program: defining properties, every way of writing
a ReLU, the same map for three ways of writing one torch model, Captum's GuidedBackprop /
Deconvolution on the same weights, and the errors (no ReLU, a ReLU out of the rules' reach)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_core as xc
from xai_core.rules import NoRuleError

W1 = jax.random.normal(jax.random.key(0), (5, 8))
W2 = jax.random.normal(jax.random.key(1), (8, 8))
W3 = jax.random.normal(jax.random.key(2), (8,))


def mlp(relu):
    return lambda x: relu(relu(x @ W1) @ W2) @ W3


RELUS = {"jax.nn.relu": jax.nn.relu, "maximum": lambda h: jnp.maximum(h, 0.0)}
X = jax.random.normal(jax.random.key(3), (5,))


def by_hand(x: jax.Array, guided: bool) -> jax.Array:
    """The guided / deconvnet backward pass of `mlp`, written out."""
    h1 = x @ W1
    h2 = jnp.maximum(h1, 0) @ W2
    g = W3
    g = jnp.maximum(g, 0) * ((h2 > 0) if guided else 1)
    g = W2 @ g
    g = jnp.maximum(g, 0) * ((h1 > 0) if guided else 1)
    return W1 @ g


@pytest.mark.parametrize("relu", ["jax.nn.relu", "maximum"])
def test_guided_backprop_and_deconvnet_equal_the_rule_written_out(relu: str) -> None:
    f = mlp(RELUS[relu])
    np.testing.assert_allclose(xc.guided_backprop(f)(X), by_hand(X, True), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(xc.deconvnet(f)(X), by_hand(X, False), rtol=1e-5, atol=1e-6)
    assert not np.allclose(xc.guided_backprop(f)(X), xc.gradient(f)(X))


def test_guided_backprop_never_passes_a_negative_signal_and_deconvnet_ignores_the_mask() -> None:
    h = jnp.array([2.0, -1.0, 0.5, -3.0])
    up = jnp.array([1.0, 2.0, -1.0, -2.0])
    f = lambda h: jnp.sum(jax.nn.relu(h) * up)  # noqa: E731
    np.testing.assert_array_equal(xc.guided_backprop(f)(h), [1.0, 0.0, 0.0, 0.0])
    np.testing.assert_array_equal(xc.deconvnet(f)(h), [1.0, 2.0, 0.0, 0.0])
    # Positive upstream everywhere: guided backprop is non-negative wherever the input is
    g = xc.guided_backprop(lambda h: jnp.sum(jax.nn.relu(h) * jnp.abs(up)))(h)
    assert bool(jnp.all(g >= 0))


def test_jit_vmap_with_a_traced_target_and_pytree_inputs() -> None:
    w = jax.random.normal(jax.random.key(4), (8, 3))
    logits = lambda x: jax.nn.relu(x["a"] @ W1 + x["b"]) @ w  # noqa: E731
    xs = {"a": jax.random.normal(jax.random.key(5), (4, 5)), "b": jax.random.normal(jax.random.key(6), (4, 8))}
    ts = jnp.array([0, 2, 1, 2])
    fn = lambda x, t: xc.attribute(lambda x: logits(x)[t], x, method="guided_backprop")  # noqa: E731
    batched = jax.jit(jax.vmap(fn))(xs, ts)
    for k in range(4):
        one = xc.guided_backprop(lambda x, t=int(ts[k]): logits(x)[t])(jax.tree.map(lambda a: a[k], xs))
        np.testing.assert_allclose(batched["a"][k], one["a"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(batched["b"][k], one["b"], rtol=1e-5, atol=1e-6)


def test_no_relu_and_a_relu_out_of_reach_are_errors() -> None:
    with pytest.raises(NoRuleError, match="no ReLU.*would be the plain gradient"):
        xc.guided_backprop(lambda x: jnp.sum(jnp.tanh(x)))(X)
    remat = jax.checkpoint(lambda x: jax.nn.relu(x @ W1))
    with pytest.raises(NoRuleError, match="inside a '(checkpoint|remat2?)' call"):
        xc.deconvnet(lambda x: jnp.sum(remat(x)))(X)


torch = pytest.importorskip("torch")
captum_attr = pytest.importorskip("captum.attr")

from lrp_refs import Logits  # noqa: E402
from torch_models import MODELS, build, inputs  # noqa: E402

from xai_core.adapters import from_torch  # noqa: E402



def rel(ours: object, theirs: object) -> float:
    ours, theirs = np.asarray(ours, np.float64), theirs.detach().double().numpy()
    return float(np.abs(ours - theirs).max() / np.abs(theirs).max())


@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize("method,captum", [("guided_backprop", "GuidedBackprop"), ("deconvnet", "Deconvolution")])
def test_equals_captum_on_module_relus(model: str, method: str, captum: str) -> None:
    net = build(model)
    m = from_torch(net, inputs(1))
    xs_t = inputs(2, seed=3)
    targets = [1, 4]
    ours = jax.jit(jax.vmap(lambda m, x, t: xc.attribute(m.score(t), x, method=method), in_axes=(None, 0, 0)))(
        m, jnp.asarray(xs_t.numpy()), jnp.array(targets))
    theirs = getattr(captum_attr, captum)(Logits(net)).attribute(xs_t, target=targets)
    err = rel(ours, theirs)
    print(f"\n{method} {model} vs Captum {captum}: {err:.1e}")
    if model == "functional":  # F.relu: Captum's hooks never see it, so Captum returns the plain gradient
        plain = captum_attr.Saliency(net.logits).attribute(xs_t, target=targets, abs=False)
        assert rel(theirs, plain) < 1e-6
        assert err > 1e-2
    else:
        assert err < 1e-4
