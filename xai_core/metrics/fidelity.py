"""Fidelity under random perturbations: does the attribution predict how much the score drops?

Faithfulness correlation and MuFidelity remove random subsets of features and correlate the
attribution they held with the score's drop; infidelity perturbs with noise and measures the
squared error of the attribution's linear prediction. Every run is evaluated in one compiled
program (``batch_size`` perturbations at a time); the randomness is a ``jax.random`` key, or
the perturbations themselves passed in (to replay a peer's draws).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from xai_core.core.checks import ScoreFn, check_baseline, check_choice, check_input, check_positive_int, checked_score
from xai_core.metrics._common import (
    DEFAULT_BATCH_SIZE, as_float, expand, feature_map, features, grid_segments, mapped, pearson, spearman,
)

SIMILARITIES = {"pearson": pearson, "spearman": spearman}


def _need_key(key: Any, given: Any, what: str, metric: str) -> None:
    if key is None and given is None:
        raise ValueError(f"{metric}: pass key=jax.random.key(0) to draw the {what}, or {what}= to give them.")


def removal_correlation(score_fn: ScoreFn, x: jax.Array, attribution: jax.Array, removed: jax.Array, *,
                        baseline: Any = 0.0, segments: Any = None, n_segments: int | None = None,
                        similarity: str = "pearson", channel_axis: int | None = -1,
                        batch_size: int | str | None = DEFAULT_BATCH_SIZE, metric: str = "removal_correlation"
                        ) -> jax.Array:
    """Correlation, over the rows of ``removed`` (``(runs, n)`` booleans, True: feature removed),
    between the attribution the removed features hold and the score's drop
    ``f(x) - f(x with them set to baseline)``. The shared core of the two metrics below."""
    x = check_input(x, metric)
    score = checked_score(score_fn, metric)
    check_choice(similarity, tuple(SIMILARITIES), "similarity", metric)
    a = feature_map(attribution, x.shape, channel_axis, metric)
    base = check_baseline(baseline, x, metric)
    values, labels, n = features(a, segments, n_segments, "sum", metric)
    removed = jnp.asarray(removed, bool)
    if removed.ndim != 2 or removed.shape[1] != n:
        raise ValueError(f"{metric}: the removed features must be (runs, {n}) booleans, got {tuple(removed.shape)}.")

    def drop(row: jax.Array) -> jax.Array:
        return score(jnp.where(expand(row[labels], x.shape, channel_axis), base, x))

    drops = score(x) - mapped(drop, removed, batch_size, x, metric)
    held = jnp.where(removed, values, 0).sum(axis=1)
    return SIMILARITIES[similarity](held, drops)


def faithfulness_correlation(score_fn: ScoreFn, x: jax.Array, attribution: jax.Array, *, key: jax.Array | None = None,
                             runs: int = 100, subset_size: int = 224, subsets: jax.Array | None = None,
                             baseline: Any = 0.0, segments: Any = None, n_segments: int | None = None,
                             similarity: str = "pearson", channel_axis: int | None = -1,
                             batch_size: int | str | None = DEFAULT_BATCH_SIZE) -> jax.Array:
    """Faithfulness correlation (Bhatt, Weller & Moura, "Evaluating and Aggregating
    Feature-based Model Explanations", IJCAI 2020): over ``runs`` random subsets ``S`` of
    ``subset_size`` features, ``corr(sum_{i in S} a_i, f(x) - f(x_{S <- baseline}))``
    (Pearson). **Higher is better** (1: the attribution predicts every drop's rank and size).

    Args:
      key: draws the subsets (uniform, without replacement), unless ``subsets`` gives them as
        ``(runs, subset_size)`` feature indices (into the flattened map, or segment labels).

    The other arguments are as in :func:`xai_core.metrics.deletion_curve`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> w = jnp.arange(1.0, 17.0)
        >>> float(faithfulness_correlation(lambda x: w @ x, jnp.ones(16), w, key=jax.random.key(0),
        ...                                runs=8, subset_size=4, channel_axis=None))
        1.0
    """
    metric = "faithfulness_correlation"
    x = check_input(x, metric)
    n = features(feature_map(attribution, x.shape, channel_axis, metric), segments, n_segments, "sum", metric)[2]
    _need_key(key, subsets, "subsets", metric)
    if subsets is None:
        check_positive_int(runs, "runs", metric)
        if not 1 <= subset_size <= n:
            raise ValueError(f"{metric}: subset_size must be in [1, {n}] (the number of features), got {subset_size}.")
        keys = jax.random.split(key, runs)
        subsets = jax.vmap(lambda k: jax.random.choice(k, n, (subset_size,), replace=False))(keys)
    subsets = jnp.asarray(subsets, jnp.int32)
    removed = jnp.zeros((subsets.shape[0], n), bool).at[jnp.arange(subsets.shape[0])[:, None], subsets].set(True)
    return removal_correlation(score_fn, x, attribution, removed, baseline=baseline, segments=segments,
                               n_segments=n_segments, similarity=similarity, channel_axis=channel_axis,
                               batch_size=batch_size, metric=metric)


def mufidelity(score_fn: ScoreFn, x: jax.Array, attribution: jax.Array, *, key: jax.Array, grid: int = 9,
               subset_percent: float = 0.2, runs: int = 128, baseline: Any = 0.0, similarity: str = "pearson",
               channel_axis: int = -1, batch_size: int | str | None = DEFAULT_BATCH_SIZE) -> jax.Array:
    """MuFidelity (Bhatt et al. 2020, as Xplique's ``MuFidelity``): faithfulness correlation
    over a ``grid`` x ``grid`` grid of cells on an image (``(H, W, C)``; ``channel_axis=0`` for
    ``(C, H, W)``), each cell removed
    independently with probability ``subset_percent`` in each of ``runs`` draws. **Higher is
    better.**

    Example:
        >>> import jax, jax.numpy as jnp
        >>> x = jnp.ones((9, 9, 1))
        >>> float(mufidelity(lambda x: jnp.sum(x), x, x, key=jax.random.key(0), runs=16)) > 0.99
        True
    """
    metric = "mufidelity"
    check_positive_int(runs, "runs", metric)
    if not 0 < subset_percent < 1:
        raise ValueError(f"{metric}: subset_percent must be in (0, 1), got {subset_percent}.")
    shape = jnp.shape(x)
    if len(shape) != 3:
        raise ValueError(f"{metric}: expected one image (H, W, C), or (C, H, W) with channel_axis=0, got {shape}.")
    axis = channel_axis % 3
    segments = grid_segments(shape[:axis] + shape[axis + 1:], cells=check_positive_int(grid, "grid", metric))
    removed = jax.random.uniform(key, (runs, grid * grid)) < subset_percent
    return removal_correlation(score_fn, x, attribution, removed, baseline=baseline, segments=segments,
                               n_segments=grid * grid, similarity=similarity, channel_axis=channel_axis,
                               batch_size=batch_size, metric=metric)


def infidelity(score_fn: ScoreFn, x: jax.Array, attribution: jax.Array, *, key: jax.Array | None = None,
               samples: int = 10, sigma: float = 0.1, noise: jax.Array | None = None, normalize: bool = False,
               batch_size: int | str | None = DEFAULT_BATCH_SIZE) -> jax.Array:
    """Infidelity (Yeh et al., "On the (In)fidelity and Sensitivity of Explanations", NeurIPS
    2019; Captum's ``infidelity``): ``mean_j (sum(I_j * a) - (f(x) - f(x - I_j)))^2`` over
    perturbations ``I_j ~ N(0, sigma^2)``. **Lower is better.** ``normalize=True`` first scales
    the attribution by the least-squares ``beta = E[(I.a) df] / E[(I.a)^2]`` (Captum's option),
    so only its direction counts.

    Args:
      key: draws ``samples`` perturbations, unless ``noise`` gives them, ``(samples, *x.shape)``.
      attribution: x's shape (or broadcastable to it).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> w = jnp.array([1.0, -2.0])
        >>> float(infidelity(lambda x: w @ x, jnp.ones(2), w, key=jax.random.key(0))) < 1e-12  # linear: exact
        True
    """
    metric = "infidelity"
    x = check_input(x, metric)
    score = checked_score(score_fn, metric)
    a = jnp.broadcast_to(as_float(attribution), x.shape)
    _need_key(key, noise, "noise", metric)
    if noise is None:
        noise = sigma * jax.random.normal(key, (check_positive_int(samples, "samples", metric), *x.shape), x.dtype)
    noise = jnp.asarray(noise, x.dtype)
    if noise.shape[1:] != x.shape:
        raise ValueError(f"{metric}: noise must be (samples, *{x.shape}), got {tuple(noise.shape)}.")
    drops = score(x) - mapped(lambda i: score(x - i), noise, batch_size, x, metric)
    predicted = jnp.einsum("s...,...->s", as_float(noise), a)
    if normalize:
        denominator = jnp.sum(predicted * predicted)
        beta = jnp.where(denominator > 0, jnp.sum(predicted * drops) / jnp.where(denominator > 0, denominator, 1), 0)
        predicted = beta * predicted
    return jnp.mean((predicted - drops) ** 2)
