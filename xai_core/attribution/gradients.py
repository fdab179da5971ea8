"""Gradient methods: saliency, gradient x input, integrated gradients.

Each function takes a ``score_fn(x) -> scalar`` for ONE example and returns an attribution
function ``fn(x) -> attribution`` with ``x``'s shape and dtype. Batches go through ``jax.vmap``.
Gradients run through :func:`xai_core.graph.fast_kernels` (channels-last convolutions, dense
max-pooling gradients), as chunked methods do.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from xai_core.core.checks import (
    ScoreFn,
    check_batch_size,
    check_choice,
    check_positive_int,
    checked_score,
)
from xai_core.core.chunking import DEFAULT_BATCH_SIZE, accumulation_dtype, chunked_sum, resolve_batch_size
from xai_core.graph import fast_kernels
from xai_core.core.inputs import Inputs, baselines, split_inputs, tree_sum

AttributionFn = Callable[[Any], Any]

RULES = ("riemann_left", "riemann_right", "riemann_middle", "trapezoid", "gauss_legendre")
"""The quadrature rules of the path methods' ``rule=`` option (see :func:`path_rule`)."""


def _grad_over(score_fn: ScoreFn, method: str) -> Callable[[Inputs, list[jax.Array]], list[jax.Array]]:
    """``(inputs, leaves) -> d score / d leaves``: the gradient over the attributed leaves
    of ``inputs`` (fixed inputs held as they are)."""
    score = checked_score(score_fn, method)

    def grad(inputs: Inputs, leaves: list[jax.Array]) -> list[jax.Array]:
        return jax.grad(lambda ls: score(inputs.score_input(ls)))(leaves)

    return grad


def gradient(score_fn: ScoreFn) -> AttributionFn:
    """Vanilla gradient (saliency): ``a = d score / d x``.

    Simonyan et al., "Deep Inside Convolutional Networks", 2014 (arXiv:1312.6034). Unlike the
    paper's ``|grad|``, the sign is kept; take ``jnp.abs`` for the magnitude. ``x`` may be a
    pytree of inputs (see :mod:`xai_core.core.inputs`); the result has its structure.

    >>> import jax.numpy as jnp, xai_core as xc
    >>> xc.gradient(lambda x: jnp.sum(3.0 * x))(jnp.ones(2))
    Array([3., 3.], dtype=float32)
    """
    grad = _grad_over(score_fn, "gradient")

    def attribution(x: Any) -> Any:
        inputs = split_inputs(x, "gradient")
        return inputs.result(fast_kernels(partial(grad, inputs))(inputs.leaves))

    return attribution


def gradient_x_input(score_fn: ScoreFn) -> AttributionFn:
    """Gradient times input: ``a = x * d score / d x``.

    Shrikumar et al., 2016 (arXiv:1605.01713). For a linear score ``w.x`` the attributions
    sum to the score (completeness against a zero baseline). ``x`` may be a pytree.

    >>> import jax.numpy as jnp, xai_core as xc
    >>> xc.gradient_x_input(lambda x: jnp.sum(3.0 * x))(jnp.array([1.0, 2.0]))
    Array([3., 6.], dtype=float32)
    """
    grad = _grad_over(score_fn, "gradient_x_input")

    def attribution(x: Any) -> Any:
        inputs = split_inputs(x, "gradient_x_input")
        grads = fast_kernels(partial(grad, inputs))(inputs.leaves)
        return inputs.result([a * g for a, g in zip(inputs.leaves, grads)])

    return attribution


def path_rule(rule: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Points ``alpha_k`` in [0, 1] and weights ``w_k`` of a quadrature rule for IG's path integral.

    - ``riemann_left / right / middle``: ``alpha_k = (k + 0 / 1 / 0.5) / n``, ``w_k = 1 / n``.
    - ``trapezoid``: ``alpha_k = k / (n - 1)``, ``w = [1/2, 1, ..., 1, 1/2] / (n - 1)``, the true
      trapezoid rule on [0, 1] (weights sum to 1). Captum's ``riemann_trapezoid`` instead uses
      weights ``1/n`` with halved ends, which sum to ``(n - 1) / n``; so its IG is ours times
      ``(n - 1) / n`` (``riemann_left/right/middle`` and ``gauss_legendre`` match Captum exactly).
    - ``gauss_legendre``: Captum's default; ``alpha = (1 + t) / 2``, ``w = w_leg / 2`` with
      ``t, w_leg = numpy.polynomial.legendre.leggauss(n)``.
    """
    n = steps
    k = np.arange(n, dtype=np.float64)
    if rule == "riemann_left":
        return k / n, np.full(n, 1.0 / n)
    if rule == "riemann_right":
        return (k + 1) / n, np.full(n, 1.0 / n)
    if rule == "riemann_middle":
        return (k + 0.5) / n, np.full(n, 1.0 / n)
    if rule == "trapezoid":
        weights = np.full(n, 1.0 / (n - 1))
        weights[[0, -1]] /= 2
        return k / (n - 1), weights
    if rule == "gauss_legendre":
        t, w = np.polynomial.legendre.leggauss(n)
        return 0.5 * (1 + t), 0.5 * w
    raise ValueError(f"unknown rule {rule!r}")


def integrated_gradients(
    score_fn: ScoreFn,
    baseline: Any = None,
    steps: int = 64,
    rule: str = "trapezoid",
    batch_size: int | str | None = DEFAULT_BATCH_SIZE,
) -> AttributionFn:
    """Integrated gradients: ``a = (x - x0) * sum_k w_k grad f(x0 + alpha_k (x - x0))``.

    Sundararajan et al., "Axiomatic Attribution for Deep Networks", ICML 2017. The sum
    approximates ``(x - x0) * int_0^1 grad f(x0 + alpha (x - x0)) d alpha``, so ``sum(a)``
    approaches ``f(x) - f(x0)`` (completeness; measure the gap with ``completeness_gap``).

    Args:
      score_fn: ``x -> scalar`` for one example (e.g. ``m.score(t)``).
      baseline: ``x0``; ``None`` means zeros; a scalar or an array broadcastable to ``x``.
      steps: number of path points ``n`` (>= 2 for ``trapezoid``).
      rule: one of ``RULES``; see ``path_rule`` for the points, weights and Captum's convention.
      batch_size: path points evaluated at once (bounds memory); ``"auto"`` (default) picks it
        from the input and the device (``xai_core.core.chunking.resolve_batch_size``); ``None``
        means all at once.
        The result does not depend on it beyond float rounding.

    >>> import jax.numpy as jnp, xai_core as xc
    >>> a = xc.integrated_gradients(lambda x: jnp.sum(x ** 2), rule="gauss_legendre", steps=4)(jnp.ones(3))
    >>> round(float(a.sum()), 5)  # f(x) - f(0) = 3
    3.0
    """
    check_choice(rule, RULES, "rule", "integrated_gradients")
    steps = check_positive_int(steps, "steps", "integrated_gradients", 2 if rule == "trapezoid" else 1)
    batch_size = check_batch_size(batch_size, "integrated_gradients")
    alphas, weights = path_rule(rule, steps)
    grad = _grad_over(score_fn, "integrated_gradients")

    def attribution(x: Any) -> Any:
        inputs = split_inputs(x, "integrated_gradients")
        xs = inputs.leaves
        x0s = baselines(inputs, baseline, "integrated_gradients")
        deltas = [a - b for a, b in zip(xs, x0s)]
        acc = accumulation_dtype(jnp.result_type(*xs))

        def term(k: jax.Array) -> list[jax.Array]:
            path = [b + jnp.asarray(alphas, b.dtype)[k] * d for b, d in zip(x0s, deltas)]
            w = jnp.asarray(weights, acc)[k]
            return [w * g.astype(acc) for g in grad(inputs, path)]

        total = chunked_sum(term, steps, resolve_batch_size(batch_size, xs))
        return inputs.result([(d * t).astype(a.dtype) for a, d, t in zip(xs, deltas, total)])

    return attribution


def completeness_gap(score_fn: ScoreFn, x: jax.Array, attribution: jax.Array, baseline: Any = None) -> jax.Array:
    """``sum(a) - (f(x) - f(x0))``: how far attributions are from summing to the score change.

    Captum calls it the convergence delta. It is 0 for exact IG (and for DeepLift / LRP-0
    rules that promise completeness); divide by ``|f(x) - f(x0)|`` for a relative gap.

    >>> import jax.numpy as jnp, xai_core as xc
    >>> f = lambda x: jnp.sum(x ** 2)
    >>> x = jnp.ones(3)
    >>> float(xc.completeness_gap(f, x, xc.gradient_x_input(f)(x)))  # 6 - 3
    3.0
    """
    score = checked_score(score_fn, "completeness_gap")
    inputs = split_inputs(x, "completeness_gap")
    x0s = baselines(inputs, baseline, "completeness_gap")
    a_leaves = inputs.per_leaf(attribution, "attribution", "completeness_gap")
    a_leaves = [jnp.asarray(a) for a in a_leaves]
    for a, xi in zip(a_leaves, inputs.leaves):
        if a.shape != xi.shape:
            raise ValueError(
                f"completeness_gap: attribution of shape {tuple(a.shape)} does not match "
                f"x of shape {tuple(xi.shape)}."
            )
    acc = accumulation_dtype(jnp.result_type(*inputs.leaves))
    f_x = score(inputs.score_input(inputs.leaves)).astype(acc)
    f_x0 = score(inputs.score_input(x0s)).astype(acc)
    return tree_sum(a_leaves, acc) - (f_x - f_x0)
