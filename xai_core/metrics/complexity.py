"""Complexity: how concentrated is a map? A few strong features are easier to read than many weak
ones. Both work on ``|a|`` (summed over ``channel_axis`` first, like every pixel-level metric
here; ``channel_axis=None`` keeps every element).

Example:
    >>> import jax.numpy as jnp
    >>> from xai_core.metrics import complexity, sparseness
    >>> float(sparseness(jnp.ones((4, 4)), channel_axis=None)), float(complexity(jnp.ones(4), channel_axis=None))
    (0.0, 1.3862943649291992)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from xai_core.metrics._common import as_float


def _magnitudes(attribution: jax.Array, channel_axis: int | None) -> jax.Array:
    a = as_float(attribution)
    if channel_axis is not None:
        a = a.sum(axis=channel_axis)
    return jnp.abs(a).ravel()


def sparseness(attribution: jax.Array, *, channel_axis: int | None = -1) -> jax.Array:
    """Sparseness: the Gini index of ``|a|`` (Chalasani et al., "Concise Explanations of Neural
    Networks using Adversarial Training", ICML 2020), ``sum_i (2i - n - 1) |a|_(i) / (n sum |a|)``
    over the ``n`` values sorted ascending. 0 for a constant map, ``1 - 1/n`` for one non-zero
    value: **higher is better**. An all-zero map scores 0. (Quantus adds 1e-7 to every value
    first, which moves the score by about ``1e-7 / mean|a|``.)

    Example:
        >>> import jax.numpy as jnp
        >>> float(sparseness(jnp.array([0.0, 0.0, 0.0, 5.0]), channel_axis=None))
        0.75
    """
    a = jnp.sort(_magnitudes(attribution, channel_axis))
    n = a.size
    total = a.sum()
    weights = 2 * jnp.arange(1, n + 1, dtype=a.dtype) - n - 1
    return jnp.where(total > 0, jnp.sum(weights * a) / (n * jnp.where(total > 0, total, 1)), 0.0)


def complexity(attribution: jax.Array, *, channel_axis: int | None = -1) -> jax.Array:
    """Complexity: the entropy of the map's share of ``|a|`` (Bhatt, Weller & Moura,
    "Evaluating and Aggregating Feature-based Model Explanations", IJCAI 2020),
    ``-sum_i p_i log p_i`` with ``p = |a| / sum |a|`` (``0 log 0 = 0``). ``log n`` for a uniform
    map, 0 for one non-zero value: **lower is better**. An all-zero map scores 0.

    Example:
        >>> import jax.numpy as jnp
        >>> float(complexity(jnp.array([0.0, 3.0]), channel_axis=None))
        0.0
    """
    a = _magnitudes(attribution, channel_axis)
    total = a.sum()
    p = a / jnp.where(total > 0, total, 1)
    return jnp.sum(jnp.where(p > 0, p * jnp.log(1 / jnp.where(p > 0, p, 1)), 0.0))


def effective_complexity(attribution: jax.Array, *, threshold: float = 1e-5, channel_axis: int | None = -1) -> jax.Array:
    """Effective complexity (Nguyen & Martinez, "On Quantitative Aspects of Model
    Interpretability", 2020): the number of features with ``|a| > threshold``. **Lower is better.**

    >>> import jax.numpy as jnp
    >>> int(effective_complexity(jnp.array([0.0, 1e-7, 2.0]), channel_axis=None))
    1
    """
    return jnp.sum(_magnitudes(attribution, channel_axis) > threshold)
