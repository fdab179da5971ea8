"""The rule engine: a score function's gradient with some primitives' backward pass replaced.

:func:`modified_gradient` traces ``score_fn`` for one example (:func:`xai_core.graph.trace`:
nested ``jit`` calls inlined), re-evaluates the program with the graph package's one
interpreter, and lets a :data:`BackwardRule` table compute chosen equations its own way:
typically as a ``jax.custom_vjp`` function whose backward pass is the method's rule (the
forward value is unchanged). ``jax.grad`` of that re-evaluation is the method's map. Every
other equation keeps its ordinary VJP, which is correct for methods that only change some
operations (guided backprop changes ReLUs and nothing else). The whole thing is one pure
JAX function: it works under ``jax.jit`` and ``jax.vmap`` with traced targets, and the
weights a score function closes over stay inputs of the traced program.

A rule sees the equation (its primitive, params, and for a call its body) and its input
values, and returns the output value, or ``None`` to leave the equation as it is (a
``max`` that is not a ReLU). A method that finds none of the operations it needs raises
:class:`NoRuleError` rather than silently returning the plain gradient.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
from jax.extend.core import ClosedJaxpr, Jaxpr, JaxprEqn

from xai_core.core.checks import ScoreFn, checked_score
from xai_core.graph import trace
from xai_core.graph.interpreter import _interpret
from xai_core.core.inputs import split_inputs

#: ``rule(eqn, *invals) -> output value``, or ``None`` for "not mine: bind as usual".
BackwardRule = Callable[..., Any]


class NoRuleError(ValueError):
    """A rule method met a program it has no rule for (or nothing its rules change)."""


def modified_gradient(score_fn: ScoreFn, rules: Mapping[str, BackwardRule], method: str,
                      needs: str) -> Callable[[Any], Any]:
    """``x -> d score / d x`` with the equations ``rules`` claims differentiated by the rules.

    ``rules`` maps primitive names (``"max"``, ``"custom_jvp_call"``, ...) to rules;
    ``needs`` describes the operations the method changes, for the error raised when the
    program has none of them (the map would be the plain gradient).
    """
    score = checked_score(score_fn, method)

    def attribution(x: Any) -> Any:
        inputs = split_inputs(x, method)
        closed = trace(lambda leaves: score(inputs.score_input(leaves)), inputs.leaves)
        claimed = [0]
        out_of_reach = _unreachable(closed.jaxpr, rules)
        if out_of_reach:
            raise NoRuleError(f"{method}: the program has a {needs} inside a {out_of_reach!r} call, where "
                              f"{method}'s rules cannot reach it; it would keep its plain gradient. Trace "
                              "the model without that call (e.g. without jax.checkpoint / nn.remat or a "
                              "scan over layers).")

        def counting(rule: BackwardRule) -> BackwardRule:
            def apply(eqn: JaxprEqn, *invals: Any) -> Any:
                out = rule(eqn, *invals)
                claimed[0] += out is not None
                return out  # None: not claimed, the equation as it was
            return apply

        table = {name: counting(rule) for name, rule in rules.items()}

        def run(leaves: list[jax.Array]) -> jax.Array:
            return _interpret(closed.jaxpr, closed.consts, leaves, inline=True, rules=table)[0]

        grads = jax.grad(run)(inputs.leaves)
        if not claimed[0]:
            raise NoRuleError(f"{method}: the score function's program has no {needs}, so {method} "
                              "would be the plain gradient; use xc.gradient for that, or check the "
                              "model (a softmax or a nonlinearity written another way?).")
        return inputs.result(grads)

    return attribution


def _bodies(eqn: JaxprEqn) -> list[Any]:
    """The jaxprs inside an equation's params (a call's body, a cond's branches, a scan's body)."""
    found = []
    for value in eqn.params.values():
        for v in value if isinstance(value, (tuple, list)) else (value,):
            if isinstance(v, ClosedJaxpr):
                found.append(v.jaxpr)
            elif isinstance(v, Jaxpr):
                found.append(v)
    return found


def _unreachable(jaxpr: Jaxpr, rules: Mapping[str, BackwardRule]) -> str | None:
    """The name of a bound call whose body holds an equation a rule would claim, if any:
    the interpreter binds such calls whole (remat, scan, cond, custom_vjp), so their
    insides keep the plain gradient."""
    from xai_core.graph.interpreter import _INLINE_CALLS

    def claims(eqn: JaxprEqn) -> bool:
        rule = rules.get(eqn.primitive.name)
        return rule is not None and getattr(rule, "claims", lambda e: False)(eqn)

    def inside(j: Jaxpr) -> bool:
        return any(claims(e) or any(inside(b) for b in _bodies(e)) for e in j.eqns)

    for eqn in jaxpr.eqns:
        if claims(eqn):
            continue
        for body in _bodies(eqn):
            if eqn.primitive.name in _INLINE_CALLS:
                found = _unreachable(body, rules)
                if found:
                    return found
            elif inside(body):
                return eqn.primitive.name
    return None
