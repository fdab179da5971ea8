"""How LRP reads a traced program: affine operations with what is folded into them, the
activations relevance passes through, residual adds, attention weights, and what has no rule.

On top of :func:`xai_core.rules.analysis.analyse`:

- **gates** are the weights of a product of two activations that the conservative rules of
  Ali et al. (ICML 2022, "XAI for Transformers: Better Explanations through Conservative
  Propagation") treat as constants: a softmax output (attention), a ``logistic`` (a gate) or
  an ``rsqrt`` / ``sqrt`` (LayerNorm's and RMSNorm's scale); relevance does not flow into them,
  and what only computes them needs no rule;
- an **affine chain** is a dense or convolution with its weight (or a weightless sum, average
  pool or gated product) followed by the entrywise affine operations of its region whose
  other operands are constants (bias, BatchNorm scale and shift): LRP's rule sees them as one
  operation ``z = s * L(a; W) + t`` (Zennit's ``SequentialMergeBatchNorm``). Such operations
  on anything else (an input's normalization) form a chain with ``L`` the identity;
- the rest of an elementwise region (ReLU, GELU, tanh, however written) passes relevance
  through (Zennit's ``Pass``), and an add of activations (a residual) splits it in proportion
  to the addends (Zennit's ``Norm`` on its ``Sum``);
- with ``attention="attnlrp"`` (Achtibat et al., ICML 2024, "AttnLRP: Attention-Aware
  Layer-Wise Relevance Propagation for Transformers") a softmax is no gate: relevance flows
  through it by AttnLRP's softmax rule (``softmaxes``: ``R_x = x (R - s sum(R))``), and the
  products it feeds, like the query-key product, are products of two activations
  (``products``: each factor gets half, the uniform rule). A gated MLP's product gets the
  uniform rule in both modes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from jax.extend.core import JaxprEqn, Literal, Var

from xai_core.graph.interpreter import _call_name
from xai_core.rules.analysis import (
    MAXIMA, STRUCTURAL, SUMS, Program, analyse, describe, is_float, no_rule, operands,
)
from xai_core.rules.engine import NoRuleError

_WEIGHTED = frozenset({"dot_general", "conv_general_dilated"})
_ARITHMETIC = frozenset({"add", "sub", "mul", "div", "neg"})
_GATES = frozenset({"logistic", "rsqrt", "sqrt"})
_GATE_CALLS = frozenset({"softmax", "sigmoid", "_softmax"})


@dataclass
class Chain:
    """``z = s * L(a; W) + t``: ``start`` computes ``L`` (``None``: the identity on ``act``),
    ``post`` the entrywise affine rest; ``kind`` is ``dense``, ``conv`` or ``other``."""

    act: Var
    start: JaxprEqn | None
    weight: int | None
    post: list[JaxprEqn]
    kind: str
    first: bool = False
    layer: str | None = None

    @property
    def scaled(self) -> bool:
        return any(e.primitive.name in ("mul", "div", "neg") for e in self.post)


@dataclass
class Plan:
    """What LRP does at each equation: ``chains`` (by the id of the equation computing ``z``),
    ``passes`` (equation id -> the variable relevance passes to), ``norms`` (residual adds) and
    ``products`` (entrywise products of two activations: a gated MLP's ``act(g) * u``)."""

    program: Program
    chains: dict[int, Chain] = field(default_factory=dict)
    passes: dict[int, Var] = field(default_factory=dict)
    norms: set[int] = field(default_factory=set)
    products: set[int] = field(default_factory=set)
    softmaxes: dict[int, tuple[Var, tuple[int, ...]]] = field(default_factory=dict)


def _producer(p: Program) -> dict[Var, JaxprEqn]:
    return {v: e for e in p.jaxpr.eqns for v in e.outvars}


def _reshaped_from(v: Any, made_by: dict[Var, JaxprEqn]) -> Any:
    """The value ``v`` is a reshaping (broadcast, transpose, ...) of."""
    while isinstance(v, Var) and v in made_by and made_by[v].primitive.name in STRUCTURAL:
        v = made_by[v].invars[0]
    return v


def _divides_by_a_sum(div: JaxprEqn, made_by: dict[Var, JaxprEqn]) -> bool:
    """``div``'s divisor is (a reshaping of) a ``reduce_sum``: an inline softmax's last step."""
    d = _reshaped_from(div.invars[1], made_by)
    return isinstance(d, Var) and d in made_by and made_by[d].primitive.name == "reduce_sum"


def _softmax(eqn: JaxprEqn, made_by: dict[Var, JaxprEqn]) -> tuple[Var, tuple[int, ...]] | None:
    """An inline softmax's last step, ``exp(x - max) / sum(exp(x - max))``: its input ``x`` and
    the summed axes."""
    if eqn.primitive.name != "div" or not _divides_by_a_sum(eqn, made_by):
        return None
    num, den = eqn.invars[0], _reshaped_from(eqn.invars[1], made_by)
    e = made_by.get(num) if isinstance(num, Var) else None
    s = made_by.get(e.invars[0]) if e is not None and e.primitive.name == "exp" else None
    if s is None or s.primitive.name != "sub" or not isinstance(s.invars[0], Var):
        return None
    return s.invars[0], tuple(made_by[den].params["axes"])


def _is_gate(v: Any, made_by: dict[Var, JaxprEqn], attnlrp: bool = False) -> bool:
    """``v`` is (a reshaping of) a softmax (not with ``attnlrp``), sigmoid or normalizer output."""
    while isinstance(v, Var) and v in made_by:
        e = made_by[v]
        name = e.primitive.name
        if name in _GATES or (name in ("custom_jvp_call", "jit", "pjit") and _call_name(e) in _GATE_CALLS
                              and not (attnlrp and "softmax" in str(_call_name(e)))):
            return True
        if name == "div":  # an inline softmax, exp(x) / sum(exp(x)), is a gate unless AttnLRP
            return not attnlrp and _divides_by_a_sum(e, made_by)
        if name not in STRUCTURAL or len(e.invars) != 1:
            return False
        v = e.invars[0]
    return False


def _roles(eqn: JaxprEqn, p: Program, made_by: dict[Var, JaxprEqn], attnlrp: bool = False
           ) -> tuple[list[int], list[int]]:
    """The input-dependent operands of ``eqn`` that carry relevance, and the gates among them."""
    deps = operands(eqn, p.dependent)
    if eqn.primitive.name in _WEIGHTED | {"mul", "div"} and len(deps) == 2:
        gates = [i for i in deps if _is_gate(eqn.invars[i], made_by, attnlrp)]
        if eqn.primitive.name == "div":
            gates = [1] if 1 in gates or 0 not in gates else []
        if len(gates) == 1:
            return [i for i in deps if i not in gates], gates
    return deps, []


def plan(jaxpr: Any, attention: str = "constant") -> Plan:
    """The :class:`Plan` of a flat program; raises :class:`NoRuleError` listing what has no rule.
    ``attention``: ``"constant"`` (CP-LRP) or ``"attnlrp"`` (see the module doc)."""
    p = analyse(jaxpr)
    made_by = _producer(p)
    attnlrp = attention == "attnlrp"
    roles = {id(e): _roles(e, p, made_by, attnlrp) for e in p.jaxpr.eqns}
    units = {id(e): u for e in p.jaxpr.eqns if attnlrp and (u := _softmax(e, made_by)) is not None}
    relevant = {v for v in p.jaxpr.outvars if isinstance(v, Var) and v in p.dependent}
    for eqn in reversed(p.jaxpr.eqns):
        if any(v in relevant for v in eqn.outvars) and eqn.primitive.name != "stop_gradient":
            if id(eqn) in units:
                relevant.add(units[id(eqn)][0])
            else:
                relevant.update(eqn.invars[i] for i in roles[id(eqn)][0])
    out = Plan(p)
    missing: list[tuple[JaxprEqn, str]] = []
    outvars = {v for v in p.jaxpr.outvars if isinstance(v, Var)}
    prefix_end: dict[Var, Var] = {}
    in_prefix: set[int] = set()
    weighted_seen = False
    for eqn in p.jaxpr.eqns:
        deps, gates = roles[id(eqn)]
        if not deps or not any(v in relevant for v in eqn.outvars) or p.in_region(eqn) or id(eqn) in in_prefix:
            continue
        name = eqn.primitive.name
        if id(eqn) in units:
            out.softmaxes[id(eqn)] = units[id(eqn)]
            continue
        if any(not is_float(eqn.invars[i]) for i in deps):
            missing.append((eqn, "it reads a value computed from the input as an index or a mask"))
            continue
        r = eqn.outvars[0]
        post = _prefix(r, p, outvars)
        if post:  # every value along the prefix passes its relevance on to the prefix's end
            prefix_end.update({v: post[-1].outvars[0] for v in [r, *(e.outvars[0] for e in post)]})
            in_prefix.update(id(e) for e in post)
        end = post[-1] if post else eqn
        if name in _WEIGHTED and len(deps) == 1:
            kind = "conv" if name == "conv_general_dilated" else "dense"
            weight = 1 - deps[0] if not gates else gates[0]
            chain = Chain(eqn.invars[deps[0]], eqn, weight, post, kind if not gates else "other",
                          first=not weighted_seen and not gates, layer=p.layer_of.get(id(eqn)))
            weighted_seen = weighted_seen or not gates
            out.chains[id(end)] = chain
            continue
        if (name in SUMS or name in ("mul", "div")) and len(deps) == 1 and (gates or name in SUMS):
            out.chains[id(end)] = Chain(eqn.invars[deps[0]], eqn, None, post, "other", layer=p.layer_of.get(id(eqn)))
            continue
        if any(e.primitive.name in _ARITHMETIC for e in post):  # entrywise affine on a value: L = identity
            out.chains[id(end)] = Chain(r, None, None, post, "other", layer=p.layer_of.get(id(post[0])))
        if name in ("add", "sub", "add_any") and len(deps) >= 2:
            out.norms.add(id(eqn))
        elif (name == "mul" or (attnlrp and name == "dot_general")) and len(deps) == 2 and not gates:
            out.products.add(id(eqn))
        elif not (name in _MOVES or (name in _ARITHMETIC | BIJECTIONS and len(deps) == 1)):
            why = ("a product of two activations, neither of them a softmax, sigmoid or normalizer; LRP has no "
                   "conservative rule for it (wrap the factor that is a weight in jax.lax.stop_gradient)"
                   if name in _WEIGHTED | {"div"} else no_rule(eqn, "LRP"))
            missing.append((eqn, why))
    for v in p.outputs:
        eqn = made_by[v]
        if id(eqn) in in_prefix or id(eqn) in out.chains or not any(w in relevant for w in eqn.outvars):
            continue
        root = p.root[v]
        out.passes[id(eqn)] = prefix_end.get(root, root)
    if missing:
        raise NoRuleError("lrp has no rule for these operations that relevance flows through, and will not "
                          "fall back to their plain gradient:\n" + describe(missing, p))
    return out


#: Operations whose gradient moves relevance as it is (reshapes, slices, max-pooling).
_MOVES = STRUCTURAL | MAXIMA | {"stop_gradient"}
#: One-operand operations that keep every entry once (folded into an affine chain as they are).
BIJECTIONS = frozenset({"transpose", "reshape", "squeeze", "expand_dims", "broadcast_in_dim", "name", "copy",
                        "copy_p", "convert_element_type", "reduce_precision"})


def _prefix(r: Var, p: Program, outvars: set[Var]) -> list[JaxprEqn]:
    """What follows ``r`` and folds into its affine operation: entrywise affine operations whose
    other operands are constants, and reshapes that keep every entry, each the only reader of
    the previous one's output."""
    chain: list[JaxprEqn] = []
    cur = r
    while cur not in outvars:
        readers = p.consumers.get(cur, [])
        if len(readers) != 1:
            break
        e = readers[0]
        out = e.outvars[0]
        if len(e.outvars) != 1 or not is_float(out):
            break
        if e.primitive.name in BIJECTIONS:
            if len(e.invars) != 1 or math.prod(out.aval.shape) != math.prod(cur.aval.shape):
                break
        elif e.primitive.name not in _ARITHMETIC or out.aval.shape != cur.aval.shape:
            break
        elif any(v is not cur and not isinstance(v, Literal) and v in p.dependent for v in e.invars):
            break
        elif e.primitive.name == "div" and e.invars[0] is not cur:
            break
        chain.append(e)
        cur = out
    return chain
