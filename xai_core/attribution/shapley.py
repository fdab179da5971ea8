"""Feature ablation and Shapley values: exact, and by antithetic permutation sampling.

Every method plays the coalition game of :mod:`xai_core.attribution.features` (``feature_mask``,
``baseline`` / ``baselines``, ``batch_size``) and evaluates all its coalitions in one compiled
program. Shapley, "A value for n-person games" (1953); Strumbelj & Kononenko, "Explaining
prediction models and individual predictions with feature contributions" (2014) for the
permutation estimator; Captum's ``FeatureAblation``, ``ShapleyValues`` and
``ShapleyValueSampling`` use the same definitions (cross-checked in ``tests/test_model_agnostic_refs.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from xai_core.attribution.features import Game, bits, check_draws, game
from xai_core.core.checks import ScoreFn, check_positive_int
from xai_core.core.chunking import DEFAULT_BATCH_SIZE, chunked_map, chunked_sum
from xai_core.graph.incremental import incremental as graph_incremental

MAX_FEATURES = 20
"""Exact Shapley values evaluate all ``2^K`` coalitions: up to ``K = 20`` (a million
evaluations) by default."""


def feature_ablation(score_fn: ScoreFn, feature_mask: Any = None, baseline: Any = 0.0, baselines: Any = None,
                     batch_size: int | str | None = DEFAULT_BATCH_SIZE, incremental: bool = True) -> Callable[[Any], Any]:
    """Feature ablation: ``a_k = f(x) - f(x with feature k off)``, ``K + 1`` evaluations.

    With one attributed input, one ``baseline`` and small features (a grid: every feature's
    bounding box at most a quarter of ``x``), ``incremental`` recomputes per feature only what
    its box reaches (:func:`xai_core.graph.incremental.incremental`, as occlusion does).

    >>> import jax.numpy as jnp, xai_core as xc
    >>> f = lambda x: jnp.sum(x * jnp.array([1.0, 2.0, 3.0]))
    >>> xc.feature_ablation(f, feature_mask=jnp.array([0, 0, 1]))(jnp.ones(3))
    Array([3., 3., 3.], dtype=float32)
    """

    def attribution(x: Any) -> Any:
        g = game(score_fn, x, feature_mask, baseline, baselines, batch_size, "feature_ablation")
        full = g.value(jnp.ones(g.k, bool))
        boxes = _boxes(g) if incremental else None
        if boxes is None:
            off = g.values(lambda i: jnp.arange(g.k) != i, g.k)
        else:
            off = _incremental_values(g, *boxes)
        return g.spread(full - off)

    return attribution


def _boxes(g: Game) -> tuple[np.ndarray, tuple[int, ...]] | None:
    """Each feature's box start and the one box shape that holds every feature, or ``None``
    where incremental evaluation does not apply or would not pay."""
    if len(g.masks) != 1 or g.fills is None:
        return None
    shape = tuple(g.inputs.leaves[0].shape)
    ids = np.broadcast_to(g.masks[0], shape)
    lo = np.full((g.k, len(shape)), np.iinfo(np.int32).max)
    hi = np.zeros((g.k, len(shape)), np.int64)
    for axis in range(len(shape)):
        where = np.broadcast_to(np.arange(shape[axis]).reshape((-1,) + (1,) * (len(shape) - axis - 1)), shape)
        np.minimum.at(lo[:, axis], ids.ravel(), where.ravel())
        np.maximum.at(hi[:, axis], ids.ravel(), where.ravel())
    window = tuple(int(w) for w in (hi - lo + 1).max(0))
    if 4 * math.prod(window) > math.prod(shape):
        return None
    return np.minimum(lo, np.asarray(shape) - np.asarray(window)), window


def _incremental_values(g: Game, starts: np.ndarray, window: tuple[int, ...]) -> jax.Array:
    """``v(all but feature k)`` for every ``k``, recomputing only what feature ``k``'s box reaches."""
    x, fill = g.inputs.leaves[0], g.fills[0]
    ids = jnp.asarray(np.broadcast_to(g.masks[0], x.shape))
    changed = graph_incremental(lambda a: g.score([a]), x)
    starts = jnp.asarray(starts)

    def off(k: jax.Array) -> jax.Array:
        box = [starts[k, axis] for axis in range(x.ndim)]
        patch = jnp.where(jax.lax.dynamic_slice(ids, box, window) == k, jax.lax.dynamic_slice(fill, box, window),
                          jax.lax.dynamic_slice(x, box, window))
        return changed(box, patch).astype(g.acc)

    return chunked_map(off, g.k, g.box_chunk)


def shapley(score_fn: ScoreFn, feature_mask: Any = None, baseline: Any = 0.0, baselines: Any = None,
            max_features: int = MAX_FEATURES, batch_size: int | str | None = DEFAULT_BATCH_SIZE) -> Callable[[Any], Any]:
    """Exact Shapley values over all ``2^K`` coalitions, in one program:
    ``phi_k = sum_{S not containing k} |S|! (K-|S|-1)! / K! [v(S + k) - v(S)]``.

    Summed per coalition, ``phi = sum_z v(z) c(z)`` with ``c_k(z) = w(|z|-1)`` where ``z_k`` is on
    and ``-w(|z|)`` where it is off (``w(s) = s! (K-s-1)! / K!``), so memory stays that of one
    chunk of ``batch_size`` coalitions. More than ``max_features`` features is an error that points
    to the sampled methods; Captum's ``ShapleyValues`` is the reference.

    >>> import jax.numpy as jnp, xai_core as xc
    >>> f = lambda x: x[0] * x[1] + x[2]  # the product's credit is shared equally
    >>> xc.shapley(f)(jnp.array([2.0, 3.0, 1.0])).round(4)
    Array([3., 3., 1.], dtype=float32)
    """
    limit = check_positive_int(max_features, "max_features", "shapley")

    def attribution(x: Any) -> Any:
        g = game(score_fn, x, feature_mask, baseline, baselines, batch_size, "shapley")
        if g.k > min(limit, 30):
            raise ValueError(
                f"shapley: {g.k} features need 2^{g.k} = {2 ** g.k} evaluations; exact values are limited to "
                f"max_features={limit} (at most 30). Group the features (feature_mask=, e.g. xc.segments.grid) or "
                "estimate them: shapley_sampling, kernel_shap or owen.")
        weight = jnp.asarray([math.factorial(s) * math.factorial(g.k - s - 1) / math.factorial(g.k)
                              for s in range(g.k)], g.acc)

        def term(i: jax.Array) -> jax.Array:
            z = bits(i, g.k)
            size = z.sum()
            return g.value(z) * jnp.where(z, weight[jnp.maximum(size - 1, 0)], -weight[jnp.minimum(size, g.k - 1)])

        return g.spread(chunked_sum(term, 2 ** g.k, g.chunk))

    return attribution


def shapley_sampling(score_fn: ScoreFn, feature_mask: Any = None, baseline: Any = 0.0, baselines: Any = None,
                     samples: int = 32, antithetic: bool = True, permutations: Any = None, with_error: bool = False,
                     batch_size: int | str | None = DEFAULT_BATCH_SIZE) -> Callable[..., Any]:
    """Shapley values estimated from ``samples`` random feature orders (Strumbelj & Kononenko 2014):
    each order switches the features on one by one from the baseline and credits each with the
    change it makes; ``phi`` is the mean credit. ``K - 1`` evaluations per order (plus ``v(none)``
    and ``v(all)`` once), and efficiency, ``sum(phi) = v(all) - v(none)``, holds for every order.

    Args:
      samples: orders drawn with ``key``. ``antithetic`` (default) draws ``samples / 2`` orders
        and adds each one's reverse, which cancels much of the noise (``samples`` counts both).
      permutations: an int array ``(n, K)`` of orders used as given (no reverses added), to
        replay another implementation's draws; then no key is needed.
      with_error: return ``(phi, standard_error)``: the standard error of the mean over orders
        (over pairs with ``antithetic``), per feature; the convergence report Captum's IG has.

    >>> import jax, jax.numpy as jnp, xai_core as xc
    >>> f = lambda x: x[0] * x[1] + x[2]
    >>> xc.shapley_sampling(f, samples=2)(jnp.array([2.0, 3.0, 1.0]), key=jax.random.key(0))
    Array([3., 3., 1.], dtype=float32)
    """
    n = check_positive_int(samples, "samples", "shapley_sampling")
    pairs = antithetic and permutations is None
    if pairs and n % 2:
        raise ValueError(f"shapley_sampling: samples={n} is odd; with antithetic=True it counts every order and its "
                         "reverse, so give an even number (or antithetic=False).")

    def attribution(x: Any, *, key: Any = None) -> Any:
        g = game(score_fn, x, feature_mask, baseline, baselines, batch_size, "shapley_sampling")
        k = g.k
        if permutations is not None:
            orders = check_draws(permutations, k, "permutations", "shapley_sampling", jnp.int32)
        elif key is None:
            raise ValueError("shapley_sampling draws random orders and needs an explicit key: "
                             "fn(x, key=jax.random.key(0)), or replay orders with permutations=.")
        else:
            draw = jax.vmap(lambda kk: jax.random.permutation(kk, k))
            orders = draw(jax.random.split(key, n // 2 if pairs else n))
            if pairs:
                orders = jnp.stack([orders, orders[:, ::-1]], 1).reshape(n, k)
        m = orders.shape[0]
        rank = jnp.argsort(orders, axis=1)  # rank[p, j]: when order p switches feature j on
        ends = [jnp.broadcast_to(g.value(jnp.full(k, on)), (m, 1)) for on in (False, True)]
        if k > 1:
            inner = g.values(lambda i: rank[i // (k - 1)] <= i % (k - 1), m * (k - 1)).reshape(m, k - 1)
            ends.insert(1, inner)
        walk = jnp.concatenate(ends, axis=1)  # walk[p, s]: v(the first s features of order p)
        credit = jnp.take_along_axis(walk, rank + 1, 1) - jnp.take_along_axis(walk, rank, 1)
        phi = g.spread(credit.mean(0))
        if not with_error:
            return phi
        groups = credit.reshape(m // 2, 2, k).mean(1) if pairs else credit
        if groups.shape[0] < 2:
            raise ValueError("shapley_sampling: with_error=True needs at least 2 independent orders "
                             f"(pairs with antithetic=True); got {groups.shape[0]}.")
        return phi, g.spread(groups.std(0, ddof=1) / math.sqrt(groups.shape[0]))

    return attribution
