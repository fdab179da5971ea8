"""XRAI's greedy walk, one compiled program: ``"full"`` (PAIR's ``_xrai``) a ``lax.while_loop`` that
re-scores every mask after each region, ``"fast"`` (``_xrai_fast``) a ``lax.fori_loop`` over the masks
sorted once; then the regions ranked by gain, the uncovered rest last (:class:`XRAIRegions`).

The walk runs on atoms (see :mod:`xai_core.attribution.xrai.masks`): ``(n, atoms)`` masks, each atom's
pixel count and attribution sum, so a step of ``"full"`` is two ``(n, atoms)`` matrix-vector
products (new pixels and their sum of each mask); the atoms' regions then go back to the pixels.
Traced masks have no atoms (``atom_of_pixel=None``): each pixel is one, the same walk.
"""

from __future__ import annotations

from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

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


def _atoms_of(a: jax.Array, masks: jax.Array, atom_of_pixel: jax.Array | None,
              counts: jax.Array | None) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The masks, the attribution summed per atom and the atoms' pixel counts (pixels are the atoms
    where ``atom_of_pixel`` is None)."""
    # given masks are constants inside an outer jit: XLA would fold their sums, slowly
    masks, atom_of_pixel, counts = jax.lax.optimization_barrier((masks, atom_of_pixel, counts))
    if atom_of_pixel is None:
        return masks, a, jnp.ones(a.shape, jnp.int32)
    return masks, jax.ops.segment_sum(a, atom_of_pixel, counts.shape[0]), counts


def _to_pixels(region: jax.Array, atom_of_pixel: jax.Array | None) -> jax.Array:
    return region if atom_of_pixel is None else region[atom_of_pixel]


def _take(state: tuple[jax.Array, ...], new: jax.Array, gain: jax.Array, ok: jax.Array) -> tuple[jax.Array, ...]:
    """One step of the walk: if ``ok``, the ``new`` atoms become region ``k`` with ``gain``."""
    covered, region, gains, k = state
    new = new & ok
    return covered | new, jnp.where(new, k, region), gains.at[k].set(jnp.where(ok, gain, gains[k])), k + ok


def _start(a: jax.Array, n: int) -> tuple[jax.Array, ...]:
    return jnp.zeros(a.shape, bool), jnp.full(a.shape, -1, jnp.int32), jnp.zeros(n + 1, a.dtype), jnp.int32(0)


@partial(jax.jit, static_argnames=("limit", "min_diff"))  # compiled once per shape, also eagerly
def _full(a: jax.Array, masks: jax.Array, atom_of_pixel: jax.Array | None, counts: jax.Array | None,
          limit: int, min_diff: int) -> tuple[jax.Array, ...]:
    """PAIR's ``_xrai``: region (step) of each pixel (-1: uncovered), gain of each step, number of steps."""
    masks, a_atoms, counts = _atoms_of(a, masks, atom_of_pixel, counts)
    weights, sizes = masks.astype(a.dtype), counts.astype(a.dtype)

    def cond(state: tuple[Any, ...]) -> jax.Array:
        walk, alive = state
        return alive.any() & (jnp.where(walk[0], counts, 0).sum() <= limit)

    def body(state: tuple[Any, ...]) -> tuple[Any, ...]:
        walk, alive = state
        free = (~walk[0]).astype(a.dtype)
        new_pixels = jnp.dot(weights, sizes * free, **_DOT)
        alive = alive & (new_pixels >= min_diff)
        gain = jnp.where(alive, jnp.dot(weights, a_atoms * free, **_DOT) / jnp.maximum(new_pixels, 1), -jnp.inf)
        best = jnp.argmax(gain)  # the first of equal gains, as PAIR's strict ">"
        return _take(walk, masks[best] & ~walk[0], gain[best], alive[best]), alive.at[best].set(False)

    walk = jax.lax.while_loop(cond, body, (_start(a_atoms, masks.shape[0]), jnp.ones(masks.shape[0], bool)))[0]
    return _to_pixels(walk[1], atom_of_pixel), *walk[2:]


@partial(jax.jit, static_argnames="min_diff")
def _fast(a: jax.Array, masks: jax.Array, atom_of_pixel: jax.Array | None, counts: jax.Array | None,
          min_diff: int) -> tuple[jax.Array, ...]:
    """PAIR's ``_xrai_fast``: the masks sorted once by their whole gain density, then walked."""
    masks, a_atoms, counts = _atoms_of(a, masks, atom_of_pixel, counts)
    weights = masks.astype(a.dtype)
    size = jnp.dot(weights, counts.astype(a.dtype), **_DOT)
    whole = jnp.where(size > 0, jnp.dot(weights, a_atoms, **_DOT) / jnp.maximum(size, 1), -jnp.inf)
    order = jnp.argsort(-whole, stable=True)  # PAIR's stable sort by -gain

    def body(i: jax.Array, walk: tuple[jax.Array, ...]) -> tuple[jax.Array, ...]:
        new = masks[order[i]] & ~walk[0]
        count = jnp.where(new, counts, 0).sum()
        return _take(walk, new, jnp.where(new, a_atoms, 0).sum() / jnp.maximum(count, 1), count >= min_diff)

    walk = jax.lax.fori_loop(0, masks.shape[0], body, _start(a_atoms, masks.shape[0]))
    return _to_pixels(walk[1], atom_of_pixel), *walk[2:]


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
