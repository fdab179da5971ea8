"""Cutting a final softmax / log_softmax / sigmoid from a program, and the check for
outputs that could not be cut.

:func:`_match_activation` recognises an activation at one value, in any of its forms
(inline, the ``logistic`` primitive, a call, or inside a call's body); :func:`_find` walks
back to one from an output through structural ops; :func:`_rewrite` re-traces the program
with the activation replaced by its input. The matching helpers are in
:mod:`xai_core.graph.patterns`.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.extend.core import ClosedJaxpr, DropVar, JaxprEqn, Literal

from xai_core.graph.interpreter import (
    _CALL_LIKE,
    _REBUILDABLE_CALLS,
    _REMAT,
    _bind,
    _call_name,
    _inner,
    _read,
    _run,
    _specs,
)
from xai_core.graph.patterns import (
    _Found,
    _Graph,
    _Match,
    _match_log_softmax,
    _match_sigmoid_inline,
    _match_softmax,
    _reciprocal_of,
    _structural_operand,
)


#: What :func:`cut_final_activation` can remove.
ACTIVATIONS: tuple[str, ...] = ("softmax", "log_softmax", "sigmoid")


_KIND_BY_CALL_NAME = {"softmax": "softmax", "_softmax": "softmax",
                      "log_softmax": "log_softmax", "_log_softmax": "log_softmax",
                      "sigmoid": "sigmoid", "_sigmoid": "sigmoid"}


def _match_activation(g: _Graph, v: Any, depth: int = 4) -> _Match | None:
    """Is ``v`` the output of a softmax / log_softmax / sigmoid (any of its forms)?"""
    eqn, k = g.producer(v)
    if eqn is None:
        return None
    name = eqn.primitive.name
    if name == "logistic":
        return _Match("sigmoid", eqn.invars[0], None)
    if name == "div":
        num, den = eqn.invars
        return _match_softmax(g, num, den) or _match_sigmoid_inline(g, num, den)
    if name == "mul":
        for num, r in (eqn.invars, eqn.invars[::-1]):
            den = _reciprocal_of(g, r)
            if den is not None:
                m = _match_softmax(g, num, den)
                if m is not None:
                    return m
        return None
    if name == "sub":
        return _match_log_softmax(g, *eqn.invars)
    if name in _CALL_LIKE and depth > 0:
        body = _inner(eqn)
        if body is None:
            return None
        inner = _find(_Graph(body.jaxpr), body.jaxpr.outvars[k], depth - 1)
        if inner is not None:
            m = inner.match
            if not inner.chain and m.nested is None and m.logits in body.jaxpr.invars:
                return _Match(m.kind, eqn.invars[body.jaxpr.invars.index(m.logits)], m.axes)
            if name in _REBUILDABLE_CALLS:
                return _Match(m.kind, None, m.axes, nested=(eqn, k, body, {k: inner}))
        # Fallback on the function's name (e.g. a jit named log_softmax whose body
        # uses a form we do not recognise): its one same-shaped array input.
        kind = _KIND_BY_CALL_NAME.get(_call_name(eqn) or "")
        if kind is not None:
            shape = getattr(v.aval, "shape", None)
            cands = [x for x in eqn.invars if not isinstance(x, Literal)
                     and getattr(x.aval, "shape", None) == shape]
            if len(cands) == 1:
                return _Match(kind, cands[0], None)
    return None


def _find(g: _Graph, out: Any, depth: int = 4) -> _Found | None:
    """The final activation behind output ``out`` and the structural ops after it."""
    chain: list[tuple[JaxprEqn, int, int]] = []
    v = out
    for _ in range(64):
        m = _match_activation(g, v, depth)
        if m is not None:
            return _Found(m, tuple(reversed(chain)))
        eqn, k = g.producer(v)
        if eqn is None:
            return None
        pos = _structural_operand(eqn, k)
        if pos is None:
            return None
        chain.append((eqn, pos, k))
        v = eqn.invars[pos]
    return None


def _rewrite(closed: ClosedJaxpr, found: dict[int, _Found]) -> ClosedJaxpr:
    """Re-trace ``closed`` with output ``i`` recomputed from ``found[i]``'s logits
    (its structural chain re-applied); equations nothing needs are dropped."""
    jaxpr = closed.jaxpr
    atoms: list[Any] = []
    for i, v in enumerate(jaxpr.outvars):
        if i in found:
            f = found[i]
            if f.match.nested is not None:
                atoms.extend(f.match.nested[0].invars)
            else:
                atoms.append(f.match.logits)
            for eqn, pos, _ in f.chain:
                atoms.extend(x for j, x in enumerate(eqn.invars) if j != pos)
        else:
            atoms.append(v)
    needed = {v for v in atoms if not isinstance(v, Literal)}  # Literals are unhashable
    live: list[JaxprEqn] = []
    for eqn in reversed(jaxpr.eqns):
        if eqn.effects or any(o in needed for o in eqn.outvars if not isinstance(o, DropVar)):
            live.append(eqn)
            needed.update(x for x in eqn.invars if not isinstance(x, Literal))
    live.reverse()

    def fn(*args: Any) -> list[Any]:
        env: dict = dict(zip(jaxpr.constvars, closed.consts))
        env.update(zip(jaxpr.invars, args))
        env = _run(live, env)
        results = []
        for i, v in enumerate(jaxpr.outvars):
            if i not in found:
                results.append(_read(env, v))
                continue
            m = found[i].match
            val = _recompute(m.nested, env) if m.nested is not None else _read(env, m.logits)
            for eqn, pos, k in found[i].chain:
                invals = [val if j == pos else _read(env, x)
                          for j, x in enumerate(eqn.invars)]
                val = _bind(eqn, invals)[k]
            results.append(val)
        return results

    return jax.make_jaxpr(fn)(*_specs(jaxpr))


def _recompute(nested: tuple[JaxprEqn, int, ClosedJaxpr, dict[int, _Found]], env: dict) -> Any:
    """Output ``k`` of a call, with the activation inside its body cut."""
    eqn, k, body, inner = nested
    cut_body = _rewrite(body, inner)

    def call(*args: Any) -> list[Any]:
        return jax.core.eval_jaxpr(cut_body.jaxpr, cut_body.consts, *args)

    if eqn.primitive.name in _REMAT:
        call = jax.checkpoint(call, prevent_cse=eqn.params.get("prevent_cse", True),
                              policy=eqn.params.get("policy"))
    return call(*[_read(env, x) for x in eqn.invars])[k]


def _find_all(closed: ClosedJaxpr) -> dict[int, _Found]:
    g = _Graph(closed.jaxpr)
    found = {}
    for i, v in enumerate(closed.jaxpr.outvars):
        f = _find(g, v)
        if f is not None:
            found[i] = f
    return found


def cut_final_activation(closed_jaxpr: ClosedJaxpr) -> tuple[ClosedJaxpr, str | None]:
    """Remove a final softmax, log_softmax or sigmoid from each output of a program.

    From every output, walks back through structural ops (reshape, squeeze,
    broadcast_in_dim, transpose, slice, dynamic_slice, gather, float converts,
    copies, ``checkpoint_name`` marks, ...) to the value they came from. If that is a

    - softmax over any axes: ``jax.nn.softmax`` inline, the ``custom_jvp_call``
      form (``jax_softmax_custom_jvp``), a call named ``softmax``, or hand-written
      ``exp(h) / sum(exp(h))`` (with or without the ``h - max(h)`` shift);
    - log_softmax: a call named ``log_softmax``, or inline ``h - log(sum(exp(h)))``
      (also ``h - logsumexp(h)``);
    - sigmoid: the ``logistic`` primitive or inline ``1 / (1 + exp(-h))``;

    the activation is replaced by its input ``h`` (a stability shift ``h - max(h)``
    is dropped as well), the structural ops after it are re-applied to ``h``, and
    code nothing uses any more is removed. An activation that is not at the end (a
    softmax inside attention) is left alone. Inputs keep their order and avals.

    Returns ``(new_jaxpr, cut)``: ``cut`` is ``"softmax"``, ``"log_softmax"`` or
    ``"sigmoid"`` (comma-joined, in output order, if several outputs had different
    ones), or ``None``, in which case ``closed_jaxpr`` itself is returned unchanged.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from xai_core.graph import trace, cut_final_activation
        >>> cut, what = cut_final_activation(trace(lambda x: jax.nn.sigmoid(2 * x)[0], jnp.ones(3)))
        >>> what, [e.primitive.name for e in cut.eqns]
        ('sigmoid', ['mul', 'slice', 'squeeze'])
        >>> cut_final_activation(trace(lambda x: 2 * x, jnp.ones(3)))[1] is None
        True
    """
    found = _find_all(closed_jaxpr)
    if not found:
        return closed_jaxpr, None
    kinds: list[str] = []
    for i in sorted(found):
        if found[i].match.kind not in kinds:
            kinds.append(found[i].match.kind)
    return _rewrite(closed_jaxpr, found), ",".join(kinds)


# --------------------------------------------------------------------------- #
# Output check
# --------------------------------------------------------------------------- #

def looks_like_probabilities(y: Any, *, atol: float = 1e-3) -> bool:
    """True if a concrete model output looks like probabilities rather than logits.

    Rules (``atol`` is the tolerance throughout, at least the machine epsilon of
    ``y``'s dtype, so that bfloat16 probabilities count):

    1. ``y`` is a non-empty, finite, floating-point array with every value in [0, 1];
    2. and either its last axis has 2+ entries and every slice along it sums to 1
       (a softmax output; leading axes are batch / spatial positions),
       or its last axis has one entry / ``y`` is a scalar (a single sigmoid-like
       output; a single logit that happens to land in [0, 1] is a false positive
       here, so treat a ``True`` for one value as "maybe").

    Vectors in [0, 1] that do not sum to 1 (independent per-class sigmoids) give
    ``False``: they are as likely to be small logits.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from xai_core.graph import looks_like_probabilities
        >>> looks_like_probabilities(jax.nn.softmax(jnp.array([1.0, 2.0, 3.0])))
        True
        >>> looks_like_probabilities(jnp.array([1.0, 2.0, 3.0]))
        False
    """
    try:
        arr = np.asarray(y)
    except Exception:  # tracers and other abstract values: no evidence
        return False
    if arr.size == 0 or not jax.numpy.issubdtype(arr.dtype, jax.numpy.floating):
        return False
    atol = max(atol, float(jax.numpy.finfo(arr.dtype).eps))  # bfloat16 sums to 1 +- 4e-3
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        return False
    if arr.min() < -atol or arr.max() > 1.0 + atol:
        return False
    if arr.ndim == 0 or arr.shape[-1] == 1:
        return True
    return bool(np.all(np.abs(arr.sum(axis=-1) - 1.0) <= atol))
