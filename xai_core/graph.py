"""Graph tools on jaxprs: one set, shared by every framework adapter.

An adapter turns a model into a JAX function; these tools work on the traced
program (the jaxpr), where every op is visible however it was written (as a layer,
a functional call, or inline arithmetic):

- :func:`trace` traces a function to a :class:`~jax.extend.core.ClosedJaxpr` with
  nested ``jit`` calls inlined, so the graph tools see one flat program.
- :func:`cut_final_activation` removes a final softmax / log_softmax / sigmoid, so
  attributions explain the class score (logits), not a saturated probability.
- :func:`looks_like_probabilities` is the sanity check for outputs that could not
  be cut.
- :func:`mark` labels a layer's output while an adapter traces the model (a torch
  module name, a Keras layer name, a Flax module path); :func:`layers` lists the
  labels of a program and :func:`split` cuts it there into ``head`` and ``tail``.

No ``jax._src`` imports: only ``jax.make_jaxpr``, ``jax.core.eval_jaxpr``,
``jax.extend.core`` / ``jax.extend.source_info_util``, and per equation the calls
``jax.core.eval_jaxpr`` itself makes (``Primitive.get_bind_params``, ``bind``).
Rewritten programs are produced by re-tracing a small interpreter with
``jax.make_jaxpr`` rather than by editing ``Jaxpr`` objects, so no private
constructors are needed and dead code is never emitted.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from xai_core import graph
    >>> f = lambda w, x: jax.nn.softmax(x @ w)
    >>> w, x = jnp.ones((3, 2)), jnp.ones(3)
    >>> cut, what = graph.cut_final_activation(graph.trace(f, w, x))
    >>> what
    'softmax'
    >>> bool(jnp.allclose(jax.core.eval_jaxpr(cut.jaxpr, cut.consts, w, x)[0], x @ w))
    True
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.ad_checkpoint import checkpoint_name
from jax.extend import source_info_util
from jax.extend.core import ClosedJaxpr, DropVar, Jaxpr, JaxprEqn, Literal, Var

from xai_core._checks import check_choice

__all__ = [
    "KEEP_CALLS",
    "ACTIVATIONS",
    "trace",
    "cut_final_activation",
    "looks_like_probabilities",
    "LAYER_MARK",
    "mark",
    "Layer",
    "layers",
    "Split",
    "split",
    "channels_last",
    "fast_kernels",
]

#: Names of ``jit`` calls that :func:`trace` leaves as calls (not inlined), so the
#: final activation stays recognisable as one unit.
KEEP_CALLS: frozenset[str] = frozenset({"softmax", "log_softmax"})

#: What :func:`cut_final_activation` can remove.
ACTIVATIONS: tuple[str, ...] = ("softmax", "log_softmax", "sigmoid")

# Call-like primitives whose body is a jaxpr. Inlined by `trace`: the jit family.
_INLINE_CALLS = frozenset({"jit", "pjit", "closed_call", "core_call"})
# Remat (jax.checkpoint / nn.remat): its body can be cut and re-emitted under remat.
_REMAT = frozenset({"checkpoint", "remat", "remat2"})
_REBUILDABLE_CALLS = _REMAT | _INLINE_CALLS
# Looked into (never inlined) when matching an activation.
_CALL_LIKE = _REBUILDABLE_CALLS | {"custom_jvp_call", "custom_vjp_call", "custom_vjp_call_jaxpr"}

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
# Interpreter
# --------------------------------------------------------------------------- #

def _bind(eqn: JaxprEqn, invals: Sequence[Any]) -> list[Any]:
    """Apply one equation to values, as ``jax.core.eval_jaxpr`` does per equation
    (keeping its source info / name stack and its context, e.g. compute type)."""
    bind_params = eqn.primitive.get_bind_params(eqn.params)
    subfuns: Sequence[Any] = ()
    if isinstance(bind_params, tuple):  # jax < 0.7 returned (subfuns, params)
        subfuns, bind_params = bind_params
    name_stack = source_info_util.current_name_stack() + eqn.source_info.name_stack
    ctx = getattr(getattr(eqn, "ctx", None), "manager", None)
    with source_info_util.user_context(eqn.source_info.traceback, name_stack=name_stack), \
            (ctx if ctx is not None else contextlib.nullcontext()):
        out = eqn.primitive.bind(*subfuns, *invals, **bind_params)
    return list(out) if eqn.primitive.multiple_results else [out]


def _call_name(eqn: JaxprEqn) -> str | None:
    """The function name of a call-like equation (``jit[name=...]``, custom_jvp fn)."""
    name = eqn.params.get("name")
    if isinstance(name, str):
        return name
    inner = _inner(eqn)
    if inner is not None:
        info = getattr(inner.jaxpr, "debug_info", None)
        fname = getattr(info, "func_name", None)
        if isinstance(fname, str):
            return fname
    return None


def _inner(eqn: JaxprEqn) -> ClosedJaxpr | None:
    """The body of a call-like equation as a ClosedJaxpr, or None."""
    for key in ("jaxpr", "call_jaxpr", "fun_jaxpr"):
        body = eqn.params.get(key)
        if isinstance(body, ClosedJaxpr):
            return body
        if isinstance(body, Jaxpr):
            return ClosedJaxpr(body, ())
    return None


def _read(env: dict, v: Any) -> Any:
    return v.val if isinstance(v, Literal) else env[v]


#: A replacement for one primitive: called with the equation and its input values,
#: returns its (single) output value.
Rule = Callable[..., Any]


def _interpret(jaxpr: Jaxpr, consts: Sequence[Any], args: Sequence[Any], *,
               inline: bool, keep: Collection[str] = KEEP_CALLS,
               rules: Mapping[str, Rule] | None = None) -> list[Any]:
    """Evaluate ``jaxpr``; with ``inline``, evaluate jit bodies instead of binding them;
    ``rules`` computes the primitives it names its own way (:func:`fast_kernels`)."""
    rules = rules or {}
    env: dict = {}
    for v, x in zip(jaxpr.constvars, consts):
        env[v] = x
    for v, x in zip(jaxpr.invars, args):
        env[v] = x
    for eqn in jaxpr.eqns:
        invals = [_read(env, v) for v in eqn.invars]
        body = _inner(eqn) if inline and eqn.primitive.name in _INLINE_CALLS else None
        rule = rules.get(eqn.primitive.name)
        if rule is not None:
            outvals = [rule(eqn, *invals)]
        elif body is not None and _call_name(eqn) not in keep:
            outvals = _interpret(body.jaxpr, body.consts, invals, inline=True, keep=keep,
                                 rules=rules)
        else:
            outvals = _bind(eqn, invals)
        for v, x in zip(eqn.outvars, outvals):
            if not isinstance(v, DropVar):
                env[v] = x
    return [_read(env, v) for v in jaxpr.outvars]


def _specs(jaxpr: Jaxpr) -> list[jax.ShapeDtypeStruct]:
    return [jax.ShapeDtypeStruct(v.aval.shape, v.aval.dtype,
                                 weak_type=getattr(v.aval, "weak_type", False))
            for v in jaxpr.invars]


def trace(fn: Callable[..., Any], *example_args: Any,
          keep: Collection[str] = KEEP_CALLS,
          return_shape: bool = False) -> ClosedJaxpr | tuple[ClosedJaxpr, Any]:
    """Trace ``fn(*example_args)`` to a ClosedJaxpr with nested ``jit`` calls inlined.

    Calls named in ``keep`` (default ``softmax`` / ``log_softmax``) stay calls, and
    ``custom_jvp_call`` / ``custom_vjp_call`` stay as they are (``jax.nn.relu`` is
    one), so their custom derivatives survive. The jaxpr's inputs are the flattened
    leaves of ``example_args`` (in ``jax.tree.leaves(example_args)`` order; every
    leaf is an input, nothing is baked in as a constant). ``example_args`` may be
    arrays or ``jax.ShapeDtypeStruct``s. With ``return_shape=True`` also returns
    the output's pytree of ``ShapeDtypeStruct`` (like ``jax.make_jaxpr``).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from xai_core.graph import trace
        >>> f = lambda x: jax.jit(jnp.tanh)(x) * 2
        >>> [e.primitive.name for e in trace(f, jnp.ones(3)).eqns]
        ['tanh', 'mul']
    """
    closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(*example_args)
    jaxpr, consts = closed.jaxpr, closed.consts
    keep = frozenset(keep)
    flat = jax.make_jaxpr(
        lambda *a: _interpret(jaxpr, consts, a, inline=True, keep=keep))(*_specs(jaxpr))
    return (flat, out_shape) if return_shape else flat


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


@dataclass(frozen=True)
class _Match:
    kind: str                         # "softmax" | "log_softmax" | "sigmoid"
    logits: Any                       # the activation's input (Var or Literal)
    axes: tuple[int, ...] | None      # reduced axes (in the logits' dims); None for sigmoid
    # Activation inside the body of a call (e.g. a remat'ed model) whose input is
    # computed in there too: (eqn, output index, body, {output index: _Found in body}).
    nested: tuple[JaxprEqn, int, ClosedJaxpr, dict[int, _Found]] | None = None


def _uncast(g: _Graph, v: Any) -> Any:
    """``v`` without float-to-float ``convert_element_type``s in front of it."""
    for _ in range(4):
        eqn = g.op(v, "convert_element_type")
        if eqn is None or not jax.numpy.issubdtype(eqn.params["new_dtype"], jax.numpy.floating) \
                or not jax.numpy.issubdtype(eqn.invars[0].aval.dtype, jax.numpy.floating):
            return v
        v = eqn.invars[0]
    return v


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
class _Found:
    match: _Match
    chain: tuple[tuple[JaxprEqn, int, int], ...]  # (eqn, operand, output), activation -> out


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


# --------------------------------------------------------------------------- #
# Layers: named points of a program, and splitting it there
# --------------------------------------------------------------------------- #

#: Prefix of the ``checkpoint_name`` labels that :func:`mark` puts on layer outputs.
LAYER_MARK = "xai-layer:"


def mark(x: Any, name: str) -> Any:
    """Label ``x`` as the output of layer ``name``: an identity that stays in the jaxpr.

    Adapters call this on each layer's output (for ONE example) while tracing, so that
    :func:`layers` and :func:`split` find the layer in the program however the model
    was written. It is ``jax.ad_checkpoint.checkpoint_name`` with a reserved prefix:
    free at run time, and no effect on gradients.
    """
    return checkpoint_name(x, LAYER_MARK + name)


@dataclass(frozen=True)
class Layer:
    """A named point of a program: the output of one layer, for one example."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype

    def __repr__(self) -> str:
        return f"Layer({self.name!r}, shape={self.shape}, dtype={self.dtype})"


def _marks(jaxpr: Jaxpr) -> list[tuple[str, Var]]:
    """``(name, var)`` of every layer mark, in program order; the k-th repeated use of
    one name (a module called twice, like a shared ReLU) is named ``name:k``."""
    seen: dict[str, int] = {}
    out = []
    for eqn in jaxpr.eqns:
        label = eqn.params.get("name") if eqn.primitive.name == "name" else None
        if not (isinstance(label, str) and label.startswith(LAYER_MARK)):
            continue
        base = label[len(LAYER_MARK):]
        k = seen.get(base, 0)
        seen[base] = k + 1
        v = eqn.outvars[0]
        if not isinstance(v, DropVar):
            out.append((base if k == 0 else f"{base}:{k}", v))
    return out


def layers(closed_jaxpr: ClosedJaxpr) -> list[Layer]:
    """The layers :func:`mark`-ed in a program, in the order they are computed.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from xai_core.graph import layers, mark, trace
        >>> f = lambda x: mark(jnp.tanh(mark(2 * x, "double")), "tanh").sum()
        >>> [(l.name, l.shape) for l in layers(trace(f, jnp.ones(3)))]
        [('double', (3,)), ('tanh', (3,))]
    """
    return [Layer(n, tuple(v.aval.shape), np.dtype(v.aval.dtype))
            for n, v in _marks(closed_jaxpr.jaxpr)]


def _live(jaxpr: Jaxpr, targets: Sequence[Any], given: Collection[Any]) -> tuple[list[JaxprEqn], set]:
    """The equations needed to compute ``targets`` when the vars in ``given`` are
    known, and every var they read (inputs included)."""
    needed = {v for v in targets if not isinstance(v, Literal)}
    live: list[JaxprEqn] = []
    for eqn in reversed(jaxpr.eqns):
        if any(o in needed and o not in given for o in eqn.outvars if not isinstance(o, DropVar)):
            live.append(eqn)
            needed.update(x for x in eqn.invars if not isinstance(x, Literal))
    live.reverse()
    return live, needed


def _run(eqns: Sequence[JaxprEqn], env: dict) -> dict:
    for eqn in eqns:
        outs = _bind(eqn, [_read(env, x) for x in eqn.invars])
        for o, x in zip(eqn.outvars, outs):
            if not isinstance(o, DropVar):
                env[o] = x
    return env


@dataclass(frozen=True)
class Split:
    """A program cut at one layer (see :func:`split`).

    Attributes:
        layer: the layer it was cut at.
        tail_inputs: indices of the program inputs that :attr:`tail` still reads
            besides the activation (parameters, and an input a skip connection
            carries past the layer).
    """

    layer: Layer
    tail_inputs: tuple[int, ...]
    _closed: ClosedJaxpr
    _var: Var
    _head_eqns: tuple[JaxprEqn, ...]
    _tail_eqns: tuple[JaxprEqn, ...]

    def head(self, *args: Any) -> Any:
        """The layer's output, from the program's inputs."""
        jaxpr = self._closed.jaxpr
        env = dict(zip(jaxpr.constvars, self._closed.consts))
        env.update(zip(jaxpr.invars, args))
        return _run(self._head_eqns, env)[self._var]

    def tail(self, args: Sequence[Any], activation: Any) -> list[Any]:
        """The program's outputs with the layer's output replaced by ``activation``.

        ``args`` are the program's inputs; only those in :attr:`tail_inputs` are
        read (pass ``None`` for the others).
        """
        shape, dtype = tuple(jax.numpy.shape(activation)), jax.numpy.result_type(activation)
        if shape != self.layer.shape:
            raise ValueError(f"tail of layer {self.layer.name!r}: the activation has shape {shape}; "
                             f"the layer's output has shape {self.layer.shape} (one example, no batch "
                             "axis; batch with jax.vmap).")
        jaxpr = self._closed.jaxpr
        env = dict(zip(jaxpr.constvars, self._closed.consts))
        env.update((jaxpr.invars[i], args[i]) for i in self.tail_inputs)
        env[self._var] = jax.numpy.asarray(activation, self.layer.dtype) if dtype != self.layer.dtype \
            else activation
        env = _run(self._tail_eqns, env)
        return [_read(env, v) for v in jaxpr.outvars]


def split(closed_jaxpr: ClosedJaxpr, name: str) -> Split:
    """Cut a program at the layer ``name`` (one of :func:`layers`).

    ``head(*inputs)`` computes only what the layer's output needs;
    ``tail(inputs, activation)`` runs the rest of the program from it, so
    ``tail(inputs, head(*inputs))`` equals the program. Values a skip connection
    carries past the layer are recomputed from the inputs listed in
    ``tail_inputs``. Both are pure JAX (jit, vmap, grad).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from xai_core.graph import mark, split, trace
        >>> f = lambda w, x: jnp.tanh(mark(w * x, "scale")).sum()
        >>> s = split(trace(f, jnp.ones(3), jnp.ones(3)), "scale")
        >>> w, x = jnp.full(3, 2.0), jnp.arange(3.0)
        >>> a = s.head(w, x)
        >>> a.tolist(), s.tail_inputs, bool(jnp.isclose(s.tail([w, x], a)[0], f(w, x)))
        ([0.0, 2.0, 4.0], (), True)
    """
    jaxpr = closed_jaxpr.jaxpr
    marks = _marks(jaxpr)
    if not marks:
        raise ValueError(f"split: no layer named {name!r}: the program has no layer marks "
                         "(build the model with an adapter that marks layers, or call graph.mark).")
    check_choice(name, [n for n, _ in marks], "layer", "split")
    var = next(v for n, v in marks if n == name)
    head_eqns, _ = _live(jaxpr, [var], ())
    tail_eqns, needed = _live(jaxpr, jaxpr.outvars, {var})
    used = tuple(i for i, v in enumerate(jaxpr.invars) if v in needed)
    layer = Layer(name, tuple(var.aval.shape), np.dtype(var.aval.dtype))
    return Split(layer, used, closed_jaxpr, var, tuple(head_eqns), tuple(tail_eqns))



# --------------------------------------------------------------------------- #
# Layout: convolutions in channels-last order
# --------------------------------------------------------------------------- #

def _conv_channels_last(eqn: JaxprEqn, lhs: Any, rhs: Any) -> Any:
    """``eqn`` (a conv_general_dilated in any layout) computed channels-last: the input
    and kernel are transposed to NHWC / HWIO order, the result back to ``eqn``'s layout."""
    p = eqn.params
    lhs_spec, rhs_spec, out_spec = p["dimension_numbers"]
    n = len(lhs_spec) - 2
    to_last = lambda spec: (spec[0], *spec[2:], spec[1])  # noqa: E731  (batch, spatial, feature)
    lhs_t = jax.lax.transpose(lhs, to_last(lhs_spec))
    rhs_t = jax.lax.transpose(rhs, (*rhs_spec[2:], rhs_spec[1], rhs_spec[0]))
    last = tuple(range(1, n + 1))
    dims = jax.lax.ConvDimensionNumbers((0, n + 1, *last), (n + 1, n, *range(n)), (0, n + 1, *last))
    out = jax.lax.conv_general_dilated(
        lhs_t, rhs_t, p["window_strides"], p["padding"], p["lhs_dilation"], p["rhs_dilation"],
        dims, p["feature_group_count"], p["batch_group_count"], p["precision"],
        p["preferred_element_type"])
    return jax.lax.transpose(out, tuple(np.argsort(to_last(out_spec))))


def _select_and_scatter_add_dense(eqn: JaxprEqn, source: Any, operand: Any) -> Any:
    """The gradient of max (min) pooling, ``select_and_scatter_add``, as dense elementwise work.

    Each output cell's window is read as ``k`` strided slices of the padded operand (one per
    window offset, row-major); a running comparison keeps the first maximum's offset, as
    XLA's ``ge`` select does (and torch's max pooling); each offset's share of ``source``
    is then placed back with an interior-padded ``lax.pad``, and the ``k`` shares summed.
    Equal to the primitive up to the order of additions where windows overlap. XLA:CPU ran
    the primitive 4.5x slower than this (ResNet-18's 3x3/2 pool on 8x112x112x64: 103 ms
    against 23 ms; torch's forward and backward take 24 ms).
    """
    p = eqn.params
    first = {"ge": lambda v, best: v > best, "le": lambda v, best: v < best}.get(p["select_prim"].name)
    if first is None or any(lo < 0 or hi < 0 for lo, hi in p["padding"]):
        return _bind(eqn, [source, operand])[0]
    fill = -jnp.inf if p["select_prim"].name == "ge" else jnp.inf
    padded = jax.lax.pad(operand, jnp.asarray(fill, operand.dtype), [(lo, hi, 0) for lo, hi in p["padding"]])
    strides = p["window_strides"]
    offsets = list(itertools.product(*(range(w) for w in p["window_dimensions"])))
    reach = [(n - 1) * s + 1 for n, s in zip(source.shape, strides)]  # extent one offset covers

    def view(offset: tuple[int, ...]) -> Any:
        return jax.lax.slice(padded, offset, [o + r for o, r in zip(offset, reach)], strides)

    best, pick = view(offsets[0]), jnp.zeros(source.shape, jnp.int32)
    for k, offset in enumerate(offsets[1:], 1):
        v = view(offset)
        take = first(v, best)
        best, pick = jnp.where(take, v, best), jnp.where(take, k, pick)
    zero = jnp.zeros((), source.dtype)
    total = sum(jax.lax.pad(jnp.where(pick == k, source, zero), zero,
                            [(o, size - o - r, s - 1) for o, r, s, size in zip(offset, reach, strides, padded.shape)])
                for k, offset in enumerate(offsets))
    return jax.lax.slice(total, [lo for lo, _ in p["padding"]],
                         [lo + n for (lo, _), n in zip(p["padding"], operand.shape)])


def _rewritten(fn: Callable[..., Any], rules: Mapping[str, Rule]) -> Callable[..., Any]:
    """``fn`` traced to a jaxpr and evaluated with ``rules`` (see :func:`_interpret`)."""
    def wrapped(*args: Any) -> Any:
        specs = jax.tree.map(lambda a: jax.ShapeDtypeStruct(jax.numpy.shape(a), jax.numpy.result_type(a)), args)
        closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(*specs)
        outs = _interpret(closed.jaxpr, closed.consts, jax.tree.leaves(args), inline=True, rules=rules)
        return jax.tree.unflatten(jax.tree.structure(out_shape), outs)

    return wrapped


def channels_last(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` with every convolution computed in channels-last (NHWC) order.

    Same values and gradients; only the layout the convolutions run in changes.
    XLA:CPU's fast convolutions are channels-last: it converts a channels-first
    (NCHW, torch's) convolution itself in a straight-line program, but not inside a
    loop body (``lax.scan``, which chunked methods use), where NCHW convolutions ran
    14x slower on a ResNet-18. The transposes this adds around each convolution
    cancel or fuse away in XLA.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from xai_core.graph import channels_last
        >>> conv = lambda x, w: jax.lax.conv(x, w, (1, 1), "SAME")  # NCHW / OIHW
        >>> x, w = jnp.ones((1, 2, 5, 5)), jnp.ones((3, 2, 3, 3))
        >>> bool(jnp.allclose(channels_last(conv)(x, w), conv(x, w)))
        True
    """
    return _rewritten(fn, {"conv_general_dilated": _conv_channels_last})


def fast_kernels(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` with convolutions channels-last (:func:`channels_last`) and max / min pooling
    gradients computed as dense elementwise work instead of XLA's ``select_and_scatter``.

    Same values and gradients (pooling gradients up to the order of additions where
    windows overlap). Chunked methods run their differentiated chunk body through it
    (``xai_core/_chunking.py``). The pooling gradient was XLA:CPU's slowest kernel in a
    ResNet-18 backward pass: 4.5x slower than the dense form, 4.8x slower than torch's.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from xai_core.graph import fast_kernels
        >>> pool = lambda x: jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (2, 2), (2, 2), "VALID").sum()
        >>> x = jnp.arange(16.0).reshape(4, 4)
        >>> bool(jnp.array_equal(fast_kernels(jax.grad(pool))(x), jax.grad(pool)(x)))
        True
    """
    return _rewritten(fn, {"conv_general_dilated": _conv_channels_last,
                           "select_and_scatter_add": _select_and_scatter_add_dense})

