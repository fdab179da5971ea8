"""ROAD: RemOve And Debias without retraining (Rong et al., "A Consistent and Efficient Evaluation
Strategy for Attribution Methods", ICML 2022).

Setting removed pixels to a constant leaks the removed shape to the model (the curve then
measures the mask, not the features). ROAD fills them by *noisy linear imputation*: each
removed pixel takes the weighted mean of its 8 neighbours (weight 1/6 for the 4 direct ones,
1/12 for the diagonals), a sparse linear system over all removed pixels at once, solved here by
conjugate gradients on the image grid, plus Gaussian noise. Each point of the curve is one such
solve; all points run in one compiled program.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from xai_core.metrics.road import impute
    >>> x = jnp.tile(jnp.linspace(0, 1, 8)[None, :, None], (8, 1, 1))   # a horizontal ramp
    >>> hole = jnp.zeros((8, 8), bool).at[3:5, 3:5].set(True)
    >>> filled = impute(x, hole, key=jax.random.key(0), noise=0.0)
    >>> bool(jnp.abs(filled - x).max() < 1e-3)                          # linear data is restored
    True
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from xai_core.core.checks import ScoreFn, check_choice, check_input, checked_score
from xai_core.metrics._common import DEFAULT_BATCH_SIZE, feature_map, mapped
from xai_core.metrics.faithfulness import ORDERS

_NEIGHBOURS = np.array([[1, 2, 1], [2, 0, 2], [1, 2, 1]], np.float32) / 12


def _spread(v: jax.Array) -> jax.Array:
    """``sum_j w_ij v_j`` over each pixel's neighbours, per channel (zero outside the image)."""
    kernel = jnp.asarray(_NEIGHBOURS, v.dtype)[:, :, None, None] * jnp.eye(v.shape[-1], dtype=v.dtype)
    return jax.lax.conv_general_dilated(v[None], kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))[0]


def impute(x: jax.Array, removed: jax.Array, *, key: jax.Array, noise: float = 0.01, iterations: int = 200) -> jax.Array:
    """``x`` (``(H, W, C)``) with the ``removed`` pixels (``(H, W)`` booleans) filled by noisy
    linear imputation: ``v_i = sum_j w_ij v_j / sum_j w_ij`` over the neighbours ``j`` inside the
    image, known pixels fixed, then ``N(0, noise^2)`` added to the filled values."""
    m = removed.astype(x.dtype)[..., None]
    degree = _spread(jnp.ones_like(x))
    known = x * (1 - m)

    def operator(v: jax.Array) -> jax.Array:  # symmetric positive definite on the removed pixels
        v = v * m
        return (degree * v - _spread(v)) * m + 1e-6 * v

    solution, _ = jax.scipy.sparse.linalg.cg(operator, _spread(known) * m, x0=jnp.broadcast_to(known.mean() * m, x.shape), maxiter=iterations)
    filled = solution + noise * jax.random.normal(key, x.shape, x.dtype)
    return jnp.where(m > 0, filled, x)


def road(score_fn: ScoreFn, x: jax.Array, attribution: jax.Array, *, key: jax.Array,
         percentages: Any = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9), order: str = "most_relevant_first",
         noise: float = 0.01, channel_axis: int = -1, batch_size: int | str | None = DEFAULT_BATCH_SIZE) -> jax.Array:
    """ROAD curve: the score of an ``(H, W, C)`` image with the top (MoRF) or bottom (LeRF)
    ``percentages`` of its pixels, by the map, removed and imputed (:func:`impute`); one score
    per percentage. MoRF: a lower curve is better; LeRF: a higher one. Rong et al. report
    accuracy over a data set (average ``score > threshold`` or the argmax over vmapped calls).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> x = jnp.ones((8, 8, 1))
        >>> road(lambda x: x.sum(), x, x, key=jax.random.key(0), percentages=(0.5,), noise=0.0).shape
        (1,)
    """
    metric = "road"
    x = check_input(x, metric)
    score = checked_score(score_fn, metric)
    check_choice(order, ORDERS, "order", metric)
    a = feature_map(attribution, x.shape, channel_axis, metric).ravel()
    fractions = np.asarray(percentages, np.float64)
    if fractions.ndim != 1 or not ((fractions > 0) & (fractions < 1)).all():
        raise ValueError(f"{metric}: percentages must be fractions in (0, 1), got {percentages!r}.")
    counts = np.round(fractions * a.size).astype(np.int32)
    ranking = jnp.argsort(-a if order == "most_relevant_first" else a, stable=True)
    rank = jnp.zeros(a.size, jnp.int32).at[ranking].set(jnp.arange(a.size, dtype=jnp.int32)).reshape(x.shape[:-1])
    keys = jax.random.split(key, len(counts))

    def at(args: tuple[jax.Array, jax.Array]) -> jax.Array:
        count, k = args
        return score(impute(x, rank < count, key=k, noise=noise))

    return mapped(at, (jnp.asarray(counts), keys), batch_size, x, metric)
