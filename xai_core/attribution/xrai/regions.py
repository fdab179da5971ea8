"""XRAI's public functions: :func:`xrai_regions` (the heatmap and the ranked regions of one image)
and :func:`xrai` (the registry's heatmap of ``x``'s shape). Each checks its options, computes the pixel
attribution (IG over PAIR's two baselines, or the one given) and the masks' atoms on the host, then
runs the jitted walk of :mod:`xai_core.attribution.xrai.walk`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from xai_core.attribution.gradients import RULES as IG_RULES
from xai_core.attribution.gradients import AttributionFn, gradient, integrated_gradients
from xai_core.attribution.xrai.masks import _atoms, _masks, xrai_segments
from xai_core.attribution.xrai.walk import XRAIRegions, _fast, _full, _ranked
from xai_core.core.checks import ScoreFn, check_baseline, check_batch_size, check_choice, check_positive_int
from xai_core.core.checks import is_concrete
from xai_core.core.chunking import DEFAULT_BATCH_SIZE, accumulation_dtype
from xai_core.core.inputs import split_inputs

MODES = ("full", "fast")
CHANNEL_REDUCTIONS = ("max", "sum")
RULES = (*IG_RULES, "linspace")
"""IG's rules plus PAIR's: ``linspace`` takes ``numpy.linspace(0, 1, n)`` as points, each weighted ``1/n``."""


def _ig(score_fn: ScoreFn, x: Any, leaf: jax.Array, baseline: Any, steps: int, rule: str,
        batch_size: int | str | None) -> jax.Array:
    """IG of ``x``'s attributed leaf averaged over the baselines (PAIR: the image's min and max)."""
    if baseline is None:
        baseline = [jnp.min(leaf), jnp.max(leaf)]
    bases = list(baseline) if isinstance(baseline, (list, tuple)) else [baseline]
    if not bases:
        raise ValueError("xrai: baseline is an empty list; give one baseline, a list of them, or None (PAIR's).")
    acc = accumulation_dtype(leaf.dtype)

    def mean_ig(steps: int, rule: str) -> jax.Array:
        igs = [jax.tree.leaves(integrated_gradients(score_fn, b, steps, rule, batch_size)(x))[0] for b in bases]
        return sum(a.astype(acc) for a in igs) / len(bases)

    if rule != "linspace":
        return mean_ig(steps, rule)
    # PAIR's sum_k grad(x0 + k/(n-1) (x - x0)) / n, k = 0..n-1, is (n-1)/n of riemann_left over n-1
    # points plus the end point's term, whose gradient (at x) all baselines share: n-1 gradients a baseline + 1.
    x0 = sum(check_baseline(b, leaf, "xrai").astype(acc) for b in bases) / len(bases)
    end = jax.tree.leaves(gradient(score_fn)(x))[0].astype(acc)
    return (steps - 1) / steps * mean_ig(steps - 1, "riemann_left") + (leaf.astype(acc) - x0) * end / steps



def xrai_regions(score_fn: ScoreFn, baseline: Any = None, steps: int = 100, rule: str = "linspace",
                 segments: Any = None, mode: str = "full", channel_axis: int | None = -1, channel_reduce: str = "max",
                 attribution: Any = None, area_threshold: float = 1.0, min_pixel_diff: int = 50,
                 batch_size: int | str | None = DEFAULT_BATCH_SIZE) -> Callable[[Any], XRAIRegions]:
    """XRAI's heatmap and ranked regions of one image ``x``: ``fn(x) -> XRAIRegions`` (the method:
    :mod:`xai_core.attribution.xrai`).

    The defaults are PAIR's; PAIR's names are in brackets.

    Args:
      score_fn: ``x -> scalar`` for one example.
      baseline: IG's baseline (a scalar or an array broadcastable to ``x``) or a list of them, averaged;
        ``None`` is PAIR's ``[min(x), max(x)]`` [``baselines``].
      steps: IG's path points.
      rule: IG's rule (:data:`RULES`); ``"linspace"`` is PAIR's IG: points ``linspace(0, 1, steps)``,
        weights ``1/steps``.
      segments: boolean masks (a list, or stacked ``(n, *space)``; may be traced, all-False ones are never
        chosen) or an integer segment map (ids ``min..max``, not dilated); ``None``: :func:`xrai_segments`
        of a concrete ``x``, on the host.
      mode: ``"full"`` (re-scored after each region) or ``"fast"`` (sorted once) [``algorithm``].
      channel_axis: the channel axis (``None``: none).
      channel_reduce: how the channel axis is reduced: ``"max"`` (PAIR) or ``"sum"`` (then the heatmap
        sums to IG's sum).
      attribution: a pixel attribution of ``x``'s shape, or a function ``x -> attribution``, instead of IG
        [``base_attribution``].
      area_threshold: stop once more than this fraction of pixels is covered (``"full"`` only).
      min_pixel_diff: masks adding fewer new pixels are dropped [``experimental_params``].
      batch_size: IG's path points evaluated at once (see ``integrated_gradients``).

    >>> import jax.numpy as jnp, numpy as np
    >>> f = lambda x: jnp.sum(x[:4] ** 2)  # only the top half counts
    >>> halves = np.repeat([0, 1], 32).reshape(8, 8)  # two segments
    >>> x = jnp.linspace(0.0, 1.0, 64).reshape(8, 8)
    >>> r = xrai_regions(f, 0.0, channel_axis=None, segments=halves, min_pixel_diff=1)(x)
    >>> int(r.count), r.ranks[:, 0].tolist(), round(float(r.heatmap.sum()), 2)  # sum(IG) ~ f(x) - f(0) = 2.62
    (2, [1, 1, 1, 1, 2, 2, 2, 2], 2.62)
    """
    check_choice(mode, MODES, "mode", "xrai")
    check_choice(rule, RULES, "rule", "xrai")
    check_choice(channel_reduce, CHANNEL_REDUCTIONS, "channel_reduce", "xrai")
    steps = check_positive_int(steps, "steps", "xrai", 2 if rule in ("trapezoid", "linspace") else 1)
    min_diff = check_positive_int(min_pixel_diff, "min_pixel_diff", "xrai")
    batch_size = check_batch_size(batch_size, "xrai")
    if not 0.0 <= float(area_threshold) <= 1.0 or (mode == "fast" and area_threshold != 1.0):
        raise ValueError(f"xrai: area_threshold is the fraction of pixels to cover, in [0, 1], and mode='fast' covers "
                         f"them all (PAIR's ignores it); area_threshold={area_threshold!r} needs mode='full'.")
    if attribution is not None and baseline is not None:
        raise ValueError("xrai: baseline is IG's; with attribution= given it would be unused. Drop one.")

    def regions(x: Any) -> XRAIRegions:
        inputs = split_inputs(x, "xrai")
        leaf = inputs.leaves[0]
        if len(inputs.leaves) != 1 or leaf.ndim < 1 + (channel_axis is not None):
            raise ValueError(f"xrai: explains one image-like array with spatial axes (other inputs xc.fixed), got "
                             f"{[a.shape for a in inputs.leaves]} with channel_axis={channel_axis}.")
        channel = None if channel_axis is None else channel_axis % leaf.ndim
        space = tuple(s for axis, s in enumerate(leaf.shape) if axis != channel)
        if segments is None and not is_concrete(leaf):
            raise ValueError("xrai: segments=None computes Felzenszwalb segments on the host from x's values, which "
                             "jax.jit / jax.vmap do not know: compute them outside (xrai_segments of each image; pad "
                             "with all-False masks to stack them) and pass segments=.")
        given = xrai_segments(np.asarray(leaf), channel_axis=channel) if segments is None else segments
        masks = _masks(given, space, tuple(1 if axis == channel else s for axis, s in enumerate(leaf.shape)))
        atoms = _atoms(masks)  # (n, atoms) masks, each pixel's atom, the atoms' sizes; traced: the pixels
        if attribution is None:
            a = _ig(score_fn, x, leaf, baseline, steps, rule, batch_size)
        else:
            a = jnp.asarray(jax.tree.leaves(attribution(x))[0] if callable(attribution) else attribution)
            if a.shape != leaf.shape:
                raise ValueError(f"xrai: attribution of shape {a.shape} does not match x of shape {leaf.shape}.")
        a = a.astype(accumulation_dtype(leaf.dtype))
        if channel is not None:
            a = a.max(channel) if channel_reduce == "max" else a.sum(channel)
        a = a.reshape(-1)
        if mode == "full":
            pixels = a.shape[0]  # PAIR goes on while mean(covered) <= area_threshold (float64)
            limit = int(np.count_nonzero(np.arange(pixels + 1) / pixels <= area_threshold)) - 1
            found = _full(a, *atoms, limit=limit, min_diff=min_diff)
        else:
            found = _fast(a, *atoms, min_diff=min_diff)
        return _ranked(a, *found, space=space)

    return regions


def xrai(score_fn: ScoreFn, baseline: Any = None, steps: int = 100, rule: str = "linspace", segments: Any = None,
         mode: str = "full", channel_axis: int | None = -1, channel_reduce: str = "max", attribution: Any = None,
         area_threshold: float = 1.0, min_pixel_diff: int = 50,
         batch_size: int | str | None = DEFAULT_BATCH_SIZE) -> AttributionFn:
    """XRAI heatmap (PAIR's ``XRAI.GetMask``) with ``x``'s shape and dtype: each pixel holds its region's
    gain, the same on every channel, so one channel sums to the reduced attribution's sum. Options as
    :func:`xrai_regions`, which also gives the ranked regions.

    >>> import jax.numpy as jnp, numpy as np
    >>> x = jnp.linspace(0.0, 1.0, 192).reshape(8, 8, 3)
    >>> h = xrai(lambda x: jnp.sum(x[:4] ** 2), 0.0, segments=np.repeat([0, 1], 32).reshape(8, 8), min_pixel_diff=1)(x)
    >>> h.shape, bool(h[0, 0, 0] == h[3, 7, 2] > h[7, 7, 0])
    ((8, 8, 3), True)
    """
    regions = xrai_regions(score_fn, baseline, steps, rule, segments, mode, channel_axis, channel_reduce, attribution,
                           area_threshold, min_pixel_diff, batch_size)

    def heatmap(x: Any) -> Any:
        inputs = split_inputs(x, "xrai")
        heat = regions(x).heatmap
        leaf, = inputs.leaves
        if channel_axis is not None:
            heat = jnp.expand_dims(heat, channel_axis % leaf.ndim)
        return inputs.result([jnp.broadcast_to(heat, leaf.shape).astype(leaf.dtype)])

    return heatmap
