"""Pattern matching on a jaxpr: the pieces :func:`~xai_core.graph.cut_final_activation` uses.

:class:`_Graph` looks up the equation that produces a value; the helpers on it prove two
values the same (:func:`_same`), find the dims a value is constant along
(:func:`_const_dims`), see through stability shifts, sums, reciprocals and casts, and tell
which operand of a structural op carries its output (:func:`_structural_operand`).
:func:`_match_softmax`, :func:`_match_sigmoid_inline` and :func:`_match_log_softmax`
recognise the inline forms of the activations at one value, as a :class:`_Match`.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np
from jax.extend.core import ClosedJaxpr, DropVar, Jaxpr, JaxprEqn, Literal, Var


# Ops that move, pick or re-type values without changing what they mean (a
# probability stays a probability). `cut_final_activation` walks back through them
# from each output; they are kept, applied to the logits instead. The chain value is
# operand 0 (other operands, e.g. gather / dynamic_slice indices, are reused as is).
_STRUCTURAL = frozenset({
    "reshape", "squeeze", "expand_dims", "broadcast_in_dim", "transpose", "rev",
    "slice", "dynamic_slice", "gather", "copy", "copy_p", "convert_element_type",
    "reduce_precision", "sharding_constraint", "name",  # `name` = checkpoint_name
})
# Structural ops with one output per operand (output k comes from operand k).
_STRUCTURAL_VARIADIC = frozenset({"device_put", "optimization_barrier"})

# Ops through which a "stability shift" (x - max(x)) is traced back to reduce_max.
_SHIFT_PASS = frozenset({
    "broadcast_in_dim", "reshape", "squeeze", "expand_dims", "convert_element_type",
    "copy", "stop_gradient", "max", "min", "select_n", "neg",
})
_ELEMENTWISE_UNARY = frozenset({
    "stop_gradient", "convert_element_type", "copy", "neg", "exp", "log", "abs",
    "sign", "log1p", "expm1", "is_finite", "integer_pow", "sqrt", "rsqrt",
})
_ELEMENTWISE_NARY = frozenset({"add", "sub", "mul", "div", "max", "min", "select_n", "pow"})


# --------------------------------------------------------------------------- #
# Pattern matching on a jaxpr
# --------------------------------------------------------------------------- #

class _Graph:
    """Producer lookup for one jaxpr."""

    def __init__(self, jaxpr: Jaxpr):
        self.jaxpr = jaxpr
        self._producer: dict[Var, tuple[JaxprEqn, int]] = {}
        for eqn in jaxpr.eqns:
            for k, v in enumerate(eqn.outvars):
                if not isinstance(v, DropVar):
                    self._producer[v] = (eqn, k)

    def producer(self, v: Any) -> tuple[JaxprEqn, int] | tuple[None, None]:
        if isinstance(v, Literal):
            return None, None
        return self._producer.get(v, (None, None))

    def op(self, v: Any, *names: str) -> JaxprEqn | None:
        """The equation producing ``v`` if its primitive is one of ``names``."""
        eqn, _ = self.producer(v)
        return eqn if eqn is not None and eqn.primitive.name in names else None


def _literal_value(v: Any) -> float | None:
    if isinstance(v, Literal):
        try:
            arr = np.asarray(v.val)
        except Exception:  # pragma: no cover - odd literal types
            return None
        if arr.size == 1:
            return float(arr.reshape(()))
    return None


def _ndim(v: Any) -> int:
    return len(getattr(v.aval, "shape", ()))


def _same(g: _Graph, a: Any, b: Any, depth: int = 8) -> bool:
    """True if ``a`` and ``b`` are provably the same value (same var or same recipe)."""
    if a is b:
        return True
    if isinstance(a, Literal) or isinstance(b, Literal):
        la, lb = _literal_value(a), _literal_value(b)
        return la is not None and la == lb
    if depth <= 0:
        return False
    ea, ka = g.producer(a)
    eb, kb = g.producer(b)
    if ea is None or eb is None or ka != kb or ea.primitive is not eb.primitive:
        return False
    if ea.effects or eb.effects or len(ea.invars) != len(eb.invars):
        return False
    try:
        if ea.params != eb.params:
            return False
    except Exception:
        return False
    return all(_same(g, x, y, depth - 1) for x, y in zip(ea.invars, eb.invars))


def _const_dims(g: _Graph, v: Any, ndim: int, depth: int = 16) -> set[int]:
    """Dims (of a rank-``ndim`` result) along which ``v`` is provably constant."""
    shape = getattr(getattr(v, "aval", None), "shape", ())
    if isinstance(v, Literal) or len(shape) == 0:
        return set(range(ndim))
    dims = {d for d, n in enumerate(shape) if n == 1} if len(shape) == ndim else set()
    if depth <= 0:
        return dims
    eqn, _ = g.producer(v)
    if eqn is None:
        return dims
    name = eqn.primitive.name
    if name == "broadcast_in_dim":
        bd = eqn.params["broadcast_dimensions"]
        inner = _const_dims(g, eqn.invars[0], _ndim(eqn.invars[0]), depth - 1)
        return dims | {d for d in range(len(shape)) if d not in bd} | {bd[i] for i in inner}
    if name in _ELEMENTWISE_UNARY:
        return dims | _const_dims(g, eqn.invars[0], ndim, depth - 1)
    if name in _ELEMENTWISE_NARY:
        ops = eqn.invars[1:] if name == "select_n" else eqn.invars
        common = set(range(ndim))
        for x in ops:
            common &= _const_dims(g, x, ndim, depth - 1)
        if name == "select_n":
            common &= _const_dims(g, eqn.invars[0], ndim, depth - 1)
        return dims | common
    return dims


def _is_stability_shift(g: _Graph, c: Any, base: Any, depth: int = 10) -> bool:
    """True if ``c`` is a numerical-stability shift of ``base``: built from
    ``reduce_max(base)`` (``x - max(x)``) or hidden behind ``stop_gradient``."""
    if depth <= 0:
        return False
    eqn, _ = g.producer(c)
    if eqn is None:
        return False
    name = eqn.primitive.name
    if name == "stop_gradient":
        return True
    if name == "reduce_max":
        return _same(g, eqn.invars[0], base)
    if name in _SHIFT_PASS:
        return any(_is_stability_shift(g, x, base, depth - 1) for x in eqn.invars)
    return False


def _strip_shift(g: _Graph, p: Any, axes: Collection[int]) -> Any:
    """``h`` if ``p = h - shift`` with a stability shift constant along ``axes``, else ``p``."""
    eqn = g.op(p, "sub")
    if eqn is not None:
        h, c = eqn.invars
        if set(axes) <= _const_dims(g, c, _ndim(p)) and _is_stability_shift(g, c, h):
            return h
    return p


_BROADCASTING = ("broadcast_in_dim", "reshape", "expand_dims", "convert_element_type",
                 "copy", "abs")


def _reduced_sum(g: _Graph, d: Any) -> tuple[Any, tuple[int, ...]] | None:
    """If ``d`` is ``reduce_sum(e, axes)`` (possibly re-broadcast), return (e, axes)."""
    for _ in range(8):
        eqn, _ = g.producer(d)
        if eqn is None:
            return None
        if eqn.primitive.name == "reduce_sum":
            return eqn.invars[0], tuple(eqn.params["axes"])
        if eqn.primitive.name not in _BROADCASTING:
            return None
        d = eqn.invars[0]
    return None


def _reciprocal_of(g: _Graph, r: Any) -> Any | None:
    """``d`` if ``r`` is ``1 / d`` (div or integer_pow -1), else None."""
    eqn = g.op(r, "div")
    if eqn is not None and _literal_value(eqn.invars[0]) == 1.0:
        return eqn.invars[1]
    eqn = g.op(r, "integer_pow")
    if eqn is not None and eqn.params.get("y") == -1:
        return eqn.invars[0]
    return None


def _uncast(g: _Graph, v: Any) -> Any:
    """``v`` without float-to-float ``convert_element_type``s in front of it."""
    for _ in range(4):
        eqn = g.op(v, "convert_element_type")
        if eqn is None or not jax.numpy.issubdtype(eqn.params["new_dtype"], jax.numpy.floating) \
                or not jax.numpy.issubdtype(eqn.invars[0].aval.dtype, jax.numpy.floating):
            return v
        v = eqn.invars[0]
    return v


def _structural_operand(eqn: JaxprEqn, k: int) -> int | None:
    """Which operand of ``eqn`` carries output ``k`` unchanged in meaning, or None."""
    name = eqn.primitive.name
    if name in _STRUCTURAL and k == 0 and eqn.invars:
        if name == "convert_element_type":
            if not jax.numpy.issubdtype(eqn.params["new_dtype"], jax.numpy.floating):
                return None
        return 0
    if name in _STRUCTURAL_VARIADIC and k < len(eqn.invars):
        return k
    return None


@dataclass(frozen=True)
class _Match:
    kind: str                         # "softmax" | "log_softmax" | "sigmoid"
    logits: Any                       # the activation's input (Var or Literal)
    axes: tuple[int, ...] | None      # reduced axes (in the logits' dims); None for sigmoid
    # Activation inside the body of a call (e.g. a remat'ed model) whose input is
    # computed in there too: (eqn, output index, body, {output index: _Found in body}).
    nested: tuple[JaxprEqn, int, ClosedJaxpr, dict[int, _Found]] | None = None


@dataclass(frozen=True)
class _Found:
    """A final activation found behind an output, and the structural ops between them."""

    match: _Match
    chain: tuple[tuple[JaxprEqn, int, int], ...]  # (eqn, operand, output), activation -> out


def _match_softmax(g: _Graph, num: Any, den: Any) -> _Match | None:
    """``num / den`` is ``softmax(h)`` if num = exp(p), den = sum_A exp(p)."""
    e_num = g.op(num, "exp")
    red = _reduced_sum(g, den)
    if e_num is None or red is None:
        return None
    summed, axes = red
    if not _same(g, _uncast(g, summed), num):  # low-precision sums run in float32
        return None
    p = e_num.invars[0]
    if not set(axes) <= _const_dims(g, den, _ndim(num)):
        return None
    return _Match("softmax", _strip_shift(g, p, axes), axes)


def _match_sigmoid_inline(g: _Graph, num: Any, den: Any) -> _Match | None:
    """``1 / (1 + exp(-h))``."""
    if _literal_value(num) != 1.0:
        return None
    add = g.op(den, "add")
    if add is None:
        return None
    a, b = add.invars
    if _literal_value(a) != 1.0:
        a, b = b, a
    if _literal_value(a) != 1.0:
        return None
    e = g.op(b, "exp")
    n = g.op(e.invars[0], "neg") if e is not None else None
    if n is None:
        return None
    return _Match("sigmoid", n.invars[0], None)


def _match_log_softmax(g: _Graph, p: Any, k: Any) -> _Match | None:
    """``p - k`` is ``log_softmax(p)`` if k = log(sum_A exp(p - s)) + s (s optional)."""
    s_add = None
    log = g.op(k, "log")
    if log is None:
        add = g.op(k, "add")
        if add is None:
            return None
        for lg, s in (add.invars, add.invars[::-1]):
            if g.op(lg, "log") is not None:
                log, s_add = g.op(lg, "log"), s
                break
        if log is None:
            return None
    red = _reduced_sum(g, log.invars[0])
    if red is None:
        return None
    summed, axes = red
    e = g.op(summed, "exp")
    if e is None:
        return None
    q = e.invars[0]
    if s_add is None:
        if not _same(g, q, p):
            return None
    else:
        sub = g.op(q, "sub")
        if sub is None or not (_same(g, sub.invars[0], p) and _same(g, sub.invars[1], s_add)):
            return None
        if not set(axes) <= _const_dims(g, s_add, _ndim(p)):
            return None
    return _Match("log_softmax", _strip_shift(g, p, axes), axes)
