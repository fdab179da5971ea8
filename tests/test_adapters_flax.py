"""Tests for the shared Model wrapper (adapters/_base.py) and the Flax adapter."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from flax import nnx

import xai_core
from xai_core.adapters import Model, ProbabilityOutputWarning, from_flax


def _no_warnings():
    ctx = warnings.catch_warnings()
    ctx.__enter__()
    warnings.simplefilter("error")
    return ctx


# Weights and data come from numpy (no jax.random compiles: keeps the tests fast).
_RNG = np.random.default_rng(0)
W = jnp.asarray(_RNG.normal(size=(4, 3)).astype(np.float32))
XS = jnp.asarray(_RNG.normal(size=(5, 4)).astype(np.float32))
TS = jnp.array([0, 2, 1, 1, 0])


def _fill_one(path, spec: jax.ShapeDtypeStruct) -> jax.Array:
    if jnp.issubdtype(spec.dtype, jax.dtypes.prng_key):
        return jax.random.key(0)
    if jnp.issubdtype(spec.dtype, jnp.integer):
        return jnp.zeros(spec.shape, spec.dtype)
    if "var" in jax.tree_util.keystr(path):  # a BatchNorm variance: positive
        return jnp.asarray((_RNG.random(spec.shape) + 0.5).astype(spec.dtype))
    return jnp.asarray((0.7 * _RNG.normal(size=spec.shape)).astype(spec.dtype))


def _fill(tree):
    """Random weights (and running statistics) for an abstract (eval_shape) pytree."""
    return jax.tree_util.tree_map_with_path(_fill_one, tree)


def _ref_grads(logits_ref, xs, ts) -> np.ndarray:
    """A Python loop of jax.grad(lambda x: logits_ref(x)[t]) (jitted per target: fast)."""
    grad = jax.jit(lambda x, t: jax.grad(lambda x: logits_ref(x)[t])(x), static_argnums=1)
    return np.stack([grad(x, int(t)) for x, t in zip(xs, ts)])


# ------------------------------------------------------------------ Model (plain JAX)

def test_model_cuts_softmax_and_scores() -> None:
    m = Model(lambda w, x: jax.nn.softmax(jnp.tanh(x @ w)), W)
    assert m.cut is None  # not traced yet
    x = XS[0]
    np.testing.assert_allclose(m.logits(x), jnp.tanh(x @ W), atol=1e-6)
    assert m.cut == "softmax"
    assert float(m.score(2)(x)) == pytest.approx(float(jnp.tanh(x @ W)[2]), abs=1e-6)
    assert m.params is W


def test_output_modes() -> None:
    x = XS[0]
    z = jnp.tanh(x @ W)
    probs = Model(lambda w, x: jax.nn.softmax(jnp.tanh(x @ w)), W, output="probs")
    np.testing.assert_allclose(probs.logits(x), jax.nn.softmax(z), atol=1e-6)
    logp = Model(lambda w, x: jnp.tanh(x @ w), W, output="log_probs")  # plain logits model
    np.testing.assert_allclose(logp.logits(x), jax.nn.log_softmax(z), atol=1e-6)
    sig = Model(lambda w, x: jax.nn.sigmoid(jnp.tanh(x @ w)), W, output="probs")
    np.testing.assert_allclose(sig.logits(x), jax.nn.sigmoid(z), atol=1e-6)
    assert sig.cut == "sigmoid"
    with pytest.raises(ValueError, match="output='prob'"):
        Model(lambda w, x: x @ w, W, output="prob")


def test_jit_vmap_grad_with_traced_targets() -> None:
    m = Model(lambda w, x: jax.nn.log_softmax(jnp.tanh(x @ w)), W)
    got = jax.jit(jax.vmap(lambda x, t: jax.grad(m.score(t))(x)))(XS, TS)
    np.testing.assert_allclose(got, _ref_grads(lambda x: jnp.tanh(x @ W), XS, TS), atol=1e-6)


def test_traced_target_out_of_range_is_nan_not_clamped() -> None:
    m = Model(lambda w, x: x @ w, W)
    scores = jax.jit(jax.vmap(lambda x, t: m.score(t)(x)))(XS[:2], jnp.array([1, 7]))
    assert np.isfinite(scores[0]) and np.isnan(scores[1])


def test_target_errors() -> None:
    m = Model(lambda w, x: x @ w, W)
    with pytest.raises(ValueError, match="out of range.*3 classes"):
        m.score(3)(XS[0])
    m.logits(XS[0])
    with pytest.raises(ValueError, match="out of range"):
        m.score(5)  # known after the first trace: fails at once
    with pytest.raises(ValueError, match="negative"):
        m.score(-1)
    with pytest.raises(TypeError, match="integer"):
        m.score(1.0)
    with pytest.raises(TypeError, match="integer"):
        m.score(True)
    assert float(m.score(np.int64(1))(XS[0])) == pytest.approx(float((XS[0] @ W)[1]), abs=1e-6)


def test_input_shape_errors() -> None:
    m = Model(lambda w, x: x @ w, W, input_shape=(4,))
    with pytest.raises(ValueError, match=r"expects one example of shape \(4,\).*got shape \(5,\)"):
        m.logits(jnp.ones(5))
    with pytest.raises(ValueError, match="batch of 5.*jax.vmap"):
        m.logits(XS)
    # without a declared shape: the failure to trace names the shape given and the ones that worked
    m2 = Model(lambda w, x: x @ w, W)
    m2.logits(XS[0])
    with pytest.raises(ValueError, match=r"shape \(5,\).*Shapes that worked: \(4,\)"):
        m2.logits(jnp.ones(5))


def test_apply_must_return_one_array() -> None:
    with pytest.raises(TypeError, match="one array"):
        Model(lambda w, x: (x @ w, x), W).logits(XS[0])
    with pytest.raises(TypeError, match="apply"):
        Model("not a function", W)


def test_score_needs_a_vector_of_classes() -> None:
    m = Model(lambda w, x: x @ w, W)
    with pytest.raises(ValueError, match="jax.vmap"):
        m.score(0)(XS)  # a batch passed by mistake: (5, 3) logits


def test_warns_when_output_still_looks_like_probabilities() -> None:
    def normalized(w, x):  # positive scores divided by their sum: nothing to cut
        s = jax.nn.softplus(x @ w)
        return s / s.sum()

    m = Model(normalized, W)
    with pytest.warns(ProbabilityOutputWarning, match="warn_probabilities=False"):
        m.logits(XS[0])
    assert m.cut is None
    ctx = _no_warnings()
    try:
        m.logits(XS[1])  # once per model
        Model(normalized, W, warn_probabilities=False).logits(XS[0])
        jax.jit(Model(normalized, W).logits)(XS[0])  # traced: no evidence, no warning
        Model(lambda w, x: jax.nn.softmax(x @ w), W).logits(XS[0])  # cut: logits, no warning
    finally:
        ctx.__exit__(None, None, None)


def test_with_params() -> None:
    m = Model(lambda w, x: jax.nn.softmax(x @ w), W)
    x = XS[0]
    before = m.logits(x)
    m2 = m.with_params(2 * W)
    assert m2.cut == "softmax" and m2.params is not m.params
    np.testing.assert_allclose(m2.logits(x), 2 * before, atol=1e-5)
    np.testing.assert_allclose(m.logits(x), before)  # the original is unchanged
    with pytest.raises(ValueError, match="structure"):
        m.with_params({"w": W})
    # works with traced params too (e.g. a randomization check inside jit)
    out = jax.jit(lambda w: m.with_params(w).logits(x))(3 * W)
    np.testing.assert_allclose(out, 3 * before, atol=1e-5)


# ------------------------------------------------------------------ Flax linen

class CNN(nn.Module):
    final_softmax: bool = True

    @nn.compact
    def __call__(self, x, train: bool = True):
        x = nn.Conv(4, (3, 3))(x)
        x = nn.BatchNorm(use_running_average=not train)(x)
        x = nn.relu(x).mean(axis=(1, 2))
        x = nn.Dense(3)(x)
        return nn.softmax(x) if self.final_softmax else x


@pytest.fixture(scope="module")
def linen_cnn():
    xs = jnp.asarray(_RNG.normal(size=(3, 6, 6, 2)).astype(np.float32))
    shapes = jax.eval_shape(lambda x: CNN().init(jax.random.key(0), x, train=False), xs)
    # random weights and non-trivial running statistics, so eval mode matters
    variables = _fill(shapes)

    @jax.jit
    def ref(x, variables=variables):
        return CNN(final_softmax=False).apply(variables, x[None], train=False)[0]

    return variables, xs, ref


def test_linen_cnn_with_batchnorm(linen_cnn) -> None:
    variables, xs, ref = linen_cnn
    m = from_flax(CNN(), variables, apply_kwargs={"train": False})
    np.testing.assert_allclose(m.logits(xs[0]), ref(xs[0]), atol=1e-5)
    assert m.cut == "softmax"
    assert m.params is variables
    probs = from_flax(CNN(), variables, output="probs", apply_kwargs={"train": False})
    np.testing.assert_allclose(probs.logits(xs[1]), jax.nn.softmax(ref(xs[1])), atol=1e-6)

    ts = jnp.array([2, 0, 1])
    got = jax.jit(jax.vmap(lambda x, t: jax.grad(m.score(t))(x)))(xs, ts)
    np.testing.assert_allclose(got, _ref_grads(ref, xs, ts), atol=1e-5)

    new = jax.tree.map(lambda a: a * 1.5, variables)
    m2 = m.with_params(new)
    assert not np.allclose(m2.logits(xs[0]), m.logits(xs[0]))
    np.testing.assert_allclose(m2.logits(xs[0]), ref(xs[0], new), atol=1e-5)


def test_linen_errors(linen_cnn) -> None:
    variables, xs, _ = linen_cnn
    m = from_flax(CNN(), variables, apply_kwargs={"train": False})
    with pytest.raises(ValueError, match=r"shape \(6, 6\)"):
        m.logits(xs[0, :, :, 0])  # channels missing
    with pytest.raises(TypeError, match="variables"):
        from_flax(CNN())
    with pytest.raises(TypeError, match="flax.linen.Module or flax.nnx.Module"):
        from_flax(lambda x: x, variables)
    dense = nn.Dense(3)
    dv = _fill(jax.eval_shape(lambda: dense.init(jax.random.key(0), jnp.ones((1, 4)))))
    m3 = from_flax(dense, dv, input_shape=(4,))
    with pytest.raises(ValueError, match=r"expects one example of shape \(4,\)"):
        m3.logits(jnp.ones(3))
    with pytest.raises(ValueError, match="out of range"):
        m3.score(3)(jnp.ones(4))


def _check_every_split(m, x) -> list[str]:
    z = m.logits(x)
    for layer in m.layers:
        head, tail = m.split(layer.name)
        a = head(x)
        assert a.shape == layer.shape
        np.testing.assert_allclose(tail(a), z, atol=1e-5, err_msg=layer.name)
    return [layer.name for layer in m.layers]


def test_linen_layers_are_module_paths_and_split(linen_cnn) -> None:
    variables, xs, _ = linen_cnn
    m = from_flax(CNN(), variables, apply_kwargs={"train": False})
    with pytest.raises(ValueError, match=r"not been traced yet.*model.logits\(x\) once"):
        m.layers
    m.logits(xs[0])
    assert _check_every_split(m, xs[0]) == ["Conv_0", "BatchNorm_0", "Dense_0"]
    assert m.layers[0].shape == (6, 6, 4)
    # the gradient at a layer, through the tail, equals the one through the model
    head, tail = m.split("Conv_0")
    g_layer = jax.grad(lambda a: tail(a)[1])(head(xs[0]))
    assert g_layer.shape == (6, 6, 4) and float(jnp.abs(g_layer).sum()) > 0


# ------------------------------------------------------------------ Flax nnx

class NNXNet(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.l1 = nnx.Linear(4, 8, rngs=rngs)
        self.bn = nnx.BatchNorm(8, rngs=rngs)
        self.drop = nnx.Dropout(0.5, rngs=rngs)
        self.l2 = nnx.Linear(8, 3, rngs=rngs)

    def __call__(self, x, final: bool = True):
        x = self.l2(self.drop(nnx.relu(self.bn(self.l1(x)))))
        return jax.nn.log_softmax(x) if final else x


def test_nnx_model() -> None:
    graphdef, state = nnx.split(nnx.eval_shape(lambda: NNXNet(nnx.Rngs(0))))
    net = nnx.merge(graphdef, _fill(state))  # incl. non-trivial running stats
    m = from_flax(net)
    assert not net.drop.deterministic  # the caller's module is left in train mode

    ref_net = nnx.clone(net)
    ref_net.eval()

    def ref(x):
        return ref_net(x[None], final=False)[0]

    np.testing.assert_allclose(m.logits(XS[0]), ref(XS[0]), atol=1e-5)
    assert m.cut == "log_softmax"
    assert isinstance(m.params, nnx.State)
    got = jax.jit(jax.vmap(lambda x, t: jax.grad(m.score(t))(x)))(XS, TS)
    np.testing.assert_allclose(got, _ref_grads(ref, XS, TS), atol=1e-5)

    m2 = m.with_params(jax.tree.map(lambda a: a * 2 if jnp.issubdtype(a.dtype, jnp.floating) else a, m.params))
    assert not np.allclose(m2.logits(XS[0]), m.logits(XS[0]))

    with pytest.raises(TypeError, match="carries its own state"):
        from_flax(net, {"params": {}})
    assert _check_every_split(m, XS[0]) == ["l1", "bn", "drop", "l2"]
    assert type(net.l1) is nnx.Linear  # the caller's submodules are not touched


def test_importing_adapters_does_not_import_flax() -> None:
    code = ("import sys, xai_core.adapters as a; a.Model; "
            "assert 'flax' not in sys.modules, 'flax imported'; "
            "assert callable(a.from_flax)")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.dirname(__file__)) + "/tests", timeout=120)
    assert res.returncode == 0, res.stderr


def test_a_module_of_several_inputs_takes_a_tuple_or_a_dict() -> None:
    class Two(nn.Module):
        @nn.compact
        def __call__(self, image: jax.Array, meta: jax.Array) -> jax.Array:
            return nn.Dense(3)(jnp.concatenate([image.reshape(image.shape[0], -1), meta], -1))

    net = Two()
    image, meta = jnp.ones((1, 2, 2)), jnp.ones((1, 3))
    variables = net.init(jax.random.key(0), image, meta)
    expected = net.apply(variables, image, meta)[0]
    m = from_flax(net, variables)
    np.testing.assert_allclose(m.logits((image[0], meta[0])), expected, rtol=1e-6)
    np.testing.assert_allclose(from_flax(net, variables).logits({"image": image[0], "meta": meta[0]}), expected,
                               rtol=1e-6)
    a = xai_core.attribute(m.score(1), (image[0], meta[0]), method="gradient")
    np.testing.assert_allclose(a[1], variables["params"]["Dense_0"]["kernel"][4:, 1], rtol=1e-6)
