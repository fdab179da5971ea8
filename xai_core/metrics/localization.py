"""Localization: does the map point at the object? On data with ground-truth masks (the shapes
data set has them). **Higher is better** for all; compare with a uniform map's score
(:func:`uniform_share`).

Each takes ``(attribution, mask)`` for one example: ``attribution`` ``(H, W, C)`` (summed over
``channel_axis``) or ``(H, W)`` with ``channel_axis=None``, ``mask`` ``(H, W)``, True on the
object. A mask with no object pixel gives NaN (nothing to find), as Quantus does.

Example:
    >>> import jax.numpy as jnp
    >>> from xai_core.metrics import localization, uniform_share
    >>> mask = jnp.zeros((4, 4), bool).at[:2, :2].set(True)
    >>> float(localization(jnp.ones((4, 4, 3)), mask)), float(uniform_share(mask))
    (0.25, 0.25)
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from xai_core.core.checks import check_choice, check_positive_int
from xai_core.metrics._common import as_float, rankdata


def _map_and_mask(attribution: Any, mask: Any, channel_axis: int | None, metric: str) -> tuple[jax.Array, jax.Array]:
    a = as_float(attribution)
    if channel_axis is not None:
        a = a.sum(axis=channel_axis)
    mask = jnp.asarray(mask)
    if a.shape != mask.shape or a.ndim != 2:
        raise ValueError(
            f"{metric}: attribution {jnp.shape(attribution)} with channel_axis={channel_axis} "
            f"reduces to {a.shape}, which must equal the (H, W) mask shape {mask.shape}. Pass one "
            "example (vmap for batches) and channel_axis=None for an (H, W) map."
        )
    return a.ravel(), mask.astype(bool).ravel()


def _nan_without_object(value: jax.Array, mask: jax.Array) -> jax.Array:
    return jnp.where(mask.any(), value, jnp.nan)


def _ratio(num: jax.Array, den: jax.Array) -> jax.Array:
    return jnp.where(den != 0, num / jnp.where(den != 0, den, 1), 0.0)


def relevance_mass(attribution: jax.Array, mask: jax.Array, *, part: str = "positive",
                   channel_axis: int | None = -1) -> jax.Array:
    """Relevance mass accuracy (Arras, Osman & Samek, "CLEVR-XAI", Information Fusion 2022):
    ``sum_{mask} R / sum R``, in ``[0, 1]`` for ``part="positive"`` (``R = max(a, 0)``: the
    paper keeps positive relevance only; a map with none scores 0). ``part="all"`` uses the
    signed map, as Quantus's ``RelevanceMassAccuracy`` (which can leave ``[0, 1]``).

    Example:
        >>> import jax.numpy as jnp
        >>> float(relevance_mass(jnp.eye(3), jnp.eye(3, dtype=bool), channel_axis=None))
        1.0
    """
    metric = "relevance_mass"
    check_choice(part, ("positive", "all"), "part", metric)
    a, m = _map_and_mask(attribution, mask, channel_axis, metric)
    if part == "positive":
        a = jnp.maximum(a, 0)
    return _nan_without_object(_ratio(jnp.sum(a * m), jnp.sum(a)), m)


def localization(attribution: jax.Array, mask: jax.Array, *, channel_axis: int | None = -1) -> jax.Array:
    """Share of the positive attribution mass inside the mask: :func:`relevance_mass` with
    ``part="positive"`` (the energy-based pointing game of Score-CAM, Wang et al. 2020), except
    that an empty mask scores 0 rather than NaN. The demo's localization column.

    Example:
        >>> import jax.numpy as jnp
        >>> float(localization(jnp.eye(3), jnp.eye(3, dtype=bool), channel_axis=None))
        1.0
    """
    score = relevance_mass(attribution, mask, channel_axis=channel_axis)
    return jnp.nan_to_num(score, nan=0.0)


def uniform_share(mask: jax.Array) -> jax.Array:
    """Localization of a uniform map: the mask's area fraction, ``mean(mask)``. A method beats
    chance only if its :func:`localization` exceeds this.

    Example:
        >>> import jax.numpy as jnp
        >>> float(uniform_share(jnp.array([[True, False], [False, False]])))
        0.25
    """
    return jnp.mean(jnp.asarray(mask).astype(jnp.float32))


def pointing_game(attribution: jax.Array, mask: jax.Array, *, tolerance: int = 0,
                  channel_axis: int | None = -1) -> jax.Array:
    """Pointing game (Zhang et al., "Top-down Neural Attention by Excitation Backprop", IJCV
    2018): 1.0 if a maximum of the map lies on the object, else 0.0 (average over examples for
    the accuracy). ``tolerance`` grows the mask by that many pixels (a square dilation; the
    paper uses 15 px on 224-px images); Quantus's ``PointingGame`` has none (``tolerance=0``).
    Ties count as a hit when any of the tied maxima is on the object.

    Example:
        >>> import jax.numpy as jnp
        >>> float(pointing_game(jnp.eye(3), jnp.eye(3, dtype=bool), channel_axis=None))
        1.0
    """
    metric = "pointing_game"
    shape = jnp.shape(mask)
    a, m = _map_and_mask(attribution, mask, channel_axis, metric)
    grown = m.reshape(shape)
    if tolerance:
        size = 2 * check_positive_int(tolerance, "tolerance", metric) + 1
        grown = jax.lax.reduce_window(grown, False, jax.lax.bitwise_or, (size, size), (1, 1), "SAME")
    hit = jnp.any((a == a.max()) & grown.ravel())
    return _nan_without_object(hit.astype(a.dtype), m)


def relevance_rank(attribution: jax.Array, mask: jax.Array, *, channel_axis: int | None = -1) -> jax.Array:
    """Relevance rank accuracy (Arras et al. 2022): of the ``K = |mask|`` highest-ranked pixels,
    the fraction on the object. 1.0: the top ``K`` are exactly the object.

    Example:
        >>> import jax.numpy as jnp
        >>> float(relevance_rank(jnp.eye(3), jnp.eye(3, dtype=bool), channel_axis=None))
        1.0
    """
    a, m = _map_and_mask(attribution, mask, channel_axis, "relevance_rank")
    k = m.sum()
    position = jnp.zeros(a.size, jnp.int32).at[jnp.argsort(-a, stable=True)].set(jnp.arange(a.size, dtype=jnp.int32))
    return _nan_without_object(_ratio(jnp.sum((position < k) & m).astype(a.dtype), k.astype(a.dtype)), m)


def top_k_intersection(attribution: jax.Array, mask: jax.Array, *, k: int, channel_axis: int | None = -1) -> jax.Array:
    """Top-k intersection (Theiner et al., "Interpretable Semantic Photo Geolocation", 2021):
    the fraction of the map's ``k`` highest pixels on the object.

    Example:
        >>> import jax.numpy as jnp
        >>> float(top_k_intersection(jnp.eye(3), jnp.eye(3, dtype=bool), k=3, channel_axis=None))
        1.0
    """
    metric = "top_k_intersection"
    a, m = _map_and_mask(attribution, mask, channel_axis, metric)
    k = min(check_positive_int(k, "k", metric), a.size)
    top = jax.lax.top_k(a, k)[1]
    return _nan_without_object(jnp.mean(m[top].astype(a.dtype)), m)


def mask_auc(attribution: jax.Array, mask: jax.Array, *, channel_axis: int | None = -1) -> jax.Array:
    """Area under the ROC curve of the map as a detector of the object's pixels (Fawcett 2006;
    Quantus's ``AUC``): the probability that a random object pixel outranks a random background
    pixel, ties counting half (the Mann-Whitney statistic). 0.5 is chance; NaN when the mask
    is empty or full.

    Example:
        >>> import jax.numpy as jnp
        >>> float(mask_auc(jnp.eye(3), jnp.eye(3, dtype=bool), channel_axis=None))
        1.0
    """
    a, m = _map_and_mask(attribution, mask, channel_axis, "mask_auc")
    positives = m.sum()
    negatives = m.size - positives
    ranks = rankdata(a)
    u = jnp.sum(jnp.where(m, ranks, 0)) - positives * (positives + 1) / 2
    return jnp.where((positives > 0) & (negatives > 0), u / jnp.maximum(positives * negatives, 1), jnp.nan)
