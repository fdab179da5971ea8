"""XRAI: a pixel attribution shared out over image regions, ranked greedily.

Kapishnikov, Bolukbasi, Viégas & Terry, "XRAI: Better Attributions Through Regions", ICCV 2019
(arXiv:1906.02825), as PAIR's ``saliency.core.xrai`` (0.2.1) computes it. The pixel attribution ``a``
(IG averaged over two constant baselines, the image's min and max) is reduced over channels (by
``max``); masks ``S_i`` come from Felzenszwalb segments at six scales, each dilated by a disk of
radius 5. With ``C`` the pixels covered so far, the next region is the mask of largest gain
``g(S) = sum_{p in S \\ C} a_p / |S \\ C|`` among those adding at least ``min_pixel_diff`` new pixels
(the others are dropped); its new pixels get ``g(S)`` and join ``C``, until no mask is left or more
than ``area_threshold`` of the image is covered; the uncovered rest is a last region holding its
mean. So the heatmap sums to ``sum(a)`` and is constant on each region. ``mode="fast"`` sorts the
masks once by ``g`` over their whole area and walks them in that order. The walk is one
``lax.while_loop`` (``fori_loop``) over stacked ``(n, pixels)`` masks, so it jits and vmaps;
Felzenszwalb needs the image's values on the host: inside ``jit`` / ``vmap`` pass ``segments=``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from xai_core.attribution.gradients import RULES as IG_RULES
from xai_core.attribution.gradients import AttributionFn, gradient, integrated_gradients
from xai_core.core.checks import ScoreFn, check_baseline, check_batch_size, check_choice, check_positive_int
from xai_core.core.checks import is_concrete
from xai_core.core.chunking import DEFAULT_BATCH_SIZE, accumulation_dtype
from xai_core.core.inputs import split_inputs

__all__ = ["XRAIRegions", "xrai", "xrai_regions", "xrai_segments"]

MODES = ("full", "fast")
CHANNEL_REDUCTIONS = ("max", "sum")
RULES = (*IG_RULES, "linspace")
"""IG's rules plus PAIR's: ``linspace`` takes ``numpy.linspace(0, 1, n)`` as points, each weighted ``1/n``."""
SCALES = (50, 100, 150, 250, 500, 1200)
"""PAIR's Felzenszwalb scales (sigma 0.8, min size 150, on the image resized to 224x224 in [-1, 1])."""
_DOT = {"precision": jax.lax.Precision.HIGHEST}  # exact pixel counts in float32 on GPUs too (no TF32)


class XRAIRegions(NamedTuple):
    """What :func:`xrai_regions` returns (PAIR's ``XRAIOutput``), a pytree over x's spatial axes, in
    at least float32: ``heatmap`` (each pixel's region gain, PAIR's ``attribution_mask``), ``ranks``
    (int32 region rank of each pixel, 1 the best: PAIR's flattened ``segments``), ``gains`` (``(n + 1,)``,
    the gain of rank ``r`` at ``r - 1``, NaN past ``count``), ``count`` (regions, the uncovered rest
    last) and ``attribution`` (the channel-reduced map the regions share out)."""

    heatmap: jax.Array
    ranks: jax.Array
    gains: jax.Array
    count: jax.Array
    attribution: jax.Array

    @property
    def ranked_masks(self) -> jax.Array:
        """``(n + 1, *space)`` booleans, the regions by rank, empty past ``count`` (PAIR's list: ``[:count]``)."""
        lead, slots = self.gains.ndim - 1, self.gains.shape[-1]
        ids = jnp.arange(1, slots + 1).reshape((slots,) + (1,) * (self.ranks.ndim - lead))
        return jnp.expand_dims(self.ranks, lead) == ids


def xrai_segments(image: Any, channel_axis: int | None = -1, resize: bool = True,
                  dilation_radius: int = 5) -> np.ndarray:
    """PAIR's XRAI masks of one HxWxC (HxW: ``channel_axis=None``) image, on the host (scikit-image):
    ``(n, H, W)`` booleans, equal to ``saliency.core.xrai._get_segments_felzenszwalb``. The image is
    rescaled to [-1, 1] by its min and max and (``resize``) resized to 224x224 (cubic, anti-aliased);
    Felzenszwalb segments at :data:`SCALES` are resized back (nearest); each id from a scale's min to
    its max is a mask (empty if lost in the resizing, as PAIR's), dilated by a disk of ``dilation_radius``."""
    try:
        from skimage import morphology, segmentation, transform
    except ImportError as e:
        raise ImportError("xrai's default segments are scikit-image's Felzenszwalb: pip install 'xai-core[segments]' "
                          "(or scikit-image), or pass segments=.") from e
    im = np.asarray(image, np.float64)
    if im.ndim != (2 if channel_axis is None else 3):
        raise ValueError(f"xrai_segments: needs one HxWxC image (HxW with channel_axis=None), got {im.shape}.")
    channel = None if channel_axis is None else -1  # moved last
    im = im if channel is None else np.moveaxis(im, channel_axis, -1)
    low, high = im.min(), im.max()
    if not np.isfinite(high - low) or high == low:
        raise ValueError(f"xrai_segments: the image is constant or not finite (min {low}, max {high}); pass segments=.")
    space = im.shape[:2]
    im = (im - low) / (high - low) * 2.0 - 1.0
    if resize:
        im = transform.resize(im, (224, 224), order=3, mode="constant", preserve_range=True, anti_aliasing=True)
    masks = []
    for scale in SCALES:
        seg = segmentation.felzenszwalb(im, scale=scale, sigma=0.8, min_size=150, channel_axis=channel)
        if resize:
            seg = transform.resize(seg, space, order=0, preserve_range=True, mode="constant", anti_aliasing=False)
            seg = seg.astype(int)
        masks += [seg == i for i in range(seg.min(), seg.max() + 1)]
    if dilation_radius:
        masks = [morphology.dilation(m, footprint=morphology.disk(dilation_radius)) for m in masks]
    return np.stack(masks)


def _masks(segments: Any, space: tuple[int, ...], with_channel: tuple[int, ...]) -> jax.Array:
    """``(n, pixels)`` booleans from a list of masks, stacked masks or an integer segment map."""
    what = (f"Give boolean masks of x's spatial shape {space} (x without channel_axis; None if it has none), a list "
            "or stacked (n, *space), or an int map of that shape.")
    if isinstance(segments, (list, tuple)):
        if not segments:
            raise ValueError(f"xrai: segments is an empty list. {what}")
        segments = jnp.stack([jnp.asarray(s) for s in segments])
        if segments.dtype != bool:
            raise TypeError(f"xrai: a list of segments holds boolean masks, got dtype {segments.dtype}. {what}")
    s = segments if isinstance(segments, jax.Array) else np.asarray(segments)
    if s.dtype != bool:
        if not np.issubdtype(s.dtype, np.integer):
            raise TypeError(f"xrai: segments of dtype {s.dtype} are neither boolean masks nor integer ids. {what}")
        if not is_concrete(s):
            raise ValueError(f"xrai: a traced integer segment map cannot be unpacked into masks (their number depends "
                             f"on its values); pass stacked boolean masks (n, *space) instead. {what}")
        if s.shape not in (space, with_channel):
            raise ValueError(f"xrai: segment map of shape {s.shape} does not match x's spatial shape {space}. {what}")
        s = np.asarray(s).reshape(space)
        s = s[None] == np.arange(s.min(), s.max() + 1).reshape((-1,) + (1,) * len(space))
    if s.ndim != len(space) + 1 or tuple(s.shape[1:]) != space:
        raise ValueError(f"xrai: masks of shape {tuple(s.shape)} do not match x's spatial shape {space}. {what}")
    if s.shape[0] == 0 or (is_concrete(s) and not np.asarray(s).any()):
        raise ValueError(f"xrai: the segments cover no pixel ({s.shape[0]} masks). {what}")
    return jnp.asarray(s).reshape(s.shape[0], -1)


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


def _take(state: tuple[jax.Array, ...], new: jax.Array, gain: jax.Array, ok: jax.Array) -> tuple[jax.Array, ...]:
    """One step of the walk: if ``ok``, the ``new`` pixels become region ``k`` with ``gain``."""
    covered, region, gains, k = state
    new = new & ok
    return covered | new, jnp.where(new, k, region), gains.at[k].set(jnp.where(ok, gain, gains[k])), k + ok


def _start(a: jax.Array, n: int) -> tuple[jax.Array, ...]:
    return jnp.zeros(a.shape, bool), jnp.full(a.shape, -1, jnp.int32), jnp.zeros(n + 1, a.dtype), jnp.int32(0)


@partial(jax.jit, static_argnames=("limit", "min_diff"))  # compiled once per shape, also eagerly
def _full(a: jax.Array, masks: jax.Array, limit: int, min_diff: int) -> tuple[jax.Array, ...]:
    """PAIR's ``_xrai``: region (step) of each pixel (-1: uncovered), gain of each step, number of steps."""
    masks = jax.lax.optimization_barrier(masks)  # given masks are constants: XLA would fold their sums, slowly
    weights = masks.astype(a.dtype)

    def cond(state: tuple[Any, ...]) -> jax.Array:
        walk, alive = state
        return alive.any() & (walk[0].sum() <= limit)

    def body(state: tuple[Any, ...]) -> tuple[Any, ...]:
        walk, alive = state
        free = (~walk[0]).astype(a.dtype)
        new_pixels = jnp.dot(weights, free, **_DOT)
        alive = alive & (new_pixels >= min_diff)
        gain = jnp.where(alive, jnp.dot(weights, a * free, **_DOT) / jnp.maximum(new_pixels, 1), -jnp.inf)
        best = jnp.argmax(gain)  # the first of equal gains, as PAIR's strict ">"
        return _take(walk, masks[best] & ~walk[0], gain[best], alive[best]), alive.at[best].set(False)

    return jax.lax.while_loop(cond, body, (_start(a, masks.shape[0]), jnp.ones(masks.shape[0], bool)))[0][1:]


@partial(jax.jit, static_argnames="min_diff")
def _fast(a: jax.Array, masks: jax.Array, min_diff: int) -> tuple[jax.Array, ...]:
    """PAIR's ``_xrai_fast``: the masks sorted once by their whole gain density, then walked."""
    weights = jax.lax.optimization_barrier(masks).astype(a.dtype)
    size = weights.sum(1)
    whole = jnp.where(size > 0, jnp.dot(weights, a, **_DOT) / jnp.maximum(size, 1), -jnp.inf)
    order = jnp.argsort(-whole, stable=True)  # PAIR's stable sort by -gain

    def body(i: jax.Array, walk: tuple[jax.Array, ...]) -> tuple[jax.Array, ...]:
        new = masks[order[i]] & ~walk[0]
        count = new.sum()
        return _take(walk, new, jnp.where(new, a, 0).sum() / jnp.maximum(count, 1), count >= min_diff)

    return jax.lax.fori_loop(0, masks.shape[0], body, _start(a, masks.shape[0]))[1:]


@partial(jax.jit, static_argnames="space")
def _ranked(a: jax.Array, region: jax.Array, gains: jax.Array, k: jax.Array, space: tuple[int, ...]) -> XRAIRegions:
    """Fill the uncovered pixels with their mean and rank the regions by gain (stable), the rest last."""
    rest, step, slots = region < 0, jnp.maximum(region, 0), jnp.arange(gains.shape[0])
    rest_count = rest.sum()
    rest_gain = jnp.where(rest, a, 0).sum() / jnp.maximum(rest_count, 1)
    order = jnp.argsort(jnp.where(slots < k, -gains, jnp.inf), stable=True)
    rank_of_step = jnp.zeros_like(slots).at[order].set(slots)
    by_rank = jnp.where(slots < k, gains[order], jnp.nan).at[k].set(jnp.where(rest_count > 0, rest_gain, jnp.nan))
    return XRAIRegions(heatmap=jnp.where(rest, rest_gain, gains[step]).reshape(space),
                       ranks=(jnp.where(rest, k, rank_of_step[step]) + 1).astype(jnp.int32).reshape(space),
                       gains=by_rank, count=k + (rest_count > 0), attribution=a.reshape(space))


def xrai_regions(score_fn: ScoreFn, baseline: Any = None, steps: int = 100, rule: str = "linspace",
                 segments: Any = None, mode: str = "full", channel_axis: int | None = -1, channel_reduce: str = "max",
                 attribution: Any = None, area_threshold: float = 1.0, min_pixel_diff: int = 50,
                 batch_size: int | str | None = DEFAULT_BATCH_SIZE) -> Callable[[Any], XRAIRegions]:
    """XRAI's heatmap and ranked regions of one image ``x`` (see the module doc): ``fn(x) -> XRAIRegions``.

    Args (PAIR's defaults; its names in brackets):
      score_fn: ``x -> scalar`` for one example.
      baseline: IG's baseline (a scalar or an array broadcastable to ``x``) or a list of them, averaged;
        ``None`` is PAIR's ``[min(x), max(x)]`` [``baselines``].
      steps, rule: IG's path points and rule (:data:`RULES`); ``"linspace"`` is PAIR's IG: points
        ``linspace(0, 1, steps)``, weights ``1/steps``.
      segments: boolean masks (a list, or stacked ``(n, *space)``; may be traced, all-False ones are never
        chosen) or an integer segment map (ids ``min..max``, not dilated); ``None``: :func:`xrai_segments`
        of a concrete ``x``, on the host.
      mode: ``"full"`` (re-scored after each region) or ``"fast"`` (sorted once) [``algorithm``].
      channel_axis, channel_reduce: the axis (``None``: none) reduced by ``"max"`` (PAIR) or ``"sum"``
        (then the heatmap sums to IG's sum).
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
            found = _full(a, masks, limit=limit, min_diff=min_diff)
        else:
            found = _fast(a, masks, min_diff=min_diff)
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
