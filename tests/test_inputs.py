"""Several inputs: every method on a pytree `x` (structure, dtype, values equal to one concatenated
input), inputs marked `xc.fixed`, completeness over all inputs, jit/vmap, and the errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_core as xc
from conftest import mlp_logits

LOGITS = mlp_logits(seed=3, n_in=6)


def joined(x: jax.Array) -> jax.Array:
    """The score of one concatenated input of 6 values."""
    return LOGITS(x)[1]


def split_score(x: dict) -> jax.Array:
    """The same score with the input given as a dict of a (4,) and a (2,) array."""
    return joined(jnp.concatenate([x["a"], x["b"]]))


X = jnp.array([0.3, -0.7, 1.2, 0.5, -0.4, 0.9])
PARTS = {"a": X[:4], "b": X[4:]}

METHODS = {
    "gradient": {},
    "gradient_x_input": {},
    "integrated_gradients": {"steps": 16, "batch_size": 5, "baseline": 0.1},
    "occlusion": {"window": 1, "batch_size": 3},
}


@pytest.mark.parametrize("method", sorted(METHODS))
def test_a_dict_of_inputs_gives_the_split_attribution_of_one_input(method: str) -> None:
    whole = xc.attribute(joined, X, method=method, **METHODS[method])
    parts = xc.attribute(split_score, PARTS, method=method, **METHODS[method])
    assert set(parts) == {"a", "b"}
    assert parts["a"].shape == (4,) and parts["b"].shape == (2,)
    np.testing.assert_allclose(np.concatenate([parts["a"], parts["b"]]), whole, rtol=1e-5, atol=1e-6)


def test_smoothgrad_on_several_inputs_equals_one_input_with_the_same_draws() -> None:
    z = jax.random.normal(jax.random.key(0), (8, 6))
    whole = xc.smoothgrad(xc.gradient(joined), samples=8, sigma=0.2, relative=False)(X, noise=z)
    parts = xc.smoothgrad(xc.gradient(split_score), samples=8, sigma=0.2, relative=False)(
        PARTS, noise={"a": z[:, :4], "b": z[:, 4:]})
    np.testing.assert_allclose(np.concatenate([parts["a"], parts["b"]]), whole, rtol=1e-5, atol=1e-6)
    keyed = xc.attribute(split_score, PARTS, method="vargrad", key=jax.random.key(1), samples=4)
    assert jax.tree.map(jnp.shape, keyed) == {"a": (4,), "b": (2,)}
    again = xc.attribute(split_score, PARTS, method="vargrad", key=jax.random.key(1), samples=4)
    np.testing.assert_array_equal(keyed["a"], again["a"])


def test_shapes_and_dtypes_are_kept_per_input() -> None:
    def score(x: tuple) -> jax.Array:
        image, meta = x
        return jnp.sum(jnp.tanh(image.astype(jnp.float32))) * jnp.sum(meta)

    x = (jnp.ones((3, 2), jnp.bfloat16), jnp.array([0.5, 2.0], jnp.float32))
    for method, options in METHODS.items():
        a = xc.attribute(score, x, method=method, **options)
        assert isinstance(a, tuple) and len(a) == 2, method
        assert (a[0].shape, a[0].dtype) == ((3, 2), jnp.bfloat16), method
        assert (a[1].shape, a[1].dtype) == ((2,), jnp.float32), method


def test_integrated_gradients_is_complete_over_all_inputs_together(x64: None) -> None:
    x = {"a": PARTS["a"].astype(jnp.float64), "b": PARTS["b"].astype(jnp.float64)}
    base = {"a": jnp.full(4, 0.2), "b": jnp.zeros(2)}
    a = xc.integrated_gradients(split_score, baseline=base, steps=64, rule="gauss_legendre")(x)
    gap = xc.completeness_gap(split_score, x, a, baseline=base)
    change = split_score(x) - split_score(base)
    assert abs(float(gap)) < 1e-10 * max(1.0, abs(float(change)))
    # Each input alone is not complete: the other input's share is missing.
    alone = a["a"].sum() - change
    assert abs(float(alone)) > 1e-3


def test_fixed_inputs_reach_the_score_unattributed() -> None:
    mask = jnp.array([1.0, 0.0, 1.0, 1.0, 0.0, 1.0])

    def score(x: tuple) -> jax.Array:
        values, m = x
        return joined(values * m)

    closed = lambda v: joined(v * mask)  # noqa: E731 - the same score with the mask closed over
    for method, options in METHODS.items():
        a = xc.attribute(score, (X, xc.fixed(mask)), method=method, **options)
        assert a[1] is None, method
        np.testing.assert_allclose(a[0], xc.attribute(closed, X, method=method, **options), rtol=1e-5, atol=1e-7)
    key = jax.random.key(2)
    sg = xc.attribute(score, (X, xc.fixed(mask)), method="smoothgrad", key=key, samples=6)
    np.testing.assert_allclose(sg[0], xc.attribute(closed, X, method="smoothgrad", key=key, samples=6),
                               rtol=1e-5, atol=1e-7)
    assert sg[1] is None


def test_fixed_integer_inputs_and_per_example_masks_under_jit_vmap() -> None:
    table = jax.random.normal(jax.random.key(0), (10, 6))

    def score(x: dict) -> jax.Array:
        return joined(x["emb"] * x["mask"][:, None].astype(jnp.float32) + table[x["ids"]]).sum()

    ids = jnp.array([[1, 2, 3], [4, 5, 0]])
    masks = jnp.array([[1, 1, 1], [1, 1, 0]])
    embs = jax.random.normal(jax.random.key(1), (2, 3, 6))

    def explain(emb: jax.Array, i: jax.Array, m: jax.Array) -> dict:
        return xc.attribute(lambda x: score(x), {"emb": emb, "ids": xc.fixed(i), "mask": xc.fixed(m)},
                            method="ig", steps=8)

    batched = jax.jit(jax.vmap(explain))(embs, ids, masks)
    assert batched["ids"] is None and batched["mask"] is None
    for k in range(2):
        one = explain(embs[k], ids[k], masks[k])
        np.testing.assert_allclose(batched["emb"][k], one["emb"], rtol=1e-5, atol=1e-6)
    # The masked position gets no attribution: the score does not read it.
    np.testing.assert_array_equal(batched["emb"][1, 2], 0.0)


def test_several_input_errors_name_the_input_and_say_what_to_do() -> None:
    with pytest.raises(TypeError, match=r"x\['ids'\] must be a floating-point array.*xc.fixed"):
        xc.gradient(lambda x: x["v"].sum())({"v": jnp.ones(2), "ids": jnp.array([1, 2])})
    with pytest.raises(ValueError, match="every input of x is marked fixed"):
        xc.gradient(lambda x: x.sum())(xc.fixed(jnp.ones(2)))
    with pytest.raises(ValueError, match="baseline must have the structure of x"):
        xc.integrated_gradients(split_score, baseline={"a": 0.0})(PARTS)
    with pytest.raises(ValueError, match=r"contains 1 NaN.*x\['b'\]|x\['b'\].*contains 1 NaN"):
        xc.gradient(split_score)({"a": PARTS["a"], "b": jnp.array([jnp.nan, 1.0])})
    with pytest.raises(ValueError, match="noise must have shape"):
        xc.smoothgrad(xc.gradient(split_score), samples=2)(PARTS, noise={"a": jnp.zeros((2, 4)), "b": jnp.zeros((3, 2))})
    with pytest.raises(ValueError, match="x holds no arrays"):
        xc.gradient(lambda x: 0.0)({})


def test_occlusion_takes_a_window_per_input() -> None:
    def score(x: tuple) -> jax.Array:
        image, meta = x
        return jnp.sum(image * 2.0) + jnp.sum(meta ** 2)

    x = (jnp.ones((4, 4)), jnp.array([1.0, 3.0]))
    a = xc.occlusion(score, window=((2, 2), 1))(x)
    np.testing.assert_allclose(a[0], np.full((4, 4), 8.0))  # each 2x2 window drops the score by 8
    np.testing.assert_allclose(a[1], [1.0, 9.0])
    with pytest.raises(ValueError, match="window"):
        xc.occlusion(score, window=(2, 2))(x)  # one window for both: the 1-D input has one axis
