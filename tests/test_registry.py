"""attribute / methods, and the properties every registered method must have."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_core as xc
from conftest import cnn_logits

logits_fn = cnn_logits(seed=5)
score = lambda x: logits_fn(x)[1]  # noqa: E731
key = jax.random.key(0)
GRID = np.arange(4).reshape(2, 2).repeat(3, 0).repeat(3, 1)[..., None]  # four 3x3 cells
OPTIONS = {
    "gradient": {},
    "gradient_x_input": {},
    "integrated_gradients": {"steps": 8},
    "guided_ig": {"steps": 8},
    "blur_ig": {"steps": 8, "max_sigma": 3.0},
    "occlusion": {"window": (3, 3, 3), "stride": (2, 2, 3)},
    "smoothgrad": {"samples": 4},
    "squaregrad": {"samples": 4},
    "vargrad": {"samples": 4},
    "guided_backprop": {},
    "deconvnet": {},
    "deeplift": {"baseline": 0.1},
    "deeplift_shap": {"baselines": np.full((2, 6, 6, 3), 0.1, np.float32)},
    "gradient_shap": {"baselines": np.full((2, 6, 6, 3), 0.1, np.float32), "samples": 4},
    "lrp": {"composite": "epsilon_plus_flat"},
    "feature_ablation": {"feature_mask": GRID},
    "shapley": {"feature_mask": GRID},
    "shapley_sampling": {"feature_mask": GRID, "samples": 4},
    "kernel_shap": {"feature_mask": GRID, "samples": 8},
    "owen": {"feature_mask": GRID, "samples": 12},
    "lime": {"feature_mask": GRID, "samples": 16},
    "rise": {"samples": 8, "grid": 3},
    "xrai": {"segments": GRID, "steps": 4, "min_pixel_diff": 1},
}


def test_methods_lists_every_name_and_alias() -> None:
    assert set(OPTIONS) | {"ig", "saliency", "input_x_gradient", "deconvolution", "expected_gradients"} == set(xc.methods())


def test_unknown_method_lists_valid_names_and_closest_match() -> None:
    with pytest.raises(ValueError, match=r"unknown method 'integrated_gradient'.*Did you mean 'integrated_gradients'"):
        xc.attribute(score, jnp.ones((6, 6, 3)), method="integrated_gradient")


def test_unknown_option_lists_accepted_ones() -> None:
    with pytest.raises(TypeError, match=r"unknown option\(s\) 'step'.*Did you mean 'steps'"):
        xc.attribute(score, jnp.ones((6, 6, 3)), method="ig", step=4)


def test_sampling_method_without_key() -> None:
    with pytest.raises(ValueError, match="explicit PRNG key"):
        xc.attribute(score, jnp.ones((6, 6, 3)), method="smoothgrad")


def test_attribute_equals_the_transform() -> None:
    x = jax.random.uniform(key, (6, 6, 3))
    np.testing.assert_array_equal(
        xc.attribute(score, x, method="ig", steps=8, rule="riemann_middle"),
        xc.integrated_gradients(score, steps=8, rule="riemann_middle")(x),
    )
    np.testing.assert_array_equal(
        xc.attribute(score, x, method="vargrad", key=key, samples=4),
        xc.smoothgrad(xc.gradient(score), samples=4, kind="var")(x, key=key),
    )


def test_smoothgrad_over_another_base_with_its_options() -> None:
    x = jax.random.uniform(key, (6, 6, 3))
    got = xc.attribute(score, x, method="smoothgrad", key=key, base="ig", base_options={"steps": 4}, samples=3)
    want = xc.smoothgrad(xc.integrated_gradients(score, steps=4), samples=3)(x, key=key)
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_register_rejects_a_taken_name() -> None:
    with pytest.raises(ValueError, match="already registered"):
        xc.register("ig", xc.gradient, summary="dup")


def run(method: str, x: jax.Array, score_fn=score, **extra) -> jax.Array:
    return xc.attribute(score_fn, x, method=method, key=key, **OPTIONS[method], **extra)


@pytest.mark.parametrize("method", sorted(OPTIONS))
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_shape_and_dtype_follow_the_input(method: str, dtype) -> None:
    x = jax.random.uniform(key, (6, 6, 3)).astype(dtype)
    a = run(method, x)
    assert a.shape == x.shape and a.dtype == dtype
    assert bool(jnp.all(jnp.isfinite(a.astype(jnp.float32))))


@pytest.mark.parametrize("method", sorted(OPTIONS))
def test_float64_shape_and_dtype(method: str, x64: None) -> None:
    x = jax.random.uniform(key, (6, 6, 3), jnp.float64)
    a = run(method, x)
    assert a.shape == x.shape and a.dtype == jnp.float64


@pytest.mark.parametrize("method", sorted(OPTIONS))
def test_jit_equals_eager(method: str) -> None:
    x = jax.random.uniform(key, (6, 6, 3))
    jitted = jax.jit(lambda x: run(method, x))(x)
    np.testing.assert_allclose(jitted, run(method, x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", sorted(OPTIONS))
def test_vmap_equals_loop(method: str) -> None:
    xs = jax.random.uniform(key, (3, 6, 6, 3))
    batched = jax.vmap(lambda x: run(method, x))(xs)
    np.testing.assert_allclose(batched, np.stack([run(method, x) for x in xs]), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", ["integrated_gradients", "blur_ig", "occlusion", "smoothgrad", "vargrad", "feature_ablation",
                                    "shapley", "shapley_sampling", "kernel_shap", "owen", "lime", "rise", "xrai"])
def test_chunked_equals_unchunked(method: str, x64: None) -> None:
    x = jax.random.uniform(key, (6, 6, 3), jnp.float64)
    whole = run(method, x, batch_size=None)
    for batch_size in (1, 3, 5):
        np.testing.assert_allclose(run(method, x, batch_size=batch_size), whole, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("method", sorted(OPTIONS))
def test_traced_target_under_jit_vmap(method: str) -> None:
    xs = jax.random.uniform(key, (3, 6, 6, 3))
    ts = jnp.array([0, 3, 1])
    fn = lambda x, t: xc.attribute(lambda x: logits_fn(x)[t], x, method=method, key=key, **OPTIONS[method])  # noqa: E731
    batched = jax.jit(jax.vmap(fn))(xs, ts)
    loop = [xc.attribute(lambda x: logits_fn(x)[int(t)], x, method=method, key=key, **OPTIONS[method]) for x, t in zip(xs, ts)]
    np.testing.assert_allclose(batched, np.stack(loop), rtol=1e-5, atol=1e-6)


def test_the_contract_pattern_on_a_flax_model() -> None:
    """DESIGN.md: jax.jit(jax.vmap(lambda x, t: xc.attribute(m.score(t), x, method="ig")))(xs, ts)."""
    import flax.linen as nn

    from xai_core.adapters import from_flax

    net = nn.Sequential([nn.Conv(4, (3, 3)), nn.relu, lambda h: h.mean(axis=(1, 2)), nn.Dense(5), nn.softmax])
    xs = jax.random.uniform(key, (3, 6, 6, 3))
    m = from_flax(net, net.init(key, xs))
    ts = jnp.array([4, 0, 2])
    batched = jax.jit(jax.vmap(lambda x, t: xc.attribute(m.score(t), x, method="ig")))(xs, ts)
    loop = np.stack([xc.integrated_gradients(m.score(int(t)))(x) for x, t in zip(xs, ts)])
    np.testing.assert_allclose(batched, loop, rtol=1e-5, atol=1e-6)
    # the score is the logit: the same network without its softmax (same parameter names)
    no_softmax = nn.Sequential(net.layers[:-1])
    assert m.cut == "softmax"
    np.testing.assert_allclose(m.logits(xs[0]), no_softmax.apply(m.params, xs[:1])[0], rtol=1e-5, atol=1e-6)
