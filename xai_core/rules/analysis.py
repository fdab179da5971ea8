"""What the rule methods need to know about a traced program before they run it.

Which variables depend on the input (the weights and everything computed from them alone
keep their ordinary meaning), the primitive families the rules distinguish, and the
*elementwise regions*: a chain of elementwise operations whose only input-dependent operand
is one variable ``r`` (the region's root) computes a function ``y = F(r)`` applied entry by
entry, however it was written (``jax.nn.relu``, an inline GELU, ``x * sigmoid(x)``, a
BatchNorm's scale and shift). DeepLift's rescale rule and LRP's pass rule apply to a region
as a whole, as Captum and Zennit apply them to one activation module.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import jax.numpy as jnp
from jax.extend.core import Jaxpr, JaxprEqn, Literal, Var

from xai_core.graph.interpreter import _inner
from xai_core.graph.marks import LAYER_MARK

#: Entry-by-entry primitives (operands broadcast only along size-1 axes).
ELEMENTWISE = frozenset({
    "add", "sub", "mul", "div", "neg", "max", "min", "abs", "sign", "exp", "exp2", "log", "log1p",
    "expm1", "tanh", "logistic", "sin", "cos", "tan", "asin", "acos", "atan", "sinh", "cosh", "asinh",
    "acosh", "atanh", "sqrt", "rsqrt", "cbrt", "pow", "integer_pow", "square", "erf", "erfc", "erf_inv",
    "floor", "ceil", "round", "convert_element_type", "select_n", "clamp", "gt", "ge", "lt", "le", "eq",
    "ne", "and", "or", "not", "is_finite", "copy", "copy_p", "reduce_precision", "name", "stop_gradient",
    "nextafter", "rem", "atan2",
})
#: Linear maps of their one input-dependent operand that only move, copy or select entries.
STRUCTURAL = frozenset({
    "reshape", "transpose", "broadcast_in_dim", "squeeze", "expand_dims", "slice", "dynamic_slice",
    "gather", "concatenate", "stack", "unstack", "tile", "pad", "rev", "split", "dynamic_update_slice", "name", "copy", "copy_p",
    "convert_element_type", "reduce_precision",
})
#: Sums: linear in their operand, but add entries together.
SUMS = frozenset({"reduce_sum", "reduce_window_sum", "cumsum"})
#: Bilinear in their two operands (linear when one of them is a weight).
BILINEAR = frozenset({"dot_general", "conv_general_dilated", "mul"})
#: Maxima and minima over windows, axes or two operands.
MAXIMA = frozenset({"reduce_max", "reduce_min", "reduce_window_max", "reduce_window_min", "max", "min"})
_CALLS = frozenset({"custom_jvp_call", "custom_vjp_call", "custom_vjp_call_jaxpr", "jit", "pjit"})


def operands(eqn: JaxprEqn, dependent: set[Var]) -> list[int]:
    """Positions of ``eqn``'s input-dependent operands."""
    return [i for i, v in enumerate(eqn.invars) if not isinstance(v, Literal) and v in dependent]


def is_float(v: Any) -> bool:
    return jnp.issubdtype(v.aval.dtype, jnp.inexact)


def elementwise(eqn: JaxprEqn) -> bool:
    """Entry by entry: an elementwise primitive, or a call (``jax.nn.relu``'s custom_jvp, a
    named ``jit`` like ``silu``) whose body is elementwise throughout."""
    if eqn.primitive.name in _CALLS:
        body = _inner(eqn)
        shape = eqn.outvars[0].aval.shape if len(eqn.outvars) == 1 else None
        return (body is not None and shape is not None
                and all(getattr(v.aval, "shape", ()) in ((), shape) for v in eqn.invars)
                and all(elementwise(e) for e in body.jaxpr.eqns))
    return eqn.primitive.name in ELEMENTWISE


@dataclass
class Program:
    """A flat program's input dependence, elementwise regions and layer marks.

    ``root[v]`` is the root of the region ``v`` belongs to (``v`` itself when an operation
    other than a one-root elementwise one made it); ``outputs`` are the region members
    read outside their region (by another kind of operation, or as the program's output);
    ``members[r]`` the equations of the region of root ``r``, in program order.
    """

    jaxpr: Jaxpr
    dependent: set[Var] = field(default_factory=set)
    root: dict[Var, Var] = field(default_factory=dict)
    outputs: set[Var] = field(default_factory=set)
    consumers: dict[Var, list[JaxprEqn]] = field(default_factory=dict)
    layer_of: dict[int, str] = field(default_factory=dict)
    members: dict[Var, list[JaxprEqn]] = field(default_factory=dict)

    def in_region(self, eqn: JaxprEqn) -> bool:
        """``eqn`` continues a region: elementwise, one root, the root's shape."""
        out = eqn.outvars[0]
        return out in self.root and self.root[out] is not out

    def where(self, eqn: JaxprEqn) -> str:
        """Where ``eqn`` sits, for error messages: the layer mark that follows it."""
        layer = self.layer_of.get(id(eqn))
        return f"in layer {layer!r}" if layer else "after the last layer mark (or in a model without marks)"


def analyse(jaxpr: Jaxpr) -> Program:
    """The :class:`Program` of ``jaxpr`` (flat, as :func:`xai_core.graph.trace` makes it),
    every input of which is attributed."""
    p = Program(jaxpr, dependent=set(jaxpr.invars))
    for v in jaxpr.invars:
        p.root[v] = v
    for eqn in jaxpr.eqns:
        for v in eqn.invars:
            if not isinstance(v, Literal):
                p.consumers.setdefault(v, []).append(eqn)
        deps = operands(eqn, p.dependent)
        if not deps or eqn.primitive.name == "stop_gradient":
            continue
        p.dependent.update(eqn.outvars)
        roots = {p.root[eqn.invars[i]] for i in deps}
        out = eqn.outvars[0]
        if (len(eqn.outvars) == 1 and len(roots) == 1 and elementwise(eqn)
                and next(iter(roots)).aval.shape == out.aval.shape):
            p.root[out] = next(iter(roots))
            p.members.setdefault(p.root[out], []).append(eqn)
        else:
            for v in eqn.outvars:
                p.root[v] = v
    outvars = {v for v in jaxpr.outvars if isinstance(v, Var)}
    for v, r in p.root.items():
        if r is v:
            continue
        readers = p.consumers.get(v, [])
        if v in outvars or any(not (elementwise(e) and p.root.get(e.outvars[0]) is r) for e in readers):
            p.outputs.add(v)
    _layers(p)
    return p


def _layers(p: Program) -> None:
    """Name each equation after the first layer mark at or after it in program order."""
    pending: list[JaxprEqn] = []
    for eqn in p.jaxpr.eqns:
        pending.append(eqn)
        label = eqn.params.get("name") if eqn.primitive.name == "name" else None
        if isinstance(label, str) and label.startswith(LAYER_MARK):
            for e in pending:
                p.layer_of[id(e)] = label[len(LAYER_MARK):]
            pending = []


def no_rule(eqn: JaxprEqn, method: str) -> str:
    """Why ``method`` has no rule for ``eqn``: a call it does not enter, or a primitive it lacks."""
    from xai_core.rules.engine import _bodies

    if _bodies(eqn):
        return (f"a {eqn.primitive.name!r} whose body {method} does not enter (its rules would not reach the "
                "operations inside); trace the model without it, e.g. unroll a scan over layers into a loop")
    return f"no {method} rule for this primitive"


def describe(eqns: Iterable[tuple[JaxprEqn, str]], p: Program) -> str:
    """One line per ``(equation, reason)``: the primitive, where it is, and why."""
    return "\n".join(f"  - {e.primitive.name} {p.where(e)}: {why}" for e, why in eqns)
