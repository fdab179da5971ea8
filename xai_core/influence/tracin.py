"""TracIn (Pruthi et al., "Estimating Training Data Influence by Tracing Gradient Descent", NeurIPS
2020): which training examples raised or lowered the loss of a test example.

The influence of a training example ``z`` on a test example ``z'`` is the first-order change of the
test loss that SGD steps on ``z`` caused, summed over saved checkpoints ``w_t``:

    TracIn(z, z') = sum_t eta_t * grad L(w_t, z) . grad L(w_t, z')

with ``eta_t`` the learning rate after checkpoint ``t``. Self-influence ``TracIn(z, z)`` is large for
examples the model keeps struggling with, mislabeled ones first. Captum's ``TracInCP``,
``TracInCPFast`` and ``TracInCPFastRandProj`` compute per-example gradients in Python loops over
batches and checkpoints; here one compiled program per chunk of training data computes them for
every checkpoint (``jax.vmap(jax.grad)``, a ``lax.scan`` over checkpoints).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from xai_core.core.checks import check_choice, check_positive_int
from xai_core.influence.checkpoints import stack_checkpoints
from xai_core.influence.data import chunks, peek
from xai_core.influence.features import AUTO_ELEMENTS, MODES, Plan, Terms, plan, projection_for

__all__ = ["Influential", "self_influence", "top_k", "tracin"]

Loss = Callable[[Any, Any], Any]


class Influential(NamedTuple):
    """The ``k`` most influential training examples of each test example (Captum's
    ``KMostInfluentialResults`` for ``proponents=True`` and ``False`` at once): indices into the
    training data, shape ``(tests, k)``, with their influence scores, most influential first."""

    proponents: jax.Array
    proponent_scores: jax.Array
    opponents: jax.Array
    opponent_scores: jax.Array


def _dots(a: Terms, b: Terms) -> jax.Array:
    """``sum_terms prod_i a_i b_i^T`` for factors of shapes ``(n, d)`` and ``(m, d)``: ``(n, m)``."""
    return sum(math.prod(x @ y.T for x, y in zip(ta, tb)) for ta, tb in zip(a, b))


def _norms(a: Terms) -> jax.Array:
    return sum(math.prod(jnp.sum(x * x, axis=-1) for x in t) for t in a)


class _Run(NamedTuple):
    plan: Plan
    stacked: Any
    lrs: jax.Array
    size: int
    data: Any
    projection: tuple[jax.Array, jax.Array] | None


def _setup(method: str, loss_fn: Loss, checkpoints: Sequence[Any], data: Any, *, mode: str,
           learning_rates: Any, batch_size: Any, test_loss_fn: Loss | None, layers: Any, last_layer: str | None,
           projection: Any, projection_dim: int | None, key: Any) -> _Run:
    if not callable(loss_fn):
        raise TypeError(f"{method}: loss_fn must be a function loss_fn(params, example) -> scalar, got "
                        f"{type(loss_fn).__name__}.")
    mode = check_choice(mode, MODES, "mode", method)
    if batch_size != "auto":
        batch_size = check_positive_int(batch_size, "batch_size", method)
    stacked, lrs, first = stack_checkpoints(checkpoints, learning_rates, method)
    example, data = peek(data, f"{method}: the training data")
    if example is None:
        next(chunks(data, 1, f"{method}: the training data"))  # raises, naming the type
    p = plan(loss_fn, test_loss_fn, first, example, mode, layers=layers, last_layer=last_layer, method=method)
    proj, size = None, p.size
    if mode == "random_projection":
        proj, size = projection_for(p, projection, projection_dim, key, jnp.result_type(*jax.tree.leaves(first)),
                                    method)
    if batch_size == "auto":
        batch_size = int(np.clip(AUTO_ELEMENTS // max(size, 1), 16, 512))
    return _Run(p, stacked, lrs, batch_size, data, proj)


class _Programs(NamedTuple):
    """The compiled programs of one plan, kept with it (:func:`~xai_core.influence.features.plan`)."""

    tests: Callable[..., Terms]  # (stacked, batch, projection) -> factors (checkpoints, batch, d)
    scores: Callable[..., jax.Array]  # (stacked, lrs, test terms, batch, projection) -> (tests, batch)
    norms: Callable[..., jax.Array]  # (stacked, lrs, batch, projection) -> (batch,)


@functools.lru_cache(maxsize=8)
def _programs(p: Plan) -> _Programs:
    def tests(stacked: Any, batch: Any, proj: Any) -> Terms:
        return jax.lax.map(lambda w: jax.vmap(p.test, (None, 0, None))(w, batch, proj), stacked)

    def scores(stacked: Any, lrs: jax.Array, tests: Terms, batch: Any, proj: Any) -> jax.Array:
        def step(acc: jax.Array, xs: Any) -> tuple[jax.Array, None]:
            w, lr, t = xs
            return acc + lr * _dots(t, jax.vmap(p.train, (None, 0, None))(w, batch, proj)).astype(acc.dtype), None

        first = jax.tree.leaves(tests)[0]
        acc = jnp.zeros((first.shape[1], jax.tree.leaves(batch)[0].shape[0]), jnp.result_type(first.dtype, lrs.dtype))
        return jax.lax.scan(step, acc, (stacked, lrs, tests))[0]

    def norms(stacked: Any, lrs: jax.Array, batch: Any, proj: Any) -> jax.Array:
        def step(acc: jax.Array, xs: Any) -> tuple[jax.Array, None]:
            w, lr = xs
            return acc + lr * _norms(jax.vmap(p.train, (None, 0, None))(w, batch, proj)).astype(acc.dtype), None

        return jax.lax.scan(step, jnp.zeros(jax.tree.leaves(batch)[0].shape[0], lrs.dtype), (stacked, lrs))[0]

    return _Programs(jax.jit(tests), jax.jit(scores), jax.jit(norms))


def _test_factors(run: _Run, test: Any, method: str) -> tuple[Terms, int]:
    """The test examples' terms at every checkpoint: factors of shapes ``(checkpoints, tests, d)``."""
    many = _programs(run.plan).tests
    parts, total = [], 0
    for batch, n in chunks(test, run.size, f"{method}: the test data"):
        parts.append(jax.tree.map(lambda f: f[:, :n], many(run.stacked, batch, run.projection)))
        total += n
    if not parts:
        raise ValueError(f"{method}: the test data set is empty.")
    return jax.tree.map(lambda *fs: jnp.concatenate(fs, axis=1), *parts), total


@jax.jit
def _merge(best: tuple[jax.Array, ...], s: jax.Array, start: jax.Array, n: jax.Array) -> tuple[jax.Array, ...]:
    """The ``k`` best proponents and opponents so far and the scores ``s`` of the next chunk."""
    k = best[0].shape[1]
    valid = jnp.arange(s.shape[1]) < n
    idx = jnp.broadcast_to(start + jnp.arange(s.shape[1]), s.shape)
    out = []
    for sign, (vals, ids) in zip((1, -1), (best[:2], best[2:])):
        cand = jnp.concatenate([vals, jnp.where(valid, sign * s, -jnp.inf)], axis=1)
        top, where = jax.lax.top_k(cand, k)
        out += [top, jnp.take_along_axis(jnp.concatenate([ids, idx], axis=1), where, axis=1)]
    return tuple(out)


_OPTIONS = """
    Args:
        loss_fn: ``loss_fn(params, example) -> scalar``, the loss of ONE training example (no batch
            axis; ``example`` is one element of the data, e.g. ``(x, label)``), as the model was
            trained on it. ``params`` is one checkpoint.
        checkpoints: a list of parameter pytrees of one structure (``m.params`` of an adapter, a Flax
            ``TrainState`` or its ``.params``, :func:`from_state_dict` of a torch ``state_dict``), or of
            :class:`Checkpoint` pairs that carry their learning rates.
        mode: ``"full"`` (every parameter, or those ``layers`` names), ``"last_layer"`` (the last dense
            layer's weight in closed form) or ``"random_projection"`` (its factors projected).
        learning_rates: one number or one per checkpoint (default 1.0, as Captum's loader without a
            saved ``"learning_rate"``).
        batch_size: examples per compiled chunk (memory is bounded by it); ``"auto"`` picks it from
            the size of the per-example factors.
        layers: ``"full"`` only: names of the parameters to differentiate (Captum's ``layers``); by
            default every floating-point leaf. A torch model's buffers (BatchNorm's running
            statistics) are leaves of ``m.params``: name the trained parameters here.
        last_layer: the last layer's weight by name (``"fc2"``, ``"Dense_1/kernel"``); by default the
            last dense layer of the loss's program (Captum's ``final_fc_layer``).
        projection: ``"random_projection"``: the matrices ``(P_g, P_a)`` (Captum's
            ``projection_quantities``); or ``projection_dim`` and ``key`` to draw them
            (:func:`draw_projection`).
"""


def tracin(loss_fn: Loss, checkpoints: Sequence[Any], train: Any, test: Any, *, mode: str = "full",
           learning_rates: Any = None, batch_size: int | str = "auto", test_loss_fn: Loss | None = None,
           layers: Sequence[str] | None = None, last_layer: str | None = None, projection: Any = None,
           projection_dim: int | None = None, key: jax.Array | None = None) -> jax.Array:
    """Influence scores ``(tests, trains)``: ``scores[i, j]`` is training example ``j``'s TracIn
    influence on test example ``i`` (Captum's ``influence(inputs)``), positive for a proponent.

    ``train`` and ``test`` are array pytrees (leading axis: examples), sources of single examples
    (``len``, ``[i]``: a grain ``MapDataset``) or iterables of batches (:mod:`~xai_core.influence.data`).
    The training data is read once, ``batch_size`` examples at a time; the test examples' gradients
    are kept (``tests x checkpoints x`` the per-example factors). ``test_loss_fn``: another loss for
    the test examples (Captum's ``test_loss_fn``, e.g. one logit).
    {options}
    Example:
        >>> import jax, jax.numpy as jnp, xai_core as xc
        >>> loss = lambda w, ex: (ex[0] @ w - ex[1]) ** 2
        >>> xs, ys = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), jnp.array([1.0, -1.0, -0.5])
        >>> w = jnp.zeros(2)
        >>> xc.influence.tracin(loss, [w], (xs, ys), (xs[2:], ys[2:]), learning_rates=0.5).tolist()
        [[-1.0, 1.0, 1.0]]
    """
    run = _setup("tracin", loss_fn, checkpoints, train, mode=mode, learning_rates=learning_rates,
                 batch_size=batch_size, test_loss_fn=test_loss_fn, layers=layers, last_layer=last_layer,
                 projection=projection, projection_dim=projection_dim, key=key)
    tests, _ = _test_factors(run, test, "tracin")
    scores = _programs(run.plan).scores
    out = [scores(run.stacked, run.lrs, tests, batch, run.projection)[:, :n]
           for batch, n in chunks(run.data, run.size, "tracin: the training data")]
    return jnp.concatenate(out, axis=1)


def top_k(loss_fn: Loss, checkpoints: Sequence[Any], train: Any, test: Any, k: int = 5, *, mode: str = "full",
          learning_rates: Any = None, batch_size: int | str = "auto", test_loss_fn: Loss | None = None,
          layers: Sequence[str] | None = None, last_layer: str | None = None, projection: Any = None,
          projection_dim: int | None = None, key: jax.Array | None = None) -> Influential:
    """The ``k`` proponents (highest influence) and ``k`` opponents (lowest) of each test example,
    kept while the training data streams by: memory ``tests x (k + batch_size)``, never
    ``tests x trains`` (Captum's ``influence(inputs, k=k, proponents=...)``; ``k`` is capped at the
    number of training examples). Options as :func:`tracin`.

    Example:
        >>> import jax.numpy as jnp, xai_core as xc
        >>> loss = lambda w, ex: (ex[0] @ w - ex[1]) ** 2
        >>> xs, ys = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), jnp.array([1.0, -1.0, -0.5])
        >>> best = xc.influence.top_k(loss, [jnp.zeros(2)], (xs, ys), (xs[:1], ys[:1]), k=2)
        >>> best.proponents.tolist(), best.opponents.tolist()
        ([[0, 1]], [[2, 1]])
    """
    k = check_positive_int(k, "k", "top_k")
    run = _setup("top_k", loss_fn, checkpoints, train, mode=mode, learning_rates=learning_rates,
                 batch_size=batch_size, test_loss_fn=test_loss_fn, layers=layers, last_layer=last_layer,
                 projection=projection, projection_dim=projection_dim, key=key)
    tests, n_tests = _test_factors(run, test, "top_k")
    scores = _programs(run.plan).scores
    dtype = jax.tree.leaves(tests)[0].dtype
    empty = (jnp.full((n_tests, k), -jnp.inf, dtype), jnp.full((n_tests, k), -1, jnp.int32))
    best, seen = empty * 2, 0
    for batch, n in chunks(run.data, run.size, "top_k: the training data"):
        s = scores(run.stacked, run.lrs, tests, batch, run.projection).astype(dtype)
        best = _merge(best, s, jnp.int32(seen), jnp.int32(n))
        seen += n
    kept = min(k, seen)
    return Influential(best[1][:, :kept], best[0][:, :kept], best[3][:, :kept], -best[2][:, :kept])


def self_influence(loss_fn: Loss, checkpoints: Sequence[Any], data: Any, *, mode: str = "full",
                   learning_rates: Any = None, batch_size: int | str = "auto", layers: Sequence[str] | None = None,
                   last_layer: str | None = None, projection: Any = None, projection_dim: int | None = None,
                   key: jax.Array | None = None) -> jax.Array:
    """Self-influence ``(examples,)``: ``sum_t eta_t |grad L(w_t, z)|^2`` per example (Captum's
    ``self_influence``), high for the examples the model kept pushing against, mislabeled ones
    first. ``data`` as :func:`tracin`'s training data, read once.
    {options}
    Example:
        >>> import jax.numpy as jnp, xai_core as xc
        >>> loss = lambda w, ex: (ex[0] @ w - ex[1]) ** 2
        >>> xs, ys = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), jnp.array([1.0, -1.0, -0.5])
        >>> xc.influence.self_influence(loss, [jnp.zeros(2)], (xs, ys)).tolist()
        [4.0, 4.0, 2.0]
    """
    run = _setup("self_influence", loss_fn, checkpoints, data, mode=mode, learning_rates=learning_rates,
                 batch_size=batch_size, test_loss_fn=None, layers=layers, last_layer=last_layer,
                 projection=projection, projection_dim=projection_dim, key=key)
    norms = _programs(run.plan).norms
    out = [norms(run.stacked, run.lrs, batch, run.projection)[:n]
           for batch, n in chunks(run.data, run.size, "self_influence: the data")]
    return jnp.concatenate(out)


tracin.__doc__ = tracin.__doc__.format(options=_OPTIONS)
self_influence.__doc__ = self_influence.__doc__.format(options=_OPTIONS)
