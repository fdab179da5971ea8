"""Linear surrogates of the coalition game: Kernel SHAP and LIME.

Both evaluate ``samples`` coalitions of the features (:mod:`xai_core.attribution.features`) in one
compiled program and fit a weighted linear model of the scores on the coalition vectors, solved
in JAX inside the program. ``coalitions=`` (a boolean ``(n, K)`` array) with optional ``weights=``
replaces the method's own draws, so a reference's samples can be replayed exactly.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from xai_core.attribution.features import Game, check_draws, game
from xai_core.core.checks import ScoreFn, check_choice, check_positive_int
from xai_core.core.chunking import DEFAULT_BATCH_SIZE

DISTANCES = ("coalition", "input")
MAX_REGRESSION_FEATURES = 4096
"""Kernel SHAP and LIME solve a ``K x K`` system: more features than this is an error asking for groups."""


def _surrogate_game(score_fn: ScoreFn, x: Any, feature_mask: Any, baseline: Any, baselines: Any,
                    batch_size: int | str | None, method: str) -> Game:
    g = game(score_fn, x, feature_mask, baseline, baselines, batch_size, method)
    if g.k > MAX_REGRESSION_FEATURES:
        raise ValueError(f"{method}: {g.k} features make a {g.k} x {g.k} regression; group them with feature_mask= "
                         f"(at most {MAX_REGRESSION_FEATURES}), e.g. xc.segments.grid(x.shape, 8) or xc.segments.slic.")
    return g


def _shap_plan(k: int, samples: int) -> tuple[np.ndarray, np.ndarray, int, np.ndarray, float]:
    """shap's ``KernelExplainer`` sampling plan (Lundberg & Lee 2017, read from shap's
    ``_kernel.py``): coalition sizes ``s`` and ``K - s`` carry kernel mass ``(K-1) / (s (K-s))``;
    from the smallest size up, a size whose every coalition (and complement) the budget covers is
    enumerated with its exact weight. Returns the enumerated coalitions, their weights, how many are
    left to draw, the draw probabilities of the other sizes (smallest first) and their mass."""
    sizes = np.arange(1, math.ceil((k - 1) / 2) + 1)
    paired = math.floor((k - 1) / 2)
    mass = (k - 1) / (sizes * (k - sizes))
    mass[:paired] *= 2
    mass /= mass.sum()
    rows, weights, left, remaining = [], [], samples, mass.copy()
    done = 0
    for s in sizes:
        count = math.comb(k, s) * (2 if s <= paired else 1)
        if left * remaining[s - 1] / count < 1 - 1e-8:
            break
        done, left = s, left - count
        if remaining[s - 1] < 1:
            remaining /= 1 - remaining[s - 1]
        for members in itertools.combinations(range(k), s):
            z = np.zeros(k, bool)
            z[list(members)] = True
            rows += [z, ~z] if s <= paired else [z]
            weights += [mass[s - 1] / count] * (2 if s <= paired else 1)
    rest = mass[done:]
    enumerated = np.array(rows, bool).reshape(-1, k)
    return enumerated, np.array(weights), left, rest / max(rest.sum(), 1e-300), float(rest.sum())


def _kernel_draws(key: Any, k: int, plan: tuple[np.ndarray, np.ndarray, int, np.ndarray, float]
                  ) -> tuple[jax.Array, jax.Array]:
    """Coalitions and weights of shap's plan (:func:`_shap_plan`): enumerated sizes, then random
    coalitions of the other sizes in complementary pairs, each weighted ``mass_left / draws``."""
    enumerated, weights, left, p, mass_left = plan
    if left <= 0 or p.size == 0:
        return jnp.asarray(enumerated), jnp.asarray(weights)
    pairs = math.ceil(left / 2)
    size_key, order_key = jax.random.split(key)
    size = jax.random.choice(size_key, p.size, (pairs,), p=jnp.asarray(p)) + math.ceil((k - 1) / 2) - p.size + 1
    rank = jnp.argsort(jnp.argsort(jax.random.uniform(order_key, (pairs, k)), axis=1), axis=1)
    drawn = rank < size[:, None]
    drawn = jnp.stack([drawn, ~drawn], 1).reshape(2 * pairs, k)[:left]
    return (jnp.concatenate([jnp.asarray(enumerated), drawn]),
            jnp.concatenate([jnp.asarray(weights), jnp.full(left, mass_left / left)]))


def shapley_kernel(z: jax.Array) -> jax.Array:
    """The Shapley kernel ``(K-1) / (C(K, |z|) |z| (K - |z|))`` of each row of ``z``; 0 for the
    empty and the full coalition, which efficiency takes care of."""
    k = z.shape[1]
    s = z.sum(1).astype(jnp.result_type(float))  # float64 where enabled
    log_comb = jax.scipy.special.gammaln(k + 1.0) - jax.scipy.special.gammaln(s + 1) - jax.scipy.special.gammaln(k - s + 1)
    inner = (s > 0) & (s < k)
    return jnp.where(inner, (k - 1) / (jnp.exp(log_comb) * jnp.where(inner, s * (k - s), 1)), 0.0)


def _replayed(g: Game, coalitions: Any, weights: Any, method: str) -> tuple[jax.Array, jax.Array | None]:
    z = check_draws(coalitions, g.k, "coalitions", method, bool)
    if weights is None:
        return z, None
    w = jnp.asarray(weights, g.acc)
    if w.shape != (z.shape[0],):
        raise ValueError(f"{method}: weights must have shape (n,) = ({z.shape[0]},), one per coalition; got {w.shape}.")
    return z, w


def kernel_shap(score_fn: ScoreFn, feature_mask: Any = None, baseline: Any = 0.0, baselines: Any = None,
                samples: int | None = None, coalitions: Any = None, weights: Any = None,
                batch_size: int | str | None = DEFAULT_BATCH_SIZE) -> Callable[..., Any]:
    """Kernel SHAP (Lundberg & Lee, "A Unified Approach to Interpreting Model Predictions", 2017).

    Fits ``v(z) ~ v(none) + z @ phi`` by least squares weighted by the Shapley kernel, with
    efficiency exact (``sum(phi) = v(all) - v(none)``, one feature eliminated as shap does).
    ``samples`` coalitions (default shap's ``2K + 2048``) follow shap's ``KernelExplainer`` plan:
    small coalition sizes and their complements enumerated while the budget covers them, the rest
    drawn with ``key`` in complementary pairs (duplicates are evaluated again rather than merged:
    the program's shapes are fixed). ``samples >= 2^K - 2`` enumerates every coalition: the exact
    Shapley values. ``coalitions=`` / ``weights=`` replay draws (default weights: the kernel).

    >>> import jax, jax.numpy as jnp, xai_core as xc
    >>> f = lambda x: x[0] * x[1] + x[2]
    >>> xc.kernel_shap(f, samples=6)(jnp.array([2.0, 3.0, 1.0]), key=jax.random.key(0)).round(4)
    Array([3., 3., 1.], dtype=float32)
    """

    def attribution(x: Any, *, key: Any = None) -> Any:
        g = _surrogate_game(score_fn, x, feature_mask, baseline, baselines, batch_size, "kernel_shap")
        if coalitions is not None:
            z, w = _replayed(g, coalitions, weights, "kernel_shap")
            w = shapley_kernel(z) if w is None else w
        else:
            n = 2 * g.k + 2048 if samples is None else check_positive_int(samples, "samples", "kernel_shap")
            if n < g.k + 2:
                raise ValueError(f"kernel_shap: samples={n} is too few for {g.k} features: the regression needs at "
                                 f"least K + 2 = {g.k + 2} coalitions (shap's default is 2K + 2048 = {2 * g.k + 2048}).")
            plan = _shap_plan(g.k, min(n, 2 ** g.k - 2) if g.k <= 30 else n)
            if key is None and plan[2] > 0:
                raise ValueError("kernel_shap draws random coalitions and needs an explicit key: "
                                 "fn(x, key=jax.random.key(0)), or replay them with coalitions=.")
            z, w = _kernel_draws(key, g.k, plan)
        none, full = g.value(jnp.zeros(g.k, bool)), g.value(jnp.ones(g.k, bool))
        total = full - none
        if g.k == 1:
            return g.spread(total[None])
        y = g.values(lambda i: z[i], z.shape[0]) - none
        zf = z.astype(g.acc)
        design = zf[:, :-1] - zf[:, -1:]
        root = jnp.sqrt(w.astype(g.acc))
        beta = jnp.linalg.lstsq(root[:, None] * design, root * (y - zf[:, -1] * total))[0]
        return g.spread(jnp.concatenate([beta, (total - beta.sum())[None]]))

    return attribution


def lime(score_fn: ScoreFn, feature_mask: Any = None, baseline: Any = 0.0, baselines: Any = None,
         samples: int = 1000, kernel_width: float = 0.25, alpha: float = 1.0, distance: str = "coalition",
         coalitions: Any = None, weights: Any = None,
         batch_size: int | str | None = DEFAULT_BATCH_SIZE) -> Callable[..., Any]:
    """LIME (Ribeiro, Singh & Guestrin, "Why Should I Trust You?", KDD 2016): a ridge regression
    ``v(z) ~ b + z @ a`` (penalty ``alpha``, intercept free) on ``samples`` random coalitions, each
    switched on with probability 1/2 (the all-on one first, as lime_image draws), weighted by the
    exponential kernel ``exp(-d^2 / (2 kernel_width^2))``.

    ``distance="coalition"`` (default, lime_image's): ``d`` is the cosine distance of ``z`` to the
    all-on coalition, ``1 - sqrt(|z| / K)``; with ``kernel_width=0.25`` and ``alpha=1`` this is
    lime_image's ``explain_instance`` with every feature kept. ``distance="input"`` (Captum's
    ``Lime``): the cosine distance between ``x`` and the perturbed input, flattened; Captum's
    default width is 1 and its default surrogate a Lasso, so compare with Captum's ``SkLearnRidge``.
    ``coalitions=`` / ``weights=`` replay draws (weights replace the kernel).

    >>> import jax, jax.numpy as jnp, xai_core as xc
    >>> f = lambda x: jnp.sum(x * jnp.array([1.0, 2.0, 3.0]))  # linear: LIME recovers it (alpha -> 0)
    >>> a = xc.lime(f, samples=64, alpha=1e-6)(jnp.ones(3), key=jax.random.key(0))
    >>> [round(float(v), 3) for v in a]
    [1.0, 2.0, 3.0]
    """
    check_choice(distance, DISTANCES, "distance", "lime")
    if not kernel_width > 0 or not alpha >= 0:
        raise ValueError(f"lime: kernel_width must be > 0 and alpha >= 0, got {kernel_width!r} and {alpha!r}.")

    def attribution(x: Any, *, key: Any = None) -> Any:
        g = _surrogate_game(score_fn, x, feature_mask, baseline, baselines, batch_size, "lime")
        if coalitions is not None:
            z, w = _replayed(g, coalitions, weights, "lime")
        elif key is None:
            raise ValueError("lime draws random coalitions and needs an explicit key: fn(x, key=jax.random.key(0)), "
                             "or replay them with coalitions=.")
        else:
            n = check_positive_int(samples, "samples", "lime", minimum=2)
            z = jax.random.bernoulli(key, 0.5, (n, g.k)).at[0].set(True)
            w = None
        y = g.values(lambda i: z[i], z.shape[0])
        if w is None:
            d = _distances(g, z) if distance == "input" else 1 - jnp.sqrt(z.sum(1).astype(g.acc) / g.k)
            w = jnp.exp(-(d ** 2) / (2 * kernel_width ** 2))
        return g.spread(ridge(z.astype(g.acc), y, w.astype(g.acc), alpha))

    return attribution


def ridge(z: jax.Array, y: jax.Array, w: jax.Array, alpha: float) -> jax.Array:
    """Weighted ridge regression with a free intercept (scikit-learn's ``Ridge`` with
    ``sample_weight``): the coefficients of ``y ~ b + z @ a``."""
    total = w.sum()
    zc = z - (w @ z) / total
    yc = y - (w @ y) / total
    gram = zc.T @ (w[:, None] * zc) + alpha * jnp.eye(z.shape[1], dtype=z.dtype)
    return jnp.linalg.solve(gram, zc.T @ (w * yc))


def _distances(g: Game, z: jax.Array) -> jax.Array:
    """Cosine distance between ``x`` and each coalition's input, every attributed leaf flattened."""
    if g.fills is None:
        raise ValueError("lime: distance='input' needs one baseline (baseline=), not a background set.")
    flat = jnp.concatenate([a.ravel() for a in g.inputs.leaves]).astype(g.acc)

    def one(row: jax.Array) -> jax.Array:
        moved = jnp.concatenate([jnp.broadcast_to(jnp.where(row[m], a, b), a.shape).ravel()
                                 for m, a, b in zip(g.masks, g.inputs.leaves, g.fills)]).astype(g.acc)
        return 1 - flat @ moved / jnp.maximum(jnp.linalg.norm(flat) * jnp.linalg.norm(moved), 1e-12)

    return jax.vmap(one)(z)
