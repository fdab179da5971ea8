"""Feature groups and the coalition game every model-agnostic method plays.

A ``feature_mask`` is an integer array broadcastable to ``x``'s shape with ids ``0..K-1``
(Captum's convention): the elements sharing an id form one feature, switched on (``x``'s
values) or off (the baseline's) as a whole. ``None`` makes every element its own feature. For
a pytree ``x`` give a pytree of masks of ``x``'s structure (an id used in two inputs groups
their elements into one feature, as in Captum), or one array used for every input; inputs
marked ``xc.fixed`` are never switched. A coalition is a boolean vector ``z`` of length ``K``
and its value ``v(z)`` is the score with the features of ``z`` on and the rest off:

- ``baseline`` (a value or an array of ``x``'s shape, default 0) fills the features that are off;
- ``baselines`` (a background set, ``(n, *x.shape)``) averages ``v(z)`` over the set instead,
  the interventional expectation of shap's maskers.

Every method evaluates its coalitions ``batch_size`` at a time in one compiled program
(:func:`xai_core.core.chunking.chunked_map`) and returns one value per feature, spread over
the feature's elements: the attribution has ``x``'s structure, shapes and dtypes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from xai_core.attribution.expectations import _background
from xai_core.core.checks import ScoreFn, check_batch_size, checked_score, is_concrete
from xai_core.core.chunking import (
    CPU_FORWARD_CHUNK,
    FORWARD_ELEMENTS_PER_CORE,
    accumulation_dtype,
    chunked_map,
    resolve_batch_size,
)
from xai_core.core.inputs import Inputs, split_inputs
from xai_core.core.inputs import baselines as leaf_baselines


@dataclass(frozen=True)
class Game:
    """The coalition game of one example (see the module doc).

    ``k`` features; ``masks`` the id array of every attributed leaf (numpy, broadcastable to
    the leaf); ``score(leaves)`` the score with the attributed leaves replaced; ``value(z)``
    the score of coalition ``z``; ``spread(values)`` the attribution of per-feature ``values``;
    ``chunk`` coalitions evaluated at once; ``acc`` the dtype of sums.
    """

    k: int
    inputs: Inputs
    masks: list[np.ndarray]
    fills: list[jax.Array] | None      # the baseline of every leaf (None with a background set)
    score: Callable[[list[jax.Array]], jax.Array]
    value: Callable[[jax.Array], jax.Array]
    chunk: int | None                  # coalitions evaluated at once (whole forwards)
    box_chunk: int | None              # boxes evaluated at once by incremental inference
    acc: Any

    def values(self, coalition: Callable[[jax.Array], jax.Array], n: int) -> jax.Array:
        """``v(coalition(i))`` for ``i in range(n)``, chunked: shape ``(n,)``."""
        return chunked_map(lambda i: self.value(coalition(i)), n, self.chunk)

    def spread(self, values: jax.Array) -> Any:
        """Every element of feature ``k`` gets ``values[k]``; ``x``'s structure, shapes and dtypes."""
        return self.inputs.result([jnp.broadcast_to(values[m], a.shape).astype(a.dtype)
                                   for m, a in zip(self.masks, self.inputs.leaves)])


def feature_masks(inputs: Inputs, feature_mask: Any, method: str) -> tuple[list[np.ndarray], int]:
    """The id array of every attributed leaf and the number of features ``K`` (checked)."""
    if feature_mask is None:
        masks, start = [], 0
        for a in inputs.leaves:
            masks.append(np.arange(start, start + a.size, dtype=np.int32).reshape(a.shape))
            start += a.size
        return masks, start
    masks = []
    for m, a in zip(inputs.per_leaf(feature_mask, "feature_mask", method), inputs.leaves):
        if m is None or not is_concrete(m):
            raise ValueError(f"{method}: feature_mask must be a concrete integer array (numpy or a JAX "
                             "constant), not traced or None: the number of features fixes the program's "
                             "shapes. Under jax.vmap over examples close over one mask for every example.")
        m = np.asarray(m)
        if not np.issubdtype(m.dtype, np.integer):
            raise TypeError(f"{method}: feature_mask must hold integer feature ids, got dtype {m.dtype}.")
        try:
            ok = np.broadcast_shapes(m.shape, a.shape) == a.shape
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"{method}: feature_mask of shape {m.shape} does not broadcast to x of shape "
                             f"{tuple(a.shape)}; give one id per element, or e.g. shape (H, W, 1) to group "
                             "the channels of an HxWxC image (xc.segments.grid makes one).")
        masks.append(m.astype(np.int32))
    ids = np.unique(np.concatenate([m.ravel() for m in masks]))
    k = int(ids[-1]) + 1 if ids.size else 0
    if ids[0] != 0 or ids.size != k:
        missing = sorted(set(range(max(k, 1))) - set(ids.tolist()))[:5]
        raise ValueError(f"{method}: feature_mask ids must be 0..K-1 with every id used (Captum's convention); "
                         f"got {ids.size} ids from {ids[0]} to {ids[-1]} (missing e.g. {missing}). Renumber "
                         "them: np.unique(mask, return_inverse=True)[1].reshape(mask.shape).")
    return masks, k


def game(score_fn: ScoreFn, x: Any, feature_mask: Any, baseline: Any, baselines: Any,
         batch_size: int | str | None, method: str) -> Game:
    """The coalition game of ``score_fn`` at ``x`` (see the module doc)."""
    score = checked_score(score_fn, method)
    batch_size = check_batch_size(batch_size, method)
    inputs = split_inputs(x, method)
    xs = inputs.leaves
    masks, k = feature_masks(inputs, feature_mask, method)
    acc = accumulation_dtype(jnp.result_type(*xs))

    def leaf_score(leaves: list[jax.Array]) -> jax.Array:
        return score(inputs.score_input(leaves)).astype(acc)

    def at(z: jax.Array, others: list[jax.Array]) -> jax.Array:
        return leaf_score([jnp.where(z[m], a, b) for m, a, b in zip(masks, xs, others)])

    if baselines is None:
        fills = leaf_baselines(inputs, baseline, method)
        value, n = (lambda z: at(z, fills)), 1
    else:
        if not (isinstance(baseline, (int, float)) and baseline == 0):
            raise ValueError(f"{method}: give baseline= (one value) or baselines= (a background set), not both.")
        fills, sets = None, _background(inputs, baselines, method)
        value, n = (lambda z: jnp.mean(jax.vmap(lambda *bs: at(z, list(bs)))(*sets))), sets[0].shape[0]
    per_core = max(1, FORWARD_ELEMENTS_PER_CORE // n)
    whole = resolve_batch_size(batch_size, xs, per_core, least=8, most=CPU_FORWARD_CHUNK)
    boxes = resolve_batch_size(batch_size, xs, per_core, least=8)
    return Game(k, inputs, masks, fills, leaf_score, value, whole, boxes, acc)


def bits(index: jax.Array, k: int) -> jax.Array:
    """Coalition number ``index`` of ``2^k`` as a boolean vector (bit ``j`` is feature ``j``)."""
    return ((index >> jnp.arange(k, dtype=index.dtype)) & 1).astype(bool)


def check_draws(draws: Any, k: int, what: str, method: str, dtype: Any) -> jax.Array:
    """A replayed ``(n, K)`` array of permutations or coalitions, checked against ``K``."""
    draws = jnp.asarray(draws)
    if draws.ndim != 2 or draws.shape[1] != k or draws.shape[0] < 1:
        raise ValueError(f"{method}: {what} must have shape (n, K) = (n, {k}) for the {k} features, "
                         f"got {tuple(draws.shape)}.")
    if is_concrete(draws) and what == "permutations":
        sorted_rows = np.sort(np.asarray(draws), axis=1)
        if not (sorted_rows == np.arange(k)).all():
            raise ValueError(f"{method}: every row of permutations must be a permutation of 0..{k - 1}.")
    return draws.astype(dtype)
