"""Concept activation vectors (CAVs): a linear classifier per (concept, random set) pair, trained
in JAX, every pair of a layer in one vmapped program.

Captum's ``DefaultClassifier`` (``captum/concept/_utils/classifier.py``) shuffles the pair's
activations, holds out ``int(0.33 n)`` of them, and fits sklearn's
``SGDClassifier(alpha=0.01, max_iter=1000, tol=1e-3)``: hinge loss plus ``alpha / 2 |w|^2``,
one sample at a time, learning rate ``1 / (alpha (t0 + t))`` ("optimal"). Its two-class weights
are ``[-coef, coef]`` in the order of the sorted concept ids, so a concept's row points from
the other set towards it. We minimize the same objective
``mean_i max(0, 1 - y_i (w . a_i + b)) + alpha / 2 |w|^2`` (``y = +1`` for the concept, ``-1``
for the random set; ``b`` unregularized) with the same schedule, but in full-batch steps and in
the span of the examples (``w = sum_i beta_i a_i``, the Gram matrix computed once per layer),
so each step costs ``(2N)^2`` rather than ``2N x F``; the CAV is ``w``, pointing towards the
concept, as Captum's concept row. By default the activations are first divided by their root
mean square norm (``normalize``), so that ``alpha`` weighs the same at every layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["CAVs", "fit", "pairs"]

HIGHEST = jax.lax.Precision.HIGHEST


@dataclass(frozen=True)
class CAVs:
    """The CAVs of every layer (``F``: the layer's size for one example, flattened).

    Attributes:
      concepts: the concept names, in order (``C`` of them; ``R`` random sets).
      weights: ``{layer: (C, R, F)}``: the CAV of concept ``c`` against random set ``j``,
        pointing towards the concept.
      random: ``{layer: (R - 1, F)}``: the CAV of random set 0 against random set ``j + 1``
        (the random-vs-random baseline).
      accuracy: ``{layer: (C, R)}``: each classifier's accuracy on its held-out examples
        (absent or NaN where unknown, e.g. for CAVs given from elsewhere).
      random_accuracy: ``{layer: (R - 1,)}``: the same for the baseline.
    """

    concepts: tuple[str, ...]
    weights: dict[str, Any]
    random: dict[str, Any]
    accuracy: dict[str, np.ndarray] = field(default_factory=dict)
    random_accuracy: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def layers(self) -> list[str]:
        """The layers the CAVs were trained at."""
        return list(self.weights)

    def stacked(self, layer: str) -> jax.Array:
        """``(C R + R - 1, F)``: every CAV of ``layer`` in the order of :func:`pairs`."""
        w, r = jnp.asarray(self.weights[layer]), jnp.asarray(self.random[layer])
        return jnp.concatenate([w.reshape(-1, w.shape[-1]), r.reshape(-1, w.shape[-1])])


def pairs(n_concepts: int, n_random: int) -> np.ndarray:
    """``(C R + R - 1, 2)``: the sets each classifier separates, as indices into
    ``[*concepts, *randoms]``: every concept against every random set, then random set 0
    against each other random set (the baseline of the t-test, as in Captum's TCAV tutorial)."""
    c, r = n_concepts, n_random
    return np.array([(i, c + j) for i in range(c) for j in range(r)] + [(c, c + j) for j in range(1, r)],
                    np.int32).reshape(-1, 2)


def _train_pair(gram: jax.Array, y: jax.Array, valid: jax.Array, u: jax.Array, alpha: float, steps: int,
                test_split: float) -> tuple[jax.Array, jax.Array]:
    """``(beta, accuracy)`` of one pair: ``gram`` ``(M, M)`` of its examples, ``y`` +-1, ``valid``
    the examples that are not padding, ``u`` uniform draws ordering the held-out split."""
    n_valid = valid.sum()
    n_test = jnp.floor(test_split * n_valid)
    rank = jnp.argsort(jnp.argsort(jnp.where(valid, u, 2.0)))
    test = valid & (rank < n_test)
    train = valid & ~test
    n = jnp.maximum(train.sum(), 1)
    eta0 = alpha ** -0.25  # sklearn's "optimal" schedule: eta_1 = alpha^(-1/4) for the hinge loss
    t0 = 1.0 / (eta0 * alpha)

    def step(carry: tuple[jax.Array, jax.Array], k: jax.Array) -> tuple[tuple[jax.Array, jax.Array], None]:
        beta, b = carry
        eta = 1.0 / (alpha * (t0 + k))
        margin = y * (jnp.dot(gram, beta, precision=HIGHEST) + b)
        g = jnp.where(train & (margin <= 1.0), -y, 0.0) / n  # the hinge loss's (sub)gradient per example
        return ((1.0 - eta * alpha) * beta - eta * g, b - eta * g.sum()), None

    zeros = jnp.zeros_like(y)
    (beta, b), _ = jax.lax.scan(step, (zeros, jnp.zeros((), y.dtype)), jnp.arange(steps, dtype=y.dtype))
    right = test & ((jnp.dot(gram, beta, precision=HIGHEST) + b > 0) == (y > 0))
    accuracy = jnp.where(n_test > 0, right.sum() / jnp.maximum(n_test, 1), jnp.nan)
    return beta, accuracy


def fit(acts: jax.Array, mask: jax.Array, index: jax.Array, key: jax.Array, *, alpha: float = 0.01,
        steps: int = 1000, test_split: float = 0.33, normalize: bool = True) -> tuple[jax.Array, jax.Array]:
    """``(W, accuracy)``: one CAV per pair, ``W`` ``(P, F)``, and its held-out accuracy ``(P,)``.

    ``acts`` ``(S, N, F)``: every set's activations, padded to ``N`` examples (``mask``
    ``(S, N)`` marks the real ones); ``index`` ``(P, 2)``: the (concept, random) sets of each
    pair (:func:`pairs`); ``key`` draws each pair's held-out ``floor(test_split n)`` examples.
    With ``normalize`` the classifier sees the activations divided by their root mean square
    norm ``s`` (over every real example of every set), so that ``alpha`` weighs the same at every
    layer, and ``W = w / s`` is returned in the layer's units (``W . a = w . a / s``); without,
    it trains on the raw activations, as Captum's classifier does (then at a layer of small
    activations the penalty can win over the hinge loss, and the CAV separates nothing).

    >>> import jax, jax.numpy as jnp
    >>> a = jnp.concatenate([jnp.ones((1, 4, 2)), -jnp.ones((1, 4, 2))]) + 0.1 * jnp.arange(4.0)[None, :, None]
    >>> W, acc = fit(a, jnp.ones((2, 4), bool), jnp.array([[0, 1]]), jax.random.key(0))
    >>> bool(W[0] @ jnp.ones(2) > 0), acc.tolist()
    (True, [1.0])
    """
    acts, mask, index = jnp.asarray(acts), jnp.asarray(mask), jnp.asarray(index)
    s, n, f = acts.shape
    flat = acts.reshape(s * n, f)
    gram = jnp.dot(flat, flat.T, precision=HIGHEST)
    if normalize:
        square = jnp.sum(jnp.where(mask.reshape(-1), jnp.diagonal(gram), 0.0)) / jnp.maximum(mask.sum(), 1)
        scale = jnp.where(square > 0, square, 1.0)  # s^2
    else:
        scale = jnp.ones((), acts.dtype)
    rows = (index[:, :, None] * n + jnp.arange(n)).reshape(index.shape[0], 2 * n)
    y = jnp.concatenate([jnp.ones(n), -jnp.ones(n)]).astype(acts.dtype)
    u = jax.random.uniform(key, rows.shape)
    train = jax.vmap(_train_pair, in_axes=(0, None, 0, 0, None, None, None))
    beta, accuracy = train(gram[rows[:, :, None], rows[:, None, :]] / scale, y, mask.reshape(-1)[rows], u,
                           alpha, steps, test_split)
    coef = jnp.zeros((index.shape[0], s * n), acts.dtype).at[jnp.arange(index.shape[0])[:, None], rows].add(beta)
    return jnp.dot(coef, flat, precision=HIGHEST) / scale, accuracy
