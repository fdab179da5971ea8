"""The one jaxpr interpreter that every rewrite in :mod:`xai_core.graph` shares.

:func:`_interpret` evaluates a jaxpr equation by equation, as ``jax.core.eval_jaxpr``
does (:func:`_bind` applies one equation, keeping its source info, name stack and
context). Run under ``jax.make_jaxpr``, it re-traces the program: that is how every
tool of the package makes a new program without editing ``Jaxpr`` objects (no private
constructors, and dead code is never emitted). Two switches change what it emits:

- ``inline=True`` evaluates the bodies of ``jit`` calls (``_INLINE_CALLS``) instead
  of binding them, except calls whose name is in ``keep`` (:data:`KEEP_CALLS` by
  default); other call-like equations (``custom_jvp_call``, ``custom_vjp_call``,
  remat) are bound as they are;
- ``rules`` maps a primitive's name to a :data:`Rule`: a function of the equation and
  its input values that returns the primitive's (single) output computed its own way
  (:mod:`xai_core.graph.rewrites`, :mod:`xai_core.rules`), or ``None`` to leave it. Rules see the program's own equations and those of
  the ``jit`` bodies it inlines, not the bodies of calls it binds.

The other helpers are shared by the rewrites built on it: :func:`_run` evaluates a
list of equations into an environment (the cut of :mod:`xai_core.graph.cut`,
:class:`~xai_core.graph.Split`), :func:`_read` reads a variable or literal,
:func:`_inner` and :func:`_call_name` give a call-like equation's body and name,
:func:`_specs` the ``ShapeDtypeStruct`` inputs to re-trace a jaxpr with.
:func:`trace` is the entry point: a function traced to one flat program.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import jax
from jax.extend import source_info_util
from jax.extend.core import ClosedJaxpr, DropVar, Jaxpr, JaxprEqn, Literal


#: Names of ``jit`` calls that :func:`trace` leaves as calls (not inlined), so the
#: final activation stays recognisable as one unit.
KEEP_CALLS: frozenset[str] = frozenset({"softmax", "log_softmax"})

# Call-like primitives whose body is a jaxpr. Inlined by `trace`: the jit family.
_INLINE_CALLS = frozenset({"jit", "pjit", "closed_call", "core_call"})
# Remat (jax.checkpoint / nn.remat): its body can be cut and re-emitted under remat.
_REMAT = frozenset({"checkpoint", "remat", "remat2"})
_REBUILDABLE_CALLS = _REMAT | _INLINE_CALLS
#: What the rule methods inline: a remat's body is the same computation (only its memory
#: schedule differs), and its equations need their rules.
RULE_CALLS = _REBUILDABLE_CALLS
# Looked into (never inlined) when matching an activation.
_CALL_LIKE = _REBUILDABLE_CALLS | {"custom_jvp_call", "custom_vjp_call", "custom_vjp_call_jaxpr"}


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
    """The value of ``v`` in ``env`` (a Literal is its own value)."""
    return v.val if isinstance(v, Literal) else env[v]


#: A replacement for one primitive: called with the equation and its input values,
#: returns its (single) output value, or ``None`` to leave that equation as it is.
Rule = Callable[..., Any]


def _interpret(jaxpr: Jaxpr, consts: Sequence[Any], args: Sequence[Any], *,
               inline: bool, keep: Collection[str] = KEEP_CALLS,
               rules: Mapping[str, Rule] | None = None, env: dict | None = None,
               calls: Collection[str] = _INLINE_CALLS) -> list[Any]:
    """Evaluate ``jaxpr``; with ``inline``, evaluate jit bodies instead of binding them;
    ``rules`` computes the primitives it names its own way (:func:`fast_kernels`).
    ``env``, if given, is the dict the values of ``jaxpr``'s variables are kept in, so a
    rule can read values other than its equation's inputs (:mod:`xai_core.rules`). ``calls``
    names the call primitives ``inline`` evaluates (the ``jit`` family by default)."""
    rules = rules or {}
    env = {} if env is None else env
    for v, x in zip(jaxpr.constvars, consts):
        env[v] = x
    for v, x in zip(jaxpr.invars, args):
        env[v] = x
    for eqn in jaxpr.eqns:
        invals = [_read(env, v) for v in eqn.invars]
        body = _inner(eqn) if inline and eqn.primitive.name in calls else None
        rule = rules.get(eqn.primitive.name)
        out = None if rule is None else rule(eqn, *invals)
        if out is not None:
            outvals = [out]
        elif body is not None and _call_name(eqn) not in keep:
            outvals = _interpret(body.jaxpr, body.consts, invals, inline=True, keep=keep,
                                 rules=rules, calls=calls)
        else:
            outvals = _bind(eqn, invals)
        for v, x in zip(eqn.outvars, outvals):
            if not isinstance(v, DropVar):
                env[v] = x
    return [_read(env, v) for v in jaxpr.outvars]


def _specs(jaxpr: Jaxpr) -> list[jax.ShapeDtypeStruct]:
    """The inputs of ``jaxpr`` as ``ShapeDtypeStruct``s, to re-trace it with ``jax.make_jaxpr``."""
    return [jax.ShapeDtypeStruct(v.aval.shape, v.aval.dtype,
                                 weak_type=getattr(v.aval, "weak_type", False))
            for v in jaxpr.invars]


def _run(eqns: Sequence[JaxprEqn], env: dict) -> dict:
    """Evaluate ``eqns`` in order (with :func:`_bind`), adding their outputs to ``env``;
    returns ``env``."""
    for eqn in eqns:
        outs = _bind(eqn, [_read(env, x) for x in eqn.invars])
        for o, x in zip(eqn.outvars, outs):
            if not isinstance(o, DropVar):
                env[o] = x
    return env


# --------------------------------------------------------------------------- #
# Tracing
# --------------------------------------------------------------------------- #

def trace(fn: Callable[..., Any], *example_args: Any,
          keep: Collection[str] = KEEP_CALLS,
          return_shape: bool = False, calls: Collection[str] = _INLINE_CALLS) -> ClosedJaxpr | tuple[ClosedJaxpr, Any]:
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
        lambda *a: _interpret(jaxpr, consts, a, inline=True, keep=keep, calls=calls))(*_specs(jaxpr))
    return (flat, out_shape) if return_shape else flat
