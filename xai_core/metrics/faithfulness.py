"""Faithfulness curves: remove (or insert) features in the order a map ranks them and watch the score.

A faithful map ranks first the features the score depends on most, so deleting them first
makes the score fall fastest (a low deletion AUC) and inserting them first makes it rise
fastest (a high insertion AUC). Every curve is one compiled program: each point is a
``where`` of ``x`` and the baseline, evaluated ``batch_size`` points at a time.

Features are pixels (a pixel's channels go together: ``channel_axis=-1``, the map summed over
channels ranks them), every element (``channel_axis=None``), or segments (``segments=``: a
grid from :func:`grid_segments`, or superpixels).

Example:
    >>> import jax.numpy as jnp
    >>> from xai_core.metrics import deletion_curve
    >>> w = jnp.array([3.0, 1.0, 2.0])
    >>> deletion_curve(lambda x: w @ x, jnp.ones(3), w, steps=3, channel_axis=None)
    Array([6., 3., 1., 0.], dtype=float32)
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from xai_core.core.checks import ScoreFn, check_baseline, check_choice, check_input, check_positive_int, checked_score
from xai_core.metrics._common import DEFAULT_BATCH_SIZE, auc, expand, feature_map, features, grid_segments, mapped

ORDERS = ("most_relevant_first", "least_relevant_first")


def curve(
    score_fn: ScoreFn,
    x: jax.Array,
    attribution: jax.Array,
    counts: Any,
    *,
    insert: bool = False,
    order: str = "most_relevant_first",
    baseline: Any = 0.0,
    segments: Any = None,
    n_segments: int | None = None,
    reduce: str = "sum",
    channel_axis: int | None = -1,
    batch_size: int | str | None = DEFAULT_BATCH_SIZE,
    metric: str = "curve",
) -> jax.Array:
    """The score after the first ``counts[k]`` features (in the map's order) are replaced by
    ``baseline`` (``insert=False``), or after only they are taken from ``x`` and everything
    else is the baseline (``insert=True``). Returns ``(len(counts),)`` scores.

    ``order="most_relevant_first"`` (MoRF) ranks by descending map value (ties in index order),
    ``"least_relevant_first"`` (LeRF) by ascending. ``reduce`` scores a segment by the "sum" or
    "mean" of the map over it.
    """
    x = check_input(x, metric)
    score = checked_score(score_fn, metric)
    check_choice(order, ORDERS, "order", metric)
    check_choice(reduce, ("sum", "mean"), "reduce", metric)
    a = feature_map(attribution, x.shape, channel_axis, metric)
    base = check_baseline(baseline, x, metric)
    values, labels, n = features(a, segments, n_segments, reduce, metric)
    ranking = jnp.argsort(-values if order == "most_relevant_first" else values, stable=True)
    rank = jnp.zeros(n, jnp.int32).at[ranking].set(jnp.arange(n, dtype=jnp.int32))[labels]

    def at(count: jax.Array) -> jax.Array:
        chosen = expand(rank < count, x.shape, channel_axis)
        return score(jnp.where(chosen, x, base) if insert else jnp.where(chosen, base, x))

    return mapped(at, jnp.asarray(counts, jnp.int32), batch_size, x, metric)


def _even_counts(steps: int, n: int, metric: str) -> np.ndarray:
    check_positive_int(steps, "steps", metric)
    return np.round(np.linspace(0, n, steps + 1)).astype(np.int32)


def _map_shape(x: jax.Array, channel_axis: int) -> tuple[int, ...]:
    """An image's shape without its channel axis (the grid the cells tile)."""
    shape = jnp.shape(x)
    if len(shape) != 3:
        raise ValueError(f"expected one image (H, W, C) or (C, H, W) with channel_axis=0, got shape {shape}.")
    axis = channel_axis % 3
    return shape[:axis] + shape[axis + 1:]


def _n_features(x: jax.Array, attribution: jax.Array, segments: Any, n_segments: int | None,
                channel_axis: int | None, metric: str) -> int:
    a = feature_map(attribution, jnp.shape(x), channel_axis, metric)
    return features(a, segments, n_segments, "sum", metric)[2]


def deletion_curve(score_fn: ScoreFn, x: jax.Array, attribution: jax.Array, *, steps: int = 32, baseline: Any = 0.0,
                   segments: Any = None, n_segments: int | None = None, channel_axis: int | None = -1,
                   batch_size: int | str | None = DEFAULT_BATCH_SIZE) -> jax.Array:
    """Deletion curve (Petsiuk et al., "RISE", BMVC 2018): the score with the top
    ``round(k n / steps)`` of the ``n`` features set to ``baseline``, ``k = 0..steps``
    (``steps + 1`` points, the first ``f(x)``, the last ``f(baseline)``)."""
    counts = _even_counts(steps, _n_features(x, attribution, segments, n_segments, channel_axis, "deletion"), "deletion")
    return curve(score_fn, x, attribution, counts, baseline=baseline, segments=segments, n_segments=n_segments,
                 channel_axis=channel_axis, batch_size=batch_size, metric="deletion")


def deletion(score_fn: ScoreFn, x: jax.Array, attribution: jax.Array, **options: Any) -> jax.Array:
    """Area under :func:`deletion_curve` (fractions deleted from 0 to 1): **lower is better**.

    ``auc = mean`` of the curve by the trapezoid rule. Petsiuk et al. use class probabilities;
    this is the score ``score_fn`` gives (logits with an adapter: compare methods on one model,
    or pass ``output="probs"`` to the adapter for RISE's numbers).

    Example:
        >>> import jax.numpy as jnp
        >>> f = lambda x: jnp.array([3.0, 1.0, 2.0]) @ x
        >>> a = jnp.array([3.0, 1.0, 2.0])  # the curve is 6, 3, 1, 0
        >>> round(float(deletion(f, jnp.ones(3), a, steps=3, channel_axis=None)), 6)
        2.333333
    """
    return auc(deletion_curve(score_fn, x, attribution, **options))


def insertion_curve(score_fn: ScoreFn, x: jax.Array, attribution: jax.Array, *, steps: int = 32, baseline: Any = 0.0,
                    segments: Any = None, n_segments: int | None = None, channel_axis: int | None = -1,
                    batch_size: int | str | None = DEFAULT_BATCH_SIZE) -> jax.Array:
    """Insertion curve (Petsiuk et al. 2018): the score of the baseline with only the top
    ``round(k n / steps)`` features taken from ``x``, ``k = 0..steps`` (RISE starts from a
    blurred copy of ``x``: pass it as ``baseline``)."""
    counts = _even_counts(steps, _n_features(x, attribution, segments, n_segments, channel_axis, "insertion"), "insertion")
    return curve(score_fn, x, attribution, counts, insert=True, baseline=baseline, segments=segments,
                 n_segments=n_segments, channel_axis=channel_axis, batch_size=batch_size, metric="insertion")


def insertion(score_fn: ScoreFn, x: jax.Array, attribution: jax.Array, **options: Any) -> jax.Array:
    """Area under :func:`insertion_curve`: **higher is better**.

    Example:
        >>> import jax.numpy as jnp
        >>> f = lambda x: jnp.array([3.0, 1.0, 2.0]) @ x
        >>> a = jnp.array([3.0, 1.0, 2.0])  # the curve is 0, 3, 5, 6
        >>> round(float(insertion(f, jnp.ones(3), a, steps=3, channel_axis=None)), 6)
        3.666667
    """
    return auc(insertion_curve(score_fn, x, attribution, **options))


def pixel_flipping(score_fn: ScoreFn, x: jax.Array, attribution: jax.Array, *, features_in_step: int = 1,
                   baseline: Any = 0.0, order: str = "most_relevant_first", segments: Any = None,
                   n_segments: int | None = None, channel_axis: int | None = -1,
                   batch_size: int | str | None = DEFAULT_BATCH_SIZE) -> jax.Array:
    """Pixel flipping (Bach et al., "On Pixel-Wise Explanations ... by Layer-Wise Relevance
    Propagation", PLoS ONE 2015): the score after flipping ``features_in_step`` more features
    to ``baseline`` at a time, in the map's order, until all are flipped. Returns
    ``ceil(n / features_in_step) + 1`` points, the first ``f(x)``. MoRF: a faster fall is
    better (take :func:`xai_core.metrics.auc`, lower is better).

    Quantus's ``PixelFlipping`` returns the same curve without its first point, and its AUC
    is ``np.trapz`` with unit spacing over those points (not a fraction of features).
    """
    metric = "pixel_flipping"
    step = check_positive_int(features_in_step, "features_in_step", metric)
    n = _n_features(x, attribution, segments, n_segments, channel_axis, metric)
    counts = np.minimum(np.arange(math.ceil(n / step) + 1) * step, n).astype(np.int32)
    return curve(score_fn, x, attribution, counts, order=order, baseline=baseline, segments=segments,
                 n_segments=n_segments, channel_axis=channel_axis, batch_size=batch_size, metric=metric)


def region_perturbation(score_fn: ScoreFn, x: jax.Array, attribution: jax.Array, *, patch: int = 8,
                        regions: int | None = None, baseline: Any = 0.0, order: str = "most_relevant_first",
                        channel_axis: int = -1, batch_size: int | str | None = DEFAULT_BATCH_SIZE) -> jax.Array:
    """Region perturbation (Samek et al., "Evaluating the Visualization of What a Deep Neural
    Network Has Learned", IEEE TNNLS 2017): the ``patch`` x ``patch`` cells of a grid over the
    image (``(H, W, C)``; ``channel_axis=0`` for ``(C, H, W)``), ranked by their summed relevance, are set to ``baseline`` one more at a
    time; returns the ``regions + 1`` scores (all cells when ``regions`` is None). Summarise with
    :func:`aopc`: **higher is better** for MoRF.

    Samek et al. rank overlapping windows and fill with uniform noise; here the cells tile the
    image (no double counting) and the baseline is yours (pass a noise image for theirs).
    """
    metric = "region_perturbation"
    check_positive_int(patch, "patch", metric)
    shape = _map_shape(x, channel_axis)
    segments = grid_segments(shape, cell=patch)
    n = math.ceil(shape[0] / patch) * math.ceil(shape[1] / patch)
    regions = n if regions is None else min(check_positive_int(regions, "regions", metric), n)
    return curve(score_fn, x, attribution, np.arange(regions + 1), order=order, baseline=baseline,
                 segments=segments, n_segments=n, channel_axis=channel_axis, batch_size=batch_size, metric=metric)


def aopc(scores: jax.Array) -> jax.Array:
    """Area over the perturbation curve (Samek et al. 2017): ``mean_k (f(x) - f(x^(k)))`` over
    the curve's points, ``f(x)`` its first. Higher means the score fell faster.

    >>> float(aopc(jnp.array([4.0, 2.0, 0.0])))
    2.0
    """
    scores = jnp.asarray(scores)
    return jnp.mean(scores[..., :1] - scores, axis=-1)


def irof(score_fn: ScoreFn, x: jax.Array, attribution: jax.Array, segments: Any, *, n_segments: int | None = None,
         baseline: Any = "mean", channel_axis: int | None = -1,
         batch_size: int | str | None = DEFAULT_BATCH_SIZE) -> jax.Array:
    """Iterative removal of features (Rieger & Hansen, "IROF: a low resource evaluation metric
    for explanation methods", 2020): segments (superpixels, e.g. SLIC; or a grid) ranked by their
    mean relevance are replaced one more at a time by ``baseline`` ("mean": the image's mean
    per channel); the score is divided by ``f(x)`` and IROF is the area over that curve,
    ``1 - auc(f(x^(k)) / f(x))``, for ``k = 0..n``: **higher is better**. The score must be
    positive (a class probability, as in the paper: the adapter's ``output="probs"``).
    """
    metric = "irof"
    x = check_input(x, metric)
    if isinstance(baseline, str):
        check_choice(baseline, ("mean",), "baseline", metric)
        axes = None if channel_axis is None else tuple(i for i in range(x.ndim) if i != channel_axis % x.ndim)
        baseline = jnp.broadcast_to(x.mean(axis=axes, keepdims=True), x.shape)
    n = _n_features(x, attribution, segments, n_segments, channel_axis, metric)
    scores = curve(score_fn, x, attribution, np.arange(n + 1), baseline=baseline, segments=segments,
                   n_segments=n_segments, reduce="mean", channel_axis=channel_axis, batch_size=batch_size, metric=metric)
    return 1 - auc(scores / scores[0])
