"""The smallest strength of a perturbation that changes the prediction, as Captum's
``captum.robust.MinParamPerturbation`` searches it: a linear scan or a bisection over a grid.

The grid and every probe of the bisection are computed once, in Python floats, exactly as Captum
computes them; only the model's answers are data, so the search is one ``lax.while_loop`` that
runs under ``jax.jit`` and ``jax.vmap`` (each example stops when its answer is known).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from xai_core.core.checks import check_batch_size, check_choice, check_positive_int
from xai_core.core.chunking import CPU_FORWARD_CHUNK, DEFAULT_BATCH_SIZE, accumulation_dtype, resolve_batch_size
from xai_core.core.inputs import split_inputs
from xai_core.robust._common import Perturbation, check_like, unwrap

__all__ = ["MODES", "MinPerturbation", "bisection_plan", "min_perturbation", "strength_grid"]

MODES = ("linear", "binary")
MAX_PROBES = 1 << 20
"""The most grid points a search takes (a finer grid: a coarser ``step`` or a narrower range)."""


class MinPerturbation(NamedTuple):
    """What :func:`min_perturbation` found for one example (a pytree: ``jax.vmap`` stacks it)."""

    perturbed: Any      #: the perturbed input that changed the prediction (``x`` when none did)
    value: jax.Array    #: its strength (NaN when none did; Captum returns ``None``)
    found: jax.Array    #: whether a strength below ``stop`` changed the prediction


def strength_grid(start: float, stop: float, step: float) -> np.ndarray:
    """The strengths of the linear scan: ``start``, ``start + step``, ... below ``stop``, each the
    previous one plus ``step`` in Python floats (Captum's ``drange``, so 0.1 + 0.1 + 0.1 is
    0.30000000000000004 as there).

    >>> strength_grid(0.0, 0.35, 0.1).tolist()
    [0.0, 0.1, 0.2, 0.30000000000000004]
    """
    values, v = [], start
    while v < stop:
        values.append(v)
        v += step
        if len(values) > MAX_PROBES:
            raise ValueError(f"min_perturbation: more than {MAX_PROBES} strengths from {start} to {stop} by {step}; "
                             "take a coarser step or a narrower range.")
    return np.array(values, np.float64)


def bisection_plan(start: float, stop: float, step: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Captum's binary search as a table: ``values[i]`` is probe ``i``'s strength, ``on_success[i]``
    and ``on_failure[i]`` the probe that follows when the prediction changed or not (``-1``: done);
    probe 0 comes first. The search keeps ``low`` (last unchanged) and ``high`` (last changed,
    first ``stop``), probes ``mid = low + max(((high - low) // step) // 2, 1 if low + step < high
    else 0) * step``, and ends when ``mid`` is ``low`` (``math.isclose``) or ``high <= low``; the
    answer is the last probe that changed the prediction.

    >>> values, yes, no = bisection_plan(0.0, 1.0, 0.25)
    >>> values[[0, yes[0], no[0]]].tolist()
    [0.5, 0.25, 0.75]
    """
    values: list[float] = []
    links: list[tuple[int, int]] = []
    known: dict[tuple[float, float], int] = {}

    def probe(low: float, high: float) -> int:
        if not high > low:
            return -1
        if (low, high) in known:
            return known[(low, high)]
        mid_step = ((high - low) // step) // 2
        if mid_step == 0 and low + step < high:
            mid_step = 1
        mid = low + mid_step * step
        i = known[(low, high)] = len(values)
        values.append(mid)
        links.append((-1, -1))
        if len(values) > 2 * MAX_PROBES:
            raise ValueError(f"min_perturbation: too many probes from {start} to {stop} by {step}; "
                             "take a coarser step or a narrower range.")
        if not math.isclose(low, mid):
            links[i] = (probe(low, mid), probe(mid, high))
        return i

    probe(start, stop)
    table = np.array(links, np.int32).reshape(-1, 2)
    return np.array(values, np.float64), table[:, 0], table[:, 1]


def _default_correct(output: Any, target: Any) -> jax.Array:
    out = jnp.asarray(output)
    if out.ndim != 1:
        raise ValueError("min_perturbation: the default correct (argmax(fn(x)) == target) needs one vector of class "
                         f"scores for ONE example, got shape {tuple(out.shape)}; give correct(output, target).")
    if target is None:
        raise ValueError("min_perturbation: the default correct compares argmax(fn(x)) with the target: "
                         "search(x, target).")
    return jnp.argmax(out) == target


def min_perturbation(
    fn: Callable[[Any], Any],
    perturbation: Callable[[Any], Perturbation],
    start: float,
    stop: float,
    step: float,
    *,
    mode: str = "linear",
    attempts: int = 1,
    correct: Callable[[Any, Any], Any] | None = None,
    batch_size: int | str | None = DEFAULT_BATCH_SIZE,
) -> Callable[..., MinPerturbation]:
    """The smallest strength of ``perturbation`` at which the model's prediction changes.

    Captum's ``MinParamPerturbation``: ``perturbation(v)`` is the perturbation of strength ``v``
    (Captum's attack with ``arg_name=v``), e.g. ``lambda eps: xc.robust.fgsm(fn, eps)`` or a noise
    ``lambda std: lambda x, t, key: x + std * jax.random.normal(key, x.shape)``. The search tries
    the strengths ``start, start + step, ...`` below ``stop`` (:func:`strength_grid`) in order
    (``mode="linear"``), or bisects them as Captum does (``mode="binary"``, :func:`bisection_plan`;
    right when a perturbation that changes the prediction at ``v`` does so at every larger
    strength). At each strength it draws ``attempts`` perturbations; the first one with
    ``correct(fn(x'), target)`` false ends the search. Per example (Captum searches a batch: a
    strength counts when any example of it fails, and recommends batches of one).

    Attempt ``a`` gets key ``jax.random.split(key, attempts)[a]`` at every strength (Captum draws
    afresh at each call): a noise grows with its strength along one draw, so the linear scan and
    the bisection agree, and the same key gives the same answer.

    Args:
      fn: the model for ONE example (its logits, ``m.logits``; what ``correct`` reads).
      perturbation: ``v -> p`` with ``p(x, target, key) -> x'``; ``v`` is traced (a JAX scalar),
        so a strength that must be a Python number (PGD's ``steps``) cannot be searched.
      start, stop, step: the grid (Captum's ``arg_min``, ``arg_max`` excluded, ``arg_step``).
      mode: ``"linear"`` or ``"binary"``.
      attempts: perturbations drawn per strength (Captum's ``num_attempts``; > 1 needs a key).
      correct: ``correct(fn(x'), target) -> bool``; default ``argmax(fn(x')) == target``.
      batch_size: perturbations the linear scan evaluates at once (``"auto"``: from the input and
        the device), stopping after the first batch with a change (Captum's ``perturbations_per_eval``);
        the bisection evaluates a probe's attempts at once.

    Returns:
      ``search(x, target=None, key=None) -> MinPerturbation(perturbed, value, found)``.

    >>> import jax.numpy as jnp, xai_core as xc
    >>> logits = lambda x: jnp.stack([0.0, x @ jnp.array([1.0, -2.0])])   # class 1 while x1 > 2 x2
    >>> search = xc.robust.min_perturbation(logits, lambda eps: xc.robust.fgsm(logits, eps), 0.0, 1.0, 0.05)
    >>> round(float(search(jnp.array([1.0, 0.25]), 1).value), 2)  # the first above 0.5 / |w|_1 = 1/6
    0.2
    """
    method = "min_perturbation"
    mode = check_choice(mode, MODES, "mode", method)
    attempts = check_positive_int(attempts, "attempts", method)
    batch_size = check_batch_size(batch_size, method)
    if not callable(fn) or not callable(perturbation):
        raise TypeError(f"{method}: fn (the model) and perturbation (strength -> p(x, target, key)) must be callable.")
    start, stop, step = float(start), float(stop), float(step)
    if not (math.isfinite(start) and math.isfinite(stop) and step > 0 and stop > start + step):
        raise ValueError(f"{method}: the strengths run from start={start} by step={step} up to stop={stop} (excluded): "
                         "step must be > 0 and stop > start + step (Captum's arg_min, arg_max, arg_step).")
    is_correct = correct or _default_correct
    grid = strength_grid(start, stop, step) if mode == "linear" else None
    plan = bisection_plan(start, stop, step) if mode == "binary" else None

    def search(x: Any, target: Any = None, key: Any = None) -> MinPerturbation:
        inputs = split_inputs(x, method)
        x = inputs.noisy(inputs.leaves)
        if attempts > 1 and key is None:
            raise ValueError(f"{method}: attempts={attempts} draws perturbations: give a jax.random key, "
                             "search(x, target, key=key).")
        keys = None if key is None else jax.random.split(key, attempts)
        dtype = accumulation_dtype(jnp.result_type(*inputs.leaves))
        chunk = resolve_batch_size(batch_size, inputs.leaves, most=CPU_FORWARD_CHUNK)

        def trial(v: jax.Array, a: jax.Array) -> tuple[Any, jax.Array]:
            x_new = perturbation(v)(x, target, None if keys is None else keys[a])
            check_like(x_new, x, method)
            ok = jnp.asarray(is_correct(fn(unwrap(x_new)), target))
            if ok.shape != () or ok.dtype != jnp.bool_:
                raise ValueError(f"{method}: correct(fn(x'), target) must be one bool for ONE example, "
                                 f"got shape {tuple(ok.shape)} and dtype {ok.dtype}.")
            return x_new, ~ok

        def first_change(vs: jax.Array, a_idx: jax.Array, valid: jax.Array) -> tuple[jax.Array, jax.Array, Any]:
            perturbed, changed = jax.vmap(trial)(vs, a_idx)
            changed = changed & valid
            i = jnp.argmax(changed)
            return changed.any(), vs[i], jax.tree.map(lambda leaf: leaf[i], perturbed)

        none = MinPerturbation(x, jnp.array(jnp.nan, dtype), jnp.array(False))
        if mode == "linear":
            n = len(grid) * attempts
            size = n if chunk is None else min(chunk, n)
            values = jnp.asarray(grid, dtype)

            def body(state: tuple[jax.Array, MinPerturbation]) -> tuple[jax.Array, MinPerturbation]:
                c, _ = state
                idx = c * size + jnp.arange(size)
                safe = jnp.minimum(idx, n - 1)
                hit, v, x_new = first_change(values[safe // attempts], safe % attempts, idx < n)
                return c + 1, MinPerturbation(x_new, v, hit)

            _, found = jax.lax.while_loop(lambda s: ~s[1].found & (s[0] * size < n), body, (jnp.array(0), none))
            return jax.lax.cond(found.found, lambda: found, lambda: none)

        values, on_success, on_failure = (jnp.asarray(t) for t in plan)
        values = values.astype(dtype)

        def probe(state: tuple[jax.Array, MinPerturbation]) -> tuple[jax.Array, MinPerturbation]:
            node, best = state
            v = values[node]
            hit, _, x_new = first_change(jnp.full(attempts, v), jnp.arange(attempts), jnp.ones(attempts, bool))
            best = jax.tree.map(lambda new, old: jnp.where(hit, new, old), MinPerturbation(x_new, v, hit), best)
            return jnp.where(hit, on_success[node], on_failure[node]), best

        _, best = jax.lax.while_loop(lambda s: s[0] >= 0, probe, (jnp.array(0, jnp.int32), none))
        return best

    return search
