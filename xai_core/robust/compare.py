"""A metric of the model over named perturbations and their random draws, as Captum's
``captum.robust.AttackComparator`` reports it, for ONE example (``jax.vmap`` for a batch), and
Captum's summary of a batch."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from xai_core.core.checks import check_batch_size, check_positive_int
from xai_core.core.chunking import (
    CPU_FORWARD_CHUNK, DEFAULT_BATCH_SIZE, accumulation_dtype, chunked_map, resolve_batch_size,
)
from xai_core.core.inputs import split_inputs
from xai_core.robust._common import Perturbation, check_like, unwrap

__all__ = ["ORIGINAL", "accuracy", "compare_attacks", "summary"]

ORIGINAL = "Original"
"""The key of the metric on the unperturbed input (Captum's ``ORIGINAL_KEY``)."""


def accuracy(output: Any, target: Any) -> jax.Array:
    """1.0 where ``argmax(output) == target``, else 0.0: the default metric of :func:`compare_attacks`."""
    out = jnp.asarray(output)
    if out.ndim != 1 or target is None:
        raise ValueError("compare_attacks: the default metric (accuracy, argmax(fn(x)) == target) needs one vector "
                         f"of class scores for ONE example and a target, got shape {tuple(out.shape)} and target "
                         f"{target!r}; give metric=callable(output, target).")
    return (jnp.argmax(out) == target).astype(jnp.float32)


def _attacks(attacks: Mapping[str, Any], method: str) -> dict[str, tuple[Perturbation, int]]:
    if not isinstance(attacks, Mapping) or not attacks:
        raise ValueError(f"{method}: attacks must be a dict {{name: perturbation or (perturbation, attempts)}}, "
                         f"got {type(attacks).__name__}.")
    out = {}
    for name, spec in attacks.items():
        if not isinstance(name, str) or name == ORIGINAL:
            raise ValueError(f"{method}: attack names are strings other than {ORIGINAL!r} (the unperturbed input's "
                             f"key), got {name!r}.")
        p, n = spec if isinstance(spec, tuple) else (spec, 1)
        if not callable(p):
            raise TypeError(f"{method}: attack {name!r} must be a perturbation p(x, target, key) -> x' "
                            f"(or a pair (p, attempts)), got {type(p).__name__}.")
        out[name] = (p, check_positive_int(n, f"the attempts of {name!r}", method))
    return out


def compare_attacks(
    fn: Callable[[Any], Any],
    attacks: Mapping[str, Perturbation | tuple[Perturbation, int]],
    metric: Callable[[Any, Any], Any] | None = None,
    batch_size: int | str | None = DEFAULT_BATCH_SIZE,
) -> Callable[..., dict[str, Any]]:
    """``metric(fn(x'), target)`` on the input and on each attack's perturbed inputs.

    Captum's ``AttackComparator`` for ONE example: the result is ``{"Original": m(x), name: {"mean":
    m}}`` for an attack of one attempt and ``{"mean", "min", "max"}`` over the attempts of one
    drawn several times, the layout of Captum's ``evaluate`` (best, worst and average case).
    ``jax.vmap`` it over a batch and :func:`summary` gives Captum's ``summary()``.

    Attack ``i`` (in the dict's order) draws its attempt ``a`` with key
    ``jax.random.split(jax.random.fold_in(key, i), attempts)[a]``, so a reference can replay
    the draws. Captum also takes a preprocessing function (``preproc_fn``, and attacks applied
    before or after it): compose it into ``fn`` and the perturbations here.

    Args:
      fn: the model for ONE example (``m.logits``).
      attacks: ``{name: p}`` or ``{name: (p, attempts)}``, ``p(x, target, key) -> x'``
        (:func:`~xai_core.robust.fgsm`, :func:`~xai_core.robust.pgd`, a noise, a transform).
      metric: ``metric(fn(x), target)`` -> a number or a pytree of numbers (Captum's tuples, named
        tuples); default :func:`accuracy`. Computed in at least float32.
      batch_size: attempts of one attack evaluated at once (``"auto"``: from the input and the device).

    Returns:
      ``compare(x, target=None, key=None) -> dict`` (attempts > 1 need ``key``).

    >>> import jax, jax.numpy as jnp, xai_core as xc
    >>> logits = lambda x: jnp.stack([0.0, x @ jnp.array([1.0, -2.0])])
    >>> noise = lambda x, t, key: x + 0.5 * jax.random.normal(key, x.shape)
    >>> compare = xc.robust.compare_attacks(logits, {"FGSM": xc.robust.fgsm(logits, 0.5), "noise": (noise, 8)})
    >>> r = compare(jnp.array([1.0, 0.2]), 1, key=jax.random.key(0))
    >>> float(r["Original"]), float(r["FGSM"]["mean"]), sorted(r["noise"])
    (1.0, 0.0, ['max', 'mean', 'min'])
    """
    method = "compare_attacks"
    if not callable(fn):
        raise TypeError(f"{method}: fn must be callable (the model for ONE example), got {type(fn).__name__}.")
    specs = _attacks(attacks, method)
    batch_size = check_batch_size(batch_size, method)
    measure = metric or accuracy

    def value(x: Any, target: Any) -> Any:
        out = measure(fn(unwrap(x)), target)
        leaves = [jnp.asarray(v) for v in jax.tree.leaves(out)]
        if not leaves or any(v.shape != () for v in leaves):
            raise ValueError(f"{method}: metric(fn(x), target) must return a number or a pytree of numbers for ONE "
                             f"example, got shapes {[tuple(v.shape) for v in leaves]}; jax.vmap compare over a batch.")
        return jax.tree.map(lambda v: jnp.asarray(v).astype(accumulation_dtype(jnp.result_type(v, jnp.float32))), out)

    def compare(x: Any, target: Any = None, key: Any = None) -> dict[str, Any]:
        inputs = split_inputs(x, method)
        x = inputs.noisy(inputs.leaves)
        chunk = resolve_batch_size(batch_size, inputs.leaves, most=CPU_FORWARD_CHUNK)
        results: dict[str, Any] = {ORIGINAL: value(x, target)}
        for i, (name, (p, attempts)) in enumerate(specs.items()):
            if attempts > 1 and key is None:
                raise ValueError(f"{method}: attack {name!r} is drawn {attempts} times: give a jax.random key, "
                                 "compare(x, target, key=key).")
            keys = None if key is None else jax.random.split(jax.random.fold_in(key, i), attempts)

            def one(a: jax.Array, p: Perturbation = p, keys: Any = keys) -> Any:
                x_new = p(x, target, None if keys is None else keys[a])
                check_like(x_new, x, method)
                return value(x_new, target)

            values = chunked_map(one, attempts, chunk)
            stats = {"mean": jax.tree.map(lambda v: v.mean(0), values)}
            if attempts > 1:
                stats.update(min=jax.tree.map(lambda v: v.min(0), values), max=jax.tree.map(lambda v: v.max(0), values))
            results[name] = stats
        return results

    return compare


def summary(results: Mapping[str, Any]) -> dict[str, Any]:
    """Captum's ``AttackComparator.summary()`` from :func:`compare_attacks`' results of a batch
    (``jax.vmap``-ed: a leading axis, or several): each metric averaged over the examples, under
    Captum's keys, ``"Original"``, the attack's name (one attempt) or ``"<name> Mean Attempt"``,
    ``"<name> Min Attempt"`` and ``"<name> Max Attempt"``. Captum nests each value in
    ``{"mean": value}`` and averages batch means over its ``evaluate`` calls; with batches of one
    size that is this mean over every example.

    >>> import jax.numpy as jnp
    >>> s = summary({"Original": jnp.array([1.0, 0.0]), "noise": {"mean": jnp.array([0.5, 0.0]),
    ...              "min": jnp.array([0.0, 0.0]), "max": jnp.array([1.0, 0.0])}})
    >>> {name: float(v) for name, v in s.items()}
    {'Original': 0.5, 'noise Mean Attempt': 0.25, 'noise Min Attempt': 0.0, 'noise Max Attempt': 0.5}
    """
    mean = lambda tree: jax.tree.map(lambda v: jnp.mean(jnp.asarray(v)), tree)  # noqa: E731
    out = {ORIGINAL: mean(results[ORIGINAL])} if ORIGINAL in results else {}
    for name, value in results.items():
        if name == ORIGINAL:
            continue
        if set(value) == {"mean"}:
            out[name] = mean(value["mean"])
        else:
            out.update({f"{name} {stat.title()} Attempt": mean(value[stat]) for stat in ("mean", "min", "max")})
    return out
