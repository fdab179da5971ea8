"""What the attacks, the search and the comparison share: the loss of ONE example, the input
bounds and masks, and the checks of a strength (epsilon, radius, step size).

A *perturbation* is a function ``p(x, target, key) -> x'`` of one example (``x`` an array or a
pytree, ``x'`` of the same structure, fixed inputs still marked); :func:`~xai_core.robust.fgsm`
and :func:`~xai_core.robust.pgd` return one, a noise or a transform is one written by hand
(ignoring the arguments it does not need).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from xai_core.core.checks import check_choice, is_concrete
from xai_core.core.inputs import Fixed, Inputs

Perturbation = Callable[[Any, Any, Any], Any]
"""``p(x, target, key) -> x'``: a perturbation of one example."""

LOSSES = ("cross_entropy", "neg_log", "loss", "score")
"""The named ``loss=`` choices of the attacks (or give a callable ``loss(output, target)``):

- ``"cross_entropy"``: ``fn`` returns logits, the loss is ``-log_softmax(fn(x))[target]``. Captum's
  default loss is ``-log(output[target])`` on whatever the model returns; on a model that ends in
  a softmax (whose logits the adapters return, the softmax cut) both are the cross-entropy.
- ``"neg_log"``: Captum's default as written, ``-log(fn(x)[target])``, for ``fn`` returning
  probabilities.
- ``"loss"``: ``fn(x)`` is the scalar loss itself (the target is not used).
- ``"score"``: ``fn(x)`` is a scalar score (``m.score(t)``), the loss is ``-fn(x)``: an untargeted
  attack lowers the score, a targeted one raises it.
"""

ZERO_GRADIENT = 1e-6
"""Gradient components with ``|g| <= ZERO_GRADIENT`` take no sign step (Captum's FGSM ``zero_thresh``)."""


def unwrap(x: Any) -> Any:
    """``x`` as the model reads it: every fixed input unwrapped."""
    return jax.tree.map(lambda n: n.value if isinstance(n, Fixed) else n, x, is_leaf=lambda n: isinstance(n, Fixed))


def check_like(x_new: Any, x: Any, method: str) -> None:
    """A perturbation's output has ``x``'s structure, shapes and dtypes (or say what differs)."""
    new, old = jax.tree.structure(x_new), jax.tree.structure(x)
    if new != old:
        raise ValueError(f"{method}: the perturbation returned a {new}, not x's structure {old}; it must return "
                         "x perturbed (same structure, shapes and dtypes).")
    for a, b in zip(jax.tree.leaves(x_new), jax.tree.leaves(x)):
        if jnp.shape(a) != jnp.shape(b) or jnp.result_type(a) != jnp.result_type(b):
            raise ValueError(f"{method}: the perturbation returned shape {tuple(jnp.shape(a))} and dtype "
                             f"{jnp.result_type(a)} for an input of shape {tuple(jnp.shape(b))} and dtype "
                             f"{jnp.result_type(b)}; it must return x perturbed, e.g. cast with .astype(x.dtype).")


def check_strength(value: Any, what: str, method: str) -> Any:
    """A strength (epsilon, radius, step size): a finite number >= 0. Traced values (a strength
    searched by :func:`~xai_core.robust.min_perturbation`) pass unchecked."""
    if not is_concrete(value):
        return value
    v = np.asarray(value)
    if v.shape != () or not np.issubdtype(v.dtype, np.number):
        raise ValueError(f"{method}: {what} must be one number, got {value!r}.")
    if not np.isfinite(v) or v < 0:
        raise ValueError(f"{method}: {what} must be a finite number >= 0, got {value!r}.")
    return value


def _check_target(target: Any, classes: int, loss: str, method: str) -> jax.Array:
    if target is None:
        raise ValueError(f"{method}: loss={loss!r} needs a target: the true class of the example for an "
                         "untargeted attack, the class to reach for a targeted one (attack(x, target)).")
    concrete = is_concrete(target)  # before jnp.asarray, which traces a Python int inside a traced program
    shape, dtype = (np.shape(target), np.asarray(target).dtype) if concrete else (target.shape, target.dtype)
    if shape != () or not np.issubdtype(dtype, np.integer):
        raise ValueError(f"{method}: the target of ONE example is one integer class, got shape {tuple(shape)} "
                         f"and dtype {dtype}; for a batch, jax.vmap the attack over examples and targets.")
    if concrete and not 0 <= int(target) < classes:
        raise ValueError(f"{method}: target {int(target)} is not a class of an output of {classes} classes.")
    return jnp.asarray(target)


def loss_of(fn: Callable[[Any], Any], loss: str | Callable[[Any, Any], Any], method: str
            ) -> Callable[[Any, Any], jax.Array]:
    """``(x, target) -> scalar loss`` of one example (``x`` as the model reads it), from ``fn`` and
    ``loss`` (one of :data:`LOSSES` or ``loss(output, target)``); a loss that is not one
    floating-point number fails at trace time, naming its shape."""
    if not callable(fn):
        raise TypeError(f"{method}: fn must be callable (the model's logits, or a score or loss, of ONE example), "
                        f"got {type(fn).__name__}.")
    if not callable(loss):
        check_choice(loss, LOSSES, "loss", method)

    def value(x: Any, target: Any) -> jax.Array:
        out = fn(x)
        if callable(loss):
            result, what = loss(out, target), "loss(fn(x), target)"
        elif loss in ("cross_entropy", "neg_log"):
            out = jnp.asarray(out)
            if out.ndim != 1:
                kind = "logits" if loss == "cross_entropy" else "probabilities"
                raise ValueError(f"{method}: loss={loss!r} needs fn(x) to return one vector of class {kind} "
                                 f"for ONE example, got shape {tuple(out.shape)}; give loss=callable(output, target) "
                                 "for other outputs, or jax.vmap the attack over a batch.")
            t = _check_target(target, out.shape[0], loss, method)
            result = -jax.nn.log_softmax(out)[t] if loss == "cross_entropy" else -jnp.log(out[t])
            what = f"the {loss} loss"
        else:
            result, what = (out if loss == "loss" else -jnp.asarray(out)), f"fn(x) (loss={loss!r})"
        result = jnp.asarray(result)
        if result.shape != ():
            raise ValueError(f"{method}: {what} must be a scalar for ONE example, got shape {tuple(result.shape)}. "
                             "Reduce it to one number (e.g. select the class), and jax.vmap the attack over a batch.")
        if not jnp.issubdtype(result.dtype, jnp.floating):
            raise TypeError(f"{method}: {what} must be a floating-point scalar, got dtype {result.dtype}.")
        return result

    return value


def check_bounds(bounds: Any, method: str) -> tuple[Any, Any] | None:
    """``None`` (unbounded) or a pair ``(low, high)``, each ``None`` (that side unbounded), a number,
    an array broadcastable to the input, or a pytree of the input's structure; ``low <= high``."""
    if bounds is None:
        return None
    if not isinstance(bounds, (tuple, list)) or len(bounds) != 2:
        raise ValueError(f"{method}: bounds must be a pair (low, high), e.g. (0.0, 1.0) for images in [0, 1], "
                         f"or None; got {bounds!r}.")
    low, high = bounds
    for side, name in ((low, "low"), (high, "high")):
        for leaf in jax.tree.leaves(side):
            if is_concrete(leaf) and np.isnan(np.asarray(leaf, np.float64)).any():
                raise ValueError(f"{method}: the {name} bound holds NaN; use -inf / inf (or None) for no bound.")
    if low is not None and high is not None:
        lows, highs = jax.tree.leaves(low), jax.tree.leaves(high)
        same = jax.tree.structure(low) == jax.tree.structure(high)
        for a, b in zip(lows, highs) if same else [(a, b) for a in lows for b in highs]:
            if not (is_concrete(a) and is_concrete(b)):
                continue
            a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
            try:
                reversed_ = bool(np.any(a > b))
            except ValueError:  # shapes that do not broadcast: the leaves' own checks will say
                continue
            if reversed_:
                raise ValueError(f"{method}: bounds are reversed: low {a.tolist()} > high {b.tolist()}; "
                                 "give (low, high) with low <= high.")
    return low, high


def clamp(inputs: Inputs, leaves: list[jax.Array], bounds: tuple[Any, Any] | None, method: str) -> list[jax.Array]:
    """Each leaf clipped to its bounds (Captum's ``torch.clamp(x, lower_bound, upper_bound)``)."""
    if bounds is None:
        return leaves
    lows = inputs.per_leaf(bounds[0], "the low bound", method)
    highs = inputs.per_leaf(bounds[1], "the high bound", method)
    cast = lambda v, a: None if v is None else jnp.asarray(v, a.dtype)  # noqa: E731
    return [jnp.clip(a, cast(lo, a), cast(hi, a)) for a, lo, hi in zip(leaves, lows, highs)]


def masks(inputs: Inputs, mask: Any, method: str) -> list[jax.Array | None]:
    """One mask per attributed leaf (``None``: every element moves), broadcastable to the leaf."""
    out = []
    for m, a in zip(inputs.per_leaf(mask, "mask", method), inputs.leaves):
        if m is None:
            out.append(None)
            continue
        m = jnp.asarray(m)
        try:
            ok = jnp.broadcast_shapes(m.shape, a.shape) == a.shape
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"{method}: mask of shape {tuple(m.shape)} does not broadcast to x of shape "
                             f"{tuple(a.shape)}; give 1 where the input may change, 0 where not.")
        out.append(m.astype(a.dtype))
    return out


def per_leaf_start(inputs: Inputs, start: Any, method: str) -> list[jax.Array]:
    """A given random start (offsets of x's structure), checked against each leaf's shape."""
    out = []
    for d, a in zip(inputs.per_leaf(start, "start", method), inputs.leaves):
        d = jnp.asarray(d)
        if d.shape != a.shape:
            raise ValueError(f"{method}: start of shape {tuple(d.shape)} does not match x of shape {tuple(a.shape)}; "
                             "give the offsets from x (e.g. xc.robust.random_point(key, x, radius)).")
        out.append(d.astype(a.dtype))
    return out


def l2_norm(a: jax.Array) -> jax.Array:
    return jnp.sqrt(jnp.sum(jnp.square(a)))


def leaf_size(a: jax.Array) -> int:
    return math.prod(a.shape)
