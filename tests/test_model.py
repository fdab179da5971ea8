"""`Model` as a pytree of its weights (weights are arguments of compiled programs, new weights of
the same shapes reuse them) and `Model` of several inputs (a pytree example)."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_core as xc
from xai_core import graph
from xai_core.adapters import Model


def mlp() -> Model:
    rng = np.random.default_rng(0)
    params = {"w1": jnp.asarray(rng.normal(size=(8, 64)), jnp.float32),
              "w2": jnp.asarray(rng.normal(size=(64, 3)), jnp.float32)}
    return Model(lambda p, x: jax.nn.softmax(jnp.tanh(x @ p["w1"]) @ p["w2"]), params, name="mlp")


def ig_batch(m: Model, xs: jax.Array, ts: jax.Array) -> jax.Array:
    return jax.vmap(lambda x, t: xc.attribute(m.score(t), x, method="ig", steps=8))(xs, ts)


XS = jax.random.normal(jax.random.key(0), (4, 8))
TS = jnp.array([0, 1, 2, 1])


def test_a_model_is_a_pytree_of_its_weights() -> None:
    m = mlp()
    assert [a.shape for a in jax.tree.leaves(m)] == [a.shape for a in jax.tree.leaves(m.params)]
    doubled = jax.tree.map(lambda a: 2 * a, m)
    assert isinstance(doubled, Model) and doubled.name == "mlp"
    np.testing.assert_allclose(doubled.logits(XS[0]), m.with_params(jax.tree.map(lambda a: 2 * a, m.params)).logits(XS[0]))


def test_jit_takes_the_weights_as_arguments_and_new_weights_do_not_recompile() -> None:
    m = mlp()
    traced = []

    def counted(m: Model, xs: jax.Array, ts: jax.Array) -> jax.Array:
        traced.append(1)  # runs once per trace, so once per compilation
        return ig_batch(m, xs, ts)

    explain = jax.jit(counted)
    first = explain(m, XS, TS)
    new = m.with_params(jax.tree.map(lambda a: a * 0.5 + 0.1, m.params))
    second = explain(new, XS, TS)
    # one trace and compilation for both sets of weights. (Counted in Python: the C++ dispatch
    # cache's private _cache_size() read 0 in one long CI worker, where its fast path was not taken.)
    assert len(traced) == 1
    np.testing.assert_allclose(first, ig_batch(m, XS, TS), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(second, ig_batch(new, XS, TS), rtol=1e-5, atol=1e-6)
    assert not np.allclose(first, second)
    # As arguments the weights are parameters of the program; closed over, they are constants in it.
    constant = re.compile(r"constant dense<[^>]*> : tensor<8x64xf32>")
    as_argument = explain.lower(m, XS, TS).as_text()
    closed = jax.jit(lambda xs, ts: ig_batch(m, xs, ts)).lower(XS, TS).as_text()
    assert "tensor<8x64xf32>" in as_argument and not constant.search(as_argument)
    assert constant.search(closed)


def test_weights_of_other_shapes_make_a_new_model() -> None:
    m = mlp()
    wider = m.with_params({"w1": jnp.ones((8, 16)), "w2": jnp.ones((16, 3))})
    assert jax.tree.structure(wider) != jax.tree.structure(m)
    assert wider.logits(XS[0]).shape == (3,)


def model_of_two_inputs() -> Model:
    def apply(p: jax.Array, x: dict) -> jax.Array:
        return graph.mark(jnp.tanh(x["image"].reshape(-1) @ p), "hidden") + x["meta"].sum()
    return Model(apply, jnp.ones((6, 2)) * 0.1, input_shape={"image": (2, 3), "meta": (None,)})


def test_a_model_of_several_inputs() -> None:
    m = model_of_two_inputs()
    x = {"image": jnp.arange(6.0).reshape(2, 3) / 6, "meta": jnp.array([1.0, 2.0])}
    z = m.logits(x)
    assert z.shape == (2,)
    a = xc.attribute(m.score(1), x, method="ig", steps=16)
    assert jax.tree.map(jnp.shape, a) == {"image": (2, 3), "meta": (2,)}
    head, tail = m.split("hidden")
    np.testing.assert_allclose(tail(head(x), x), z, rtol=1e-6)
    with pytest.raises(ValueError, match="also reads the input directly"):
        tail(head(x))
    with pytest.raises(ValueError, match=r"expects one example shaped \{image: \(2, 3\), meta: \(\*,\)\}"):
        m.logits({"image": jnp.ones((3, 2)), "meta": jnp.ones(2)})
    with pytest.raises(ValueError, match="expects one example shaped"):
        m.logits(jnp.ones((2, 3)))
