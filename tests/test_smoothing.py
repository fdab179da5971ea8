"""smoothgrad over any attribution function: SmoothGrad, SquareGrad, VarGrad."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_core as xc
from conftest import mlp_logits

score = lambda x: mlp_logits(seed=2)(x)[1]  # noqa: E731
x = jnp.linspace(-1.0, 1.0, 6)
key = jax.random.key(0)


@pytest.mark.parametrize("base", [xc.gradient, xc.gradient_x_input, lambda f: xc.integrated_gradients(f, steps=8)])
def test_sigma_zero_equals_the_base_method(base) -> None:
    smoothed = xc.smoothgrad(base(score), samples=5, sigma=0.0)(x, key=key)
    np.testing.assert_allclose(smoothed, base(score)(x), rtol=1e-6)


def test_square_kind_with_sigma_zero_is_the_square() -> None:
    smoothed = xc.smoothgrad(xc.gradient(score), samples=4, sigma=0.0, kind="square")(x, key=key)
    np.testing.assert_allclose(smoothed, xc.gradient(score)(x) ** 2, rtol=1e-6)


def test_same_key_same_result_other_key_other_result() -> None:
    fn = xc.smoothgrad(xc.gradient(score), samples=10, sigma=0.2)
    np.testing.assert_array_equal(fn(x, key=jax.random.key(1)), fn(x, key=jax.random.key(1)))
    assert not np.allclose(fn(x, key=jax.random.key(1)), fn(x, key=jax.random.key(2)))


def test_mean_is_the_average_over_the_documented_noise_draws() -> None:
    samples, sigma = 6, 0.3
    keys = jax.random.split(key, samples)
    scale = sigma * (x.max() - x.min())
    expected = np.mean([xc.gradient(score)(x + scale * jax.random.normal(k, x.shape)) for k in keys], axis=0)
    got = xc.smoothgrad(xc.gradient(score), samples=samples, sigma=sigma, batch_size=4)(x, key=key)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


def test_absolute_sigma_is_not_scaled_by_the_range() -> None:
    samples, sigma = 4, 0.3
    keys = jax.random.split(key, samples)
    expected = np.mean([xc.gradient(score)(x + sigma * jax.random.normal(k, x.shape)) for k in keys], axis=0)
    got = xc.smoothgrad(xc.gradient(score), samples=samples, sigma=sigma, relative=False)(x, key=key)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


def test_var_is_non_negative_and_matches_numpy_variance(x64: None) -> None:
    xd = x.astype(jnp.float64)
    samples, sigma = 12, 0.25
    fn = xc.smoothgrad(xc.gradient(score), samples=samples, sigma=sigma, kind="var", batch_size=5)
    got = fn(xd, key=key)
    assert got.dtype == jnp.float64 and bool(jnp.all(got >= 0)) and float(got.max()) > 0
    keys = jax.random.split(key, samples)
    scale = sigma * (xd.max() - xd.min())
    draws = np.stack([xc.gradient(score)(xd + scale * jax.random.normal(k, xd.shape, jnp.float64)) for k in keys])
    np.testing.assert_allclose(got, draws.var(axis=0), rtol=1e-8, atol=1e-14)


def test_smoothgrad_over_smoothgrad_base_is_rejected_without_key_at_call() -> None:
    with pytest.raises(ValueError, match="explicit PRNG key"):
        xc.smoothgrad(xc.gradient(score))(x)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"samples": 0}, "samples"), ({"sigma": -1.0}, "sigma"), ({"kind": "median"}, "kind")],
)
def test_bad_options(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        xc.smoothgrad(xc.gradient(score), **kwargs)


def test_not_an_attribution_function() -> None:
    with pytest.raises(TypeError, match="attribution function"):
        xc.smoothgrad(3.0)


def test_explicit_noise_equals_the_keyed_draws() -> None:
    samples, sigma = 5, 0.3
    z = jnp.stack([jax.random.normal(k, x.shape) for k in jax.random.split(key, samples)])
    fn = xc.smoothgrad(xc.gradient(score), samples=samples, sigma=sigma, batch_size=2)
    np.testing.assert_allclose(fn(x, noise=z), fn(x, key=key), rtol=1e-6)


def test_explicit_noise_needs_the_documented_shape_and_excludes_a_key() -> None:
    fn = xc.smoothgrad(xc.gradient(score), samples=3)
    with pytest.raises(ValueError, match=r"noise must have shape \(samples, \*x.shape\) = \(3, 6\), got \(2, 6\)"):
        fn(x, noise=jnp.zeros((2, 6)))
    with pytest.raises(ValueError, match="not both"):
        fn(x, key=key, noise=jnp.zeros((3, 6)))
