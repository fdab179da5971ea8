"""Guided IG and Blur IG: PAIR's own test values, their defining properties, and bad input.

The cross-check against PAIR's code on the same function is tests/test_paths_refs.py.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_core as xc
from conftest import cnn_logits
from xai_core.attribution.paths import gaussian_blur

logits_fn = cnn_logits(seed=3)


def score(x: jax.Array) -> jax.Array:
    return logits_fn(x)[2]


def linear(x: jax.Array) -> jax.Array:  # 2 x1 + x2
    return 2 * x[0] + x[1]


def quadratic(x: jax.Array) -> jax.Array:  # (2 x1 + x2)^2: partials depend on each other
    return (2 * x[0] + x[1]) ** 2


def independent(x: jax.Array) -> jax.Array:  # 2 x1^2 + x2^2
    return 2 * x[0] ** 2 + x[1] ** 2


# PAIR's saliency/core/guided_ig_test.py, its inputs and expected values.
@pytest.mark.parametrize("baseline, expected", [((-1.0, -3.0), (22.0, 8.0)), (None, (20.0, 5.0))])
def test_guided_ig_on_a_linear_function_is_ig(baseline, expected, x64: None) -> None:
    a = xc.guided_ig(linear, baseline=None if baseline is None else jnp.array(baseline), steps=10, fraction=0.1,
                     max_dist=0.5)(jnp.array([10.0, 5.0]))
    np.testing.assert_allclose(a, expected, rtol=1e-12)


@pytest.mark.parametrize("x, baseline, expected", [((3.0, 3.0), None, (18.0, 9.0)), ((0.0, 0.0), (3.0, 3.0), (-18.0, -9.0))])
def test_guided_ig_with_independent_partials_is_ig(x, baseline, expected, x64: None) -> None:
    fn = xc.guided_ig(independent, baseline=None if baseline is None else jnp.array(baseline), steps=1000,
                      fraction=0.1, max_dist=0.4)
    np.testing.assert_allclose(fn(jnp.array(x)), expected, rtol=0.01)


@pytest.mark.parametrize("options, expected", [({"fraction": 0.1, "max_dist": 0.0}, (54.0, 27.0)),
                                               ({"fraction": 1.0, "max_dist": 0.5}, (54.0, 27.0)),
                                               ({"fraction": 0.1, "max_dist": 1.0}, (72.0, 9.0))])
def test_guided_ig_on_dependent_partials(options, expected, x64: None) -> None:
    a = xc.guided_ig(quadratic, steps=1000, **options)(jnp.array([3.0, 3.0]))
    np.testing.assert_allclose(a, expected, rtol=0.01)


def test_bounded_guided_ig_lies_between_ig_and_unbounded_and_is_complete(x64: None) -> None:
    a = xc.guided_ig(quadratic, steps=1000, fraction=0.1, max_dist=0.1)(jnp.array([3.0, 3.0]))
    assert 54.0 < float(a[0]) < 72.0 and 9.0 < float(a[1]) < 27.0
    np.testing.assert_allclose(float(a.sum()), 81.0, rtol=0.01)


@pytest.mark.parametrize("options", [{"max_dist": 0.0}, {"fraction": 1.0}])
def test_straight_line_settings_equal_left_riemann_ig_on_a_cnn(options, x64: None) -> None:
    x = jax.random.uniform(jax.random.key(0), (6, 6, 3), jnp.float64)
    ig = xc.integrated_gradients(score, baseline=0.2, steps=30, rule="riemann_left")(x)
    np.testing.assert_allclose(xc.guided_ig(score, baseline=0.2, steps=30, **options)(x), ig, rtol=1e-9, atol=1e-12)


def test_guided_ig_leaves_the_line_and_its_inner_loop_never_needs_the_cap(x64: None) -> None:
    x = jax.random.uniform(jax.random.key(1), (6, 6, 3), jnp.float64)
    a = xc.guided_ig(score, steps=200)(x)
    # A feature moves in jumps of up to about 2 max_dist of its range, whatever the steps, so on
    # a ReLU network the sum comes only near f(x) - f(0) (87% here; see the docstring).
    change = float(score(x) - score(jnp.zeros_like(x)))
    assert 0.8 < float(a.sum()) / change < 1.0
    np.testing.assert_array_equal(xc.guided_ig(score, steps=200, max_iterations=1000)(x), a)
    assert np.abs(np.asarray(a) - np.asarray(xc.integrated_gradients(score, steps=200)(x))).max() > 1e-4  # not IG


def test_guided_ig_float32_follows_float64(x64: None) -> None:
    x = jax.random.uniform(jax.random.key(2), (6, 6, 3), jnp.float64)
    a64 = xc.guided_ig(score, steps=50)(x)
    a32 = xc.guided_ig(score, steps=50)(x.astype(jnp.float32))
    assert a32.dtype == jnp.float32
    np.testing.assert_allclose(a32, a64, rtol=1e-3, atol=1e-4 * float(jnp.abs(a64).max()))


def test_guided_ig_of_the_baseline_is_zero_and_pytrees_move_together(x64: None) -> None:
    x = jnp.ones((4, 3))
    np.testing.assert_array_equal(xc.guided_ig(lambda v: jnp.sum(v ** 3), baseline=1.0)(x), 0.0)
    f = lambda t: jnp.sum(jnp.tanh(t["a"])) * jnp.sum(t["b"] ** 2)  # noqa: E731
    tree = {"a": jnp.linspace(0.1, 1.0, 5), "b": jnp.linspace(-1.0, 0.5, 3)}
    a = xc.guided_ig(f, steps=100)(tree)
    flat = xc.guided_ig(lambda v: f({"a": v[:5], "b": v[5:]}), steps=100)(jnp.concatenate([tree["a"], tree["b"]]))
    np.testing.assert_allclose(jnp.concatenate([a["a"], a["b"]]), flat, rtol=1e-12)


@pytest.mark.parametrize("sigma", [0.0, 0.01, 0.6, 2.5, 40.0])
@pytest.mark.parametrize("shape, channel_axis", [((9, 7, 3), -1), ((2, 8, 6), 0), ((8, 5), -1)])
def test_gaussian_blur_is_scipys_zero_padded_filter(sigma, shape, channel_axis, x64: None) -> None:
    from scipy import ndimage
    x = np.random.default_rng(0).uniform(size=shape)
    sigmas = [0.0 if i == channel_axis % len(shape) and len(shape) == 3 else sigma for i in range(len(shape))]
    expected = ndimage.gaussian_filter(x, sigma=sigmas, mode="constant") if sigma else x
    np.testing.assert_allclose(gaussian_blur(jnp.asarray(x), sigma, channel_axis), expected, atol=1e-14)
    traced = jax.jit(lambda s: gaussian_blur(jnp.asarray(x), s, channel_axis, max_sigma=40.0))(sigma)
    np.testing.assert_allclose(traced, expected, atol=1e-14)


def test_blur_ig_pairs_sine_example(x64: None) -> None:
    # PAIR's blur_ig_test.py: f = sum(sin(x)) on a 5x5x1 image with two bright pixels;
    # each pixel's attribution is sin(x) - sin(blur(x)) along the path.
    x = np.zeros((5, 5, 1))
    x[1, 1, 0], x[2, 2, 0] = 0.7, 1.0
    a = xc.blur_ig(lambda v: jnp.sum(jnp.sin(v)), max_sigma=10, steps=4000)(jnp.asarray(x))
    expected = np.sin(x) - np.sin(np.asarray(gaussian_blur(jnp.asarray(x), 10.0)))
    assert np.count_nonzero(np.asarray(a)) == a.size
    np.testing.assert_allclose(a, expected, atol=5e-3)


def test_blur_ig_is_complete_and_batch_size_free(x64: None) -> None:
    x = jax.random.uniform(jax.random.key(3), (6, 6, 3), jnp.float64)
    a = xc.blur_ig(score, max_sigma=4.0, steps=400, batch_size=None)(x)
    change = float(score(x) - score(gaussian_blur(x, 4.0)))
    assert abs(float(a.sum()) - change) < 0.02 * abs(change)
    small = xc.blur_ig(score, max_sigma=4.0, steps=400, batch_size=7)(x)
    np.testing.assert_allclose(small, a, rtol=1e-10, atol=1e-13)


def test_blur_ig_channels_first_is_channels_last_transposed(x64: None) -> None:
    x = jax.random.uniform(jax.random.key(4), (6, 6, 3), jnp.float64)
    last = xc.blur_ig(score, max_sigma=3.0, steps=20, sqrt=True)(x)
    first = xc.blur_ig(lambda v: score(jnp.moveaxis(v, 0, -1)), max_sigma=3.0, steps=20, sqrt=True,
                       channel_axis=0)(jnp.moveaxis(x, -1, 0))
    np.testing.assert_allclose(jnp.moveaxis(first, 0, -1), last, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("build, x, match", [
    (lambda: xc.guided_ig(score, steps=0), None, "steps"),
    (lambda: xc.guided_ig(score, fraction=0.0), None, r"fraction must lie in \(0, 1\]"),
    (lambda: xc.guided_ig(score, max_dist=1.5), None, r"max_dist must lie in \[0, 1\]"),
    (lambda: xc.guided_ig(score, max_iterations=0), None, "max_iterations"),
    (lambda: xc.blur_ig(score, steps=0), None, "steps"),
    (lambda: xc.blur_ig(score, max_sigma=0.0), None, "max_sigma and grad_step must be > 0"),
    (lambda: xc.blur_ig(jnp.sum), jnp.ones(5), "one image"),
    (lambda: xc.guided_ig(lambda x: x), jnp.ones(3), "scalar"),
])
def test_bad_input_gets_a_clear_error(build, x, match) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        build()(jnp.ones((6, 6, 3)) if x is None else x)


def test_a_traced_blur_needs_its_bound() -> None:
    with pytest.raises(ValueError, match="max_sigma="):
        jax.jit(lambda s: gaussian_blur(jnp.ones((4, 4)), s))(1.0)
