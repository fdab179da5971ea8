"""Owen values over a hierarchy of feature groups: shap's ``PartitionExplainer``.

Owen, "Values of games with a priori unions" (1977); Lundberg et al.'s shap computes them
recursively on a binary hierarchy (read from shap's ``_partition.py``): a group ``G`` with
halves ``L, R``, reached in context ``C`` (the features of ``C`` on), has value
``v(C + G) - v(C)``; expanding it costs two evaluations, ``v(C + L)`` and ``v(C + R)``, and
hands half of its value to each half in each of two contexts: ``L`` gets
``[v(C + L) - v(C)] / 2 + [v(C + G) - v(C + R)] / 2``, and ``R`` likewise. A group left
unexpanded shares its value equally among its features, so efficiency,
``sum(phi) = v(all) - v(none)``, holds at every budget; with a budget for the whole tree these
are the exact Owen values.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from xai_core.attribution.features import Game, game
from xai_core.core.checks import ScoreFn, check_positive_int
from xai_core.core.chunking import DEFAULT_BATCH_SIZE


def halves(g: Game, depth: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The default hierarchy, as shap's image masker builds it: the features (by their centroid in
    the feature mask; by id for several inputs) split in halves along the axis they span most,
    recursively, down to ``depth`` levels. Every group is a run of one order of the features:
    returns that ``order`` (``K``), each node's ``[start, stop)`` in it (``(nodes, 2)``) and its
    children (``(nodes, 2)``; -1 for a single feature or at ``depth``); node 0 is the root."""
    if len(g.masks) == 1:
        ids = g.masks[0].ravel()
        grids = np.indices(g.masks[0].shape).reshape(g.masks[0].ndim, -1)
        counts = np.bincount(ids, minlength=g.k)
        where = np.stack([np.bincount(ids, weights=axis, minlength=g.k) for axis in grids], 1) / counts[:, None]
    else:
        where = np.arange(g.k, dtype=np.float64)[:, None]
    order = np.arange(g.k)
    spans: list[list[int]] = []
    children: list[list[int]] = []

    def build(start: int, stop: int, level: int) -> int:
        node = len(spans)
        spans.append([start, stop])
        children.append([-1, -1])
        if stop - start > 1 and level < depth:
            group = order[start:stop]
            axis = int(np.argmax(np.ptp(where[group], axis=0)))
            order[start:stop] = group[np.argsort(where[group, axis], kind="stable")]
            middle = start + (stop - start) // 2
            children[node] = [build(start, middle, level + 1), build(middle, stop, level + 1)]
        return node

    build(0, g.k, 0)
    return order, np.array(spans), np.array(children)


def owen(score_fn: ScoreFn, feature_mask: Any = None, baseline: Any = 0.0, baselines: Any = None,
         samples: int = 500, batch_size: int | str | None = DEFAULT_BATCH_SIZE) -> Callable[[Any], Any]:
    """Owen values on the default hierarchy of halves (:func:`halves`), ``samples`` evaluations
    at most (shap's ``max_evals``, default 500, ``v(none)`` and ``v(all)`` included).

    The tree is expanded level by level while the budget covers a whole level, in one program;
    the level the budget cannot cover expands its groups of largest ``|value|`` first, as
    shap's priority queue does (shap's queue spans levels, ours ranks within the last one).
    Groups are runs of one order of the features, so pixel-level images (``K`` in the
    hundreds of thousands) cost ``O(samples K)`` memory.

    >>> import jax.numpy as jnp, xai_core as xc
    >>> f = lambda x: x[0] * x[1] + x[2] + x[3]  # halves {0, 1} and {2, 3}
    >>> xc.owen(f)(jnp.array([2.0, 3.0, 1.0, 1.0]))
    Array([3., 3., 1., 1.], dtype=float32)
    """
    budget = check_positive_int(samples, "samples", "owen", minimum=2)

    def attribution(x: Any) -> Any:
        g = game(score_fn, x, feature_mask, baseline, baselines, batch_size, "owen")
        # a level d is expanded only if the budget covered 2 (1 + 4 + ... + 4^(d-1)) evaluations before it
        order, span, children = halves(g, depth=int(math.log(1.5 * budget + 1, 4)) + 2)
        rank = jnp.asarray(np.argsort(order))       # where each feature sits in the order
        spans = jnp.asarray(span)
        position = jnp.arange(g.k)
        credit = jnp.zeros(g.k + 1, g.acc)          # per position, as differences (a group is a run)

        def share(value: jax.Array, nodes: Any) -> jax.Array:
            """Add ``value`` of each node, shared equally over its run, to ``credit``'s differences."""
            start, stop = spans[nodes].T
            per = value / (stop - start)
            return jnp.zeros(g.k + 1, g.acc).at[start].add(per).at[stop].add(-per)

        def run(nodes: Any) -> jax.Array:
            start, stop = spans[nodes].T
            return (position >= start[:, None]) & (position < stop[:, None])

        def pair(context: jax.Array, lo: Any, hi: Any) -> tuple[jax.Array, jax.Array]:
            """``v(context + lo)`` and ``v(context + hi)`` for every row, in one chunked evaluation."""
            rows = jnp.concatenate([context | run(lo), context | run(hi)])
            values = g.values(lambda i: rows[i][rank], rows.shape[0])
            return values[: context.shape[0]], values[context.shape[0]:]

        node, weight, left = np.zeros(1, int), 1.0, budget - 2
        m00 = jnp.zeros((1, g.k), bool)
        f00, f11 = g.value(jnp.zeros(g.k, bool))[None], g.value(jnp.ones(g.k, bool))[None]
        while node.size:
            inner = children[node, 0] >= 0
            credit += share(weight * (f11 - f00) * ~inner, node)
            node, m00, f00, f11 = node[inner], m00[inner], f00[inner], f11[inner]
            if not node.size or left < 2:
                credit += share(weight * (f11 - f00), node)
                break
            if 2 * node.size <= left:                               # the whole level
                lo, hi = children[node].T
                f10, f01 = pair(m00, lo, hi)
                node, weight, left = np.concatenate([lo, hi, lo, hi]), weight / 2, left - 2 * node.size
                m00, f00, f11 = (jnp.concatenate(parts) for parts in (
                    [m00, m00, m00 | run(hi), m00 | run(lo)], [f00, f00, f01, f10], [f10, f01, f11, f11]))
                continue
            top = jax.lax.top_k(jnp.abs(f11 - f00), left // 2)[1]   # the largest groups of the last level
            credit += share(weight * (f11 - f00) * jnp.ones(node.size, bool).at[top].set(False), node)
            lo, hi = (jnp.asarray(c)[top] for c in children[node].T)
            m00, f00, f11 = m00[top], f00[top], f11[top]
            f10, f01 = pair(m00, lo, hi)
            credit += share(weight / 2 * (f10 - f00 + f11 - f01), lo) + share(weight / 2 * (f01 - f00 + f11 - f10), hi)
            break
        return g.spread(jnp.cumsum(credit)[:g.k][rank])

    return attribution
