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

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from xai_core.attribution.features import Game, game
from xai_core.core.checks import ScoreFn, check_positive_int
from xai_core.core.chunking import DEFAULT_BATCH_SIZE


def halves(g: Game) -> tuple[np.ndarray, np.ndarray]:
    """The default hierarchy, as shap's image masker builds it: the features (by their centroid in
    the feature mask; by id for several inputs) split in halves along the axis they span most,
    recursively. Returns every node's members ``(nodes, K)`` and children ``(nodes, 2)`` (-1:
    a single feature); node 0 is the root."""
    if len(g.masks) == 1:
        ids = g.masks[0]
        grids = np.indices(ids.shape).reshape(ids.ndim, -1).T.astype(np.float64)
        counts = np.bincount(ids.ravel(), minlength=g.k)
        where = np.stack([np.bincount(ids.ravel(), weights=grids[:, a], minlength=g.k) for a in range(ids.ndim)], 1)
        where = where / counts[:, None]
    else:
        where = np.arange(g.k, dtype=np.float64)[:, None]
    members: list[np.ndarray] = []
    children: list[list[int]] = []

    def build(group: np.ndarray) -> int:
        node = len(members)
        members.append(np.isin(np.arange(g.k), group))
        children.append([-1, -1])
        if group.size > 1:
            spread = np.ptp(where[group], axis=0)
            order = group[np.argsort(where[group, int(np.argmax(spread))], kind="stable")]
            children[node] = [build(order[: group.size // 2]), build(order[group.size // 2:])]
        return node

    build(np.arange(g.k))
    return np.array(members), np.array(children)


def owen(score_fn: ScoreFn, feature_mask: Any = None, baseline: Any = 0.0, baselines: Any = None,
         samples: int = 500, batch_size: int | str | None = DEFAULT_BATCH_SIZE) -> Callable[[Any], Any]:
    """Owen values on the default hierarchy of halves (:func:`halves`), ``samples`` evaluations
    at most (shap's ``max_evals``, default 500, ``v(none)`` and ``v(all)`` included).

    The tree is expanded level by level while the budget covers a whole level, in one program;
    the level the budget cannot cover expands its groups of largest ``|value|`` first, as
    shap's priority queue does (shap's queue spans levels, ours ranks within the last one).

    >>> import jax.numpy as jnp, xai_core as xc
    >>> f = lambda x: x[0] * x[1] + x[2] + x[3]  # halves {0, 1} and {2, 3}
    >>> xc.owen(f)(jnp.array([2.0, 3.0, 1.0, 1.0]))
    Array([3., 3., 1., 1.], dtype=float32)
    """
    budget = check_positive_int(samples, "samples", "owen", minimum=2)

    def attribution(x: Any) -> Any:
        g = game(score_fn, x, feature_mask, baseline, baselines, batch_size, "owen")
        members, children = halves(g)
        share = jnp.asarray(members / members.sum(1, keepdims=True), g.acc)  # a group's value, shared equally
        credit = jnp.zeros(g.k, g.acc)
        node, weight, left = np.zeros(1, int), 1.0, budget - 2
        m00 = jnp.zeros((1, g.k), bool)
        f00, f11 = g.value(jnp.zeros(g.k, bool))[None], g.value(jnp.ones(g.k, bool))[None]
        while node.size:
            inner = children[node, 0] >= 0
            credit += (weight * (f11 - f00) * ~inner) @ share[node]
            node, m00, f00, f11 = node[inner], m00[inner], f00[inner], f11[inner]
            if not node.size or left < 2:
                credit += (weight * (f11 - f00)) @ share[node]
                break
            if 2 * node.size <= left:                               # the whole level
                lo, hi = children[node].T
                f10, f01 = _pair(g, m00, members[lo], members[hi])
                node, weight, left = np.concatenate([lo, hi, lo, hi]), weight / 2, left - 2 * node.size
                m00, f00, f11 = (jnp.concatenate(parts) for parts in (
                    [m00, m00, m00 | members[hi], m00 | members[lo]], [f00, f00, f01, f10], [f10, f01, f11, f11]))
                continue
            top = jax.lax.top_k(jnp.abs(f11 - f00), left // 2)[1]   # the largest groups of the last level
            kept = jnp.ones(node.size, bool).at[top].set(False)
            credit += (weight * (f11 - f00) * kept) @ share[node]
            lo, hi = (jnp.asarray(c)[top] for c in children[node].T)
            m00, f00, f11 = m00[top], f00[top], f11[top]
            f10, f01 = _pair(g, m00, jnp.asarray(members)[lo], jnp.asarray(members)[hi])
            half = weight / 2
            credit += (half * (f10 - f00 + f11 - f01)) @ share[lo]
            credit += (half * (f01 - f00 + f11 - f10)) @ share[hi]
            break
        return g.spread(credit)

    return attribution


def _pair(g: Game, context: jax.Array, lo: Any, hi: Any) -> tuple[jax.Array, jax.Array]:
    """``v(context + lo)`` and ``v(context + hi)`` for every row, in one chunked evaluation."""
    rows = jnp.concatenate([context | lo, context | hi])
    values = g.values(lambda i: rows[i], rows.shape[0])
    return values[: context.shape[0]], values[context.shape[0]:]
