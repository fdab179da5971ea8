"""gradient, gradient_x_input, integrated_gradients, completeness_gap: defining properties."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_core as xc
from conftest import cnn_logits, mlp_logits


def test_gradient_of_linear_score_is_its_weights() -> None:
    w = jnp.array([1.5, -2.0, 0.25, 4.0])
    a = xc.gradient(lambda x: w @ x)(jnp.array([0.3, 0.1, -0.7, 2.0]))
    np.testing.assert_allclose(a, w)


def test_gradient_x_input_of_linear_score_sums_to_score() -> None:
    w = jnp.array([1.5, -2.0, 0.25, 4.0])
    x = jnp.array([0.3, 0.1, -0.7, 2.0])
    a = xc.gradient_x_input(lambda x: w @ x)(x)
    np.testing.assert_allclose(a, w * x, rtol=1e-6)
    np.testing.assert_allclose(a.sum(), w @ x, rtol=1e-6)


@pytest.mark.parametrize("method", [xc.gradient, xc.gradient_x_input])
def test_gradients_of_a_pooling_cnn_run_fast_kernels_and_equal_jax_grad(method) -> None:
    # NCHW conv -> ReLU -> 3x3/2 max pool: the gradient is jax.grad's, computed with
    # channels-last convolutions and no select_and_scatter (xai_core.graph.fast_kernels).
    w = jax.random.normal(jax.random.key(0), (4, 3, 3, 3))

    def score(x):
        h = jax.nn.relu(jax.lax.conv(x[None], w, (1, 1), "SAME"))
        return jnp.sum(jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 1, 3, 3), (1, 1, 2, 2),
                                             ((0, 0), (0, 0), (1, 1), (1, 1))) ** 2)

    x = jax.random.normal(jax.random.key(1), (3, 8, 8))
    expected = jax.grad(score)(x) * (x if method is xc.gradient_x_input else 1)
    np.testing.assert_allclose(method(score)(x), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(jax.jit(jax.vmap(method(score)))(x[None]), expected[None], rtol=1e-5, atol=1e-6)
    jaxpr = str(jax.make_jaxpr(method(score))(x))
    assert "select_and_scatter_add" not in jaxpr and "conv_general_dilated" in jaxpr
    assert "select_and_scatter_add" in str(jax.make_jaxpr(jax.grad(score))(x))


@pytest.mark.parametrize("rule", xc.RULES)
def test_path_rule_weights_sum_to_one_and_points_lie_in_unit_interval(rule: str) -> None:
    alphas, weights = xc.path_rule(rule, 16)
    assert alphas.shape == weights.shape == (16,)
    assert np.all((alphas >= 0) & (alphas <= 1))
    np.testing.assert_allclose(weights.sum(), 1.0, rtol=1e-12)


def test_gauss_legendre_is_captums_convention() -> None:
    t, w = np.polynomial.legendre.leggauss(7)
    alphas, weights = xc.path_rule("gauss_legendre", 7)
    np.testing.assert_allclose(alphas, 0.5 * (1 + t))
    np.testing.assert_allclose(weights, 0.5 * w)


def test_trapezoid_is_the_true_trapezoid_rule() -> None:
    alphas, weights = xc.path_rule("trapezoid", 5)
    np.testing.assert_allclose(alphas, [0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(weights, [0.125, 0.25, 0.25, 0.25, 0.125])


def test_ig_completeness_gauss_legendre_float64(x64: None) -> None:
    score = lambda x: mlp_logits()(x)[1]  # noqa: E731
    x = jnp.linspace(-1.0, 2.0, 6, dtype=jnp.float64)
    baseline = jnp.full(6, -0.5, jnp.float64)
    a = xc.integrated_gradients(score, baseline=baseline, steps=64, rule="gauss_legendre")(x)
    assert a.dtype == jnp.float64
    gap = xc.completeness_gap(score, x, a, baseline=baseline)
    assert abs(float(gap)) < 1e-6
    assert abs(float(score(x) - score(baseline))) > 0.1  # the test is not vacuous


@pytest.mark.parametrize("rule", xc.RULES)
def test_ig_gap_shrinks_with_steps_for_every_rule(rule: str, x64: None) -> None:
    score = lambda x: mlp_logits(seed=3)(x)[0]  # noqa: E731
    x = jnp.linspace(-2.0, 2.0, 6, dtype=jnp.float64)

    def gap(steps: int) -> float:
        return abs(float(xc.completeness_gap(score, x, xc.integrated_gradients(score, steps=steps, rule=rule)(x))))

    coarse, fine = gap(8), gap(256)
    assert coarse > 0
    assert fine < coarse / 20


def test_ig_is_linear_in_the_score(x64: None) -> None:
    f = lambda x: mlp_logits(seed=1)(x)[0]  # noqa: E731
    g = lambda x: jnp.sum(jnp.sin(x) * x)  # noqa: E731
    x = jnp.linspace(-1.0, 1.5, 6, dtype=jnp.float64)
    ig = lambda s: xc.integrated_gradients(s, steps=16)(x)  # noqa: E731
    combined = ig(lambda x: 2.5 * f(x) - 0.75 * g(x))
    np.testing.assert_allclose(combined, 2.5 * ig(f) - 0.75 * ig(g), rtol=1e-10, atol=1e-12)


def test_ig_symmetry_for_a_symmetric_model(x64: None) -> None:
    # f is symmetric in x[0] and x[1]; equal inputs and baselines there get equal attributions.
    f = lambda x: jnp.tanh(x[0] * x[1] + x[0] + x[1]) + x[2] ** 3  # noqa: E731
    x = jnp.array([0.7, 0.7, -0.4], jnp.float64)
    a = xc.integrated_gradients(f, steps=32, rule="gauss_legendre")(x)
    np.testing.assert_allclose(a[0], a[1], rtol=1e-12)
    assert abs(float(a[0])) > 1e-3


def test_ig_on_a_linear_score_is_gradient_x_delta_for_any_rule() -> None:
    w = jnp.array([1.0, -3.0, 2.0])
    x, x0 = jnp.array([1.0, 2.0, 3.0]), jnp.array([0.5, 0.5, 0.5])
    for rule in xc.RULES:
        a = xc.integrated_gradients(lambda x: w @ x, baseline=x0, steps=5, rule=rule)(x)
        np.testing.assert_allclose(a, w * (x - x0), rtol=1e-5)


def test_ig_scalar_baseline_equals_full_baseline() -> None:
    score = lambda x: cnn_logits()(x)[2]  # noqa: E731
    x = jax.random.uniform(jax.random.key(0), (6, 6, 3))
    scalar = xc.integrated_gradients(score, baseline=0.5, steps=8)(x)
    full = xc.integrated_gradients(score, baseline=jnp.full(x.shape, 0.5), steps=8)(x)
    np.testing.assert_allclose(scalar, full, rtol=1e-6)


def test_completeness_gap_of_gradient_x_input_for_nonlinear_score() -> None:
    f = lambda x: jnp.sum(x**2)  # noqa: E731
    x = jnp.array([1.0, 2.0])
    assert float(xc.completeness_gap(f, x, xc.gradient_x_input(f)(x))) == pytest.approx(5.0)
