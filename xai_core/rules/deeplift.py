"""DeepLift (rescale rule) on the traced program, exact for every way of writing a model.

Shrikumar, Greenside & Kundaje, "Learning Important Features Through Propagating
Activation Differences", ICML 2017. DeepLift backpropagates *multipliers*
``m = Δout / Δin`` (``Δ`` against the program evaluated at the baseline ``x0``) instead of
gradients, and the attribution is ``a = (x - x0) * m``. Every rule below satisfies
"summation to delta" (``m · Δin = Δout``), so ``sum(a) = f(x) - f(x0)`` up to rounding
(``xc.completeness_gap`` measures it), whatever the model:

- linear operations (adds, dots and convolutions with a weight, reshapes, sums, pads):
  the gradient, which is exact for them;
- an elementwise region ``y = F(r)`` (:mod:`xai_core.rules.analysis`: ReLU, GELU, tanh,
  ``x * sigmoid(x)``, a BatchNorm's affine map, however written): the rescale rule
  ``m = (F(r) - F(r0)) / (r - r0)``, the gradient where ``|r - r0| < 1e-10`` (Captum's
  threshold);
- products of two activations (``mul``, ``dot_general``, ``conv`` of two input-dependent
  operands, as in gating or attention): the gradient at the midpoint ``((a + a0)/2,
  (b + b0)/2)``, exact for any bilinear map; ``a / b``: the same for ``a * (1/b)``;
- maxima (max-pooling windows, ``reduce_max``, ``max(a, b)``): the rule of SHAP's
  DeepExplainer (``shap/explainers/_deep/deep_tf.py``, ``maxpool``), which routes
  ``max(y, y0) - y0`` to the input's arg-max and ``y - max(y, y0)`` to the baseline's, and
  divides by the input's ``Δ`` there, so the window's ``Δout`` is conserved. Captum's
  ``maxpool`` rule routes the same way and agrees on non-overlapping pools (1e-13 on
  ``nn.MaxPool2d(2)`` models, tested); on overlapping windows (ResNet's 3x3 stride-2 pool) its
  rule does not conserve: its convergence delta was 8% of the score change on a small model
  and 67% on a ResNet-18 (float64, random baseline), ours 1e-15 (tested). Where ``|Δin| < 1e-10`` Captum keeps the
  gradient and we give 0, as SHAP does. Captum applies it only to ``nn.MaxPool`` modules.

Anything else that depends on the input (a sort, an index computed from the input, a
``select`` between two different activations) raises :class:`~xai_core.rules.NoRuleError`
naming the primitive and the layer around it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax
from jax.extend.core import JaxprEqn, Literal, Var

from xai_core.core.checks import ScoreFn, checked_score
from xai_core.graph import fast_kernels, trace
from xai_core.graph.interpreter import RULE_CALLS, _bind, _interpret, _read
from xai_core.core.inputs import Inputs, baselines, split_inputs
from xai_core.rules.analysis import (
    BILINEAR, MAXIMA, STRUCTURAL, SUMS, Program, analyse, describe, elementwise, is_float, no_rule, operands,
)
from xai_core.rules.engine import NoRuleError

sg = lax.stop_gradient
#: Below this ``|Δin|`` the rescale rule takes the gradient (as Captum does).
TOL = 1e-10
_LINEAR = STRUCTURAL | SUMS | {"add", "sub", "neg", "add_any", "stop_gradient"}


def _plan(p: Program) -> dict[int, str]:
    """The rule for every input-dependent equation that is not in the middle of a region;
    raises :class:`NoRuleError` listing the equations no rule covers."""
    plan: dict[int, str] = {}
    missing = []
    for eqn in p.jaxpr.eqns:
        deps = operands(eqn, p.dependent)
        name = eqn.primitive.name
        if not deps or not any(is_float(v) for v in eqn.outvars):
            continue
        if any(not is_float(eqn.invars[i]) for i in deps) and not p.in_region(eqn):
            missing.append((eqn, "it reads a value computed from the input as an index or a mask"))
        elif p.in_region(eqn):
            if eqn.outvars[0] in p.outputs:
                plan[id(eqn)] = "rescale"
        elif name in _LINEAR or (name in BILINEAR and len(deps) == 1) or (name == "div" and deps == [0]):
            plan[id(eqn)] = "linear"
        elif name in BILINEAR:
            plan[id(eqn)] = "midpoint"
        elif name == "div":
            plan[id(eqn)] = "quotient"
        elif name in MAXIMA:
            plan[id(eqn)] = "maximum"
        elif elementwise(eqn):
            missing.append((eqn, "an elementwise operation of two different activations with no exact rule"))
        else:
            missing.append((eqn, no_rule(eqn, "DeepLift")))
    if missing:
        raise NoRuleError("deeplift has no rule for these input-dependent operations, and will not fall "
                          "back to their plain gradient:\n" + describe(missing, p) + "\nRewrite that part "
                          "of the model, or attribute it with a gradient method (xc.integrated_gradients).")
    return plan


def _safe_ratio(num: jax.Array, den: jax.Array) -> tuple[jax.Array, jax.Array]:
    small = jnp.abs(den) < TOL
    return small, jnp.where(small, 0, num / jnp.where(small, 1, den))


def _region_fn(p: Program, out: Var, env: dict) -> tuple[Callable[[jax.Array, list[Any]], jax.Array], list[Any]]:
    """``F`` with ``out = F(root)`` for a region output, as a function of the root and the
    region's other operands (constants, returned with it)."""
    r = p.root[out]
    eqns = p.members[r]
    eqns = eqns[:next(i for i, e in enumerate(eqns) if e.outvars[0] is out) + 1]
    inner = {r, *(e.outvars[0] for e in eqns)}
    outside = [v for e in eqns for v in e.invars if not isinstance(v, Literal) and v not in inner]

    def F(u: jax.Array, consts: list[Any]) -> jax.Array:
        local = {r: u, **dict(zip(outside, consts))}
        for e in eqns:
            local[e.outvars[0]] = _bind(e, [_read(local, v) for v in e.invars])[0]
        return local[out]

    return F, [sg(env[v]) for v in outside]


def _rescale(F: Callable[[jax.Array, list[Any]], jax.Array], consts: list[Any], out: jax.Array,
             out0: jax.Array, r: jax.Array, r0: jax.Array) -> jax.Array:
    """``out = F(r)`` with the multiplier ``(out - out0) / (r - r0)`` to its region's root ``r``
    (``F'(r)`` where ``|r - r0| < TOL``), applied in the backward pass only."""

    @jax.custom_vjp
    def rescaled(r: jax.Array, out: jax.Array, r0: jax.Array, out0: jax.Array, consts: list[Any]) -> jax.Array:
        return out

    def forward(*args: Any) -> tuple[jax.Array, tuple[Any, ...]]:
        return args[1], args

    def backward(res: tuple[Any, ...], g: jax.Array) -> tuple[Any, ...]:
        r, out, r0, out0, consts = res
        small, m = _safe_ratio(out - out0, r - r0)
        slope = jax.jvp(lambda u: F(u, consts), (r,), (jnp.ones_like(r),))[1]
        zeros = jax.tree.map(jnp.zeros_like, (out, r0, out0, consts))
        return ((g * jnp.where(small, slope, m)).astype(r.dtype), *zeros)

    rescaled.defvjp(forward, backward)
    return rescaled(r, sg(out), sg(r0), sg(out0), consts)


def _midpoint(eqn: JaxprEqn, a: jax.Array, b: jax.Array, a0: jax.Array, b0: jax.Array) -> jax.Array:
    """A bilinear ``op(a, b)`` whose gradient is taken at the midpoint of input and baseline."""
    op = lambda u, v: _bind(eqn, [u, v])[0]  # noqa: E731
    am, bm = sg((a + a0) / 2), sg((b + b0) / 2)
    return sg(op(a, b)) + op(a - sg(a), bm) + op(am, b - sg(b))


def _quotient(a: jax.Array, b: jax.Array, a0: jax.Array, b0: jax.Array) -> jax.Array:
    """``a / b`` with the multipliers of ``a * (1 / b)`` by the midpoint and rescale rules."""
    ga = sg((1 / b + 1 / b0) / 2)
    gb = sg(-(a + a0) / 2 / (b * b0))
    return sg(a / b) + ga * (a - sg(a)) + gb * (b - sg(b))


def _maximum(fn: Callable[[jax.Array], jax.Array], a: jax.Array, a0: jax.Array) -> jax.Array:
    """``fn(a)`` for a maximum ``fn``, with SHAP's conserving multipliers (see the module)."""

    @jax.custom_vjp
    def pooled(u: jax.Array, u0: jax.Array) -> jax.Array:
        return fn(u)

    def forward(u: jax.Array, u0: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
        return fn(u), (u, u0)

    def backward(res: tuple[jax.Array, jax.Array], g: jax.Array) -> tuple[jax.Array, jax.Array]:
        u, u0 = res
        y, vjp = jax.vjp(fn, u)
        y0, vjp0 = jax.vjp(fn, u0)
        cross = jnp.maximum(y, y0)
        routed = vjp(g * (cross - y0))[0] + vjp0(g * (y - cross))[0]
        return _safe_ratio(routed, u - u0)[1].astype(u.dtype), jnp.zeros_like(u0)

    pooled.defvjp(forward, backward)
    return pooled(a, sg(a0))


def _run(p: Program, plan: dict[int, str], consts: list[Any], xs: list[jax.Array],
         x0s: list[jax.Array]) -> jax.Array:
    """The score at ``xs``, differentiable into DeepLift's multipliers against ``x0s``."""
    ref: dict = {}
    _interpret(p.jaxpr, consts, [sg(b) for b in x0s], inline=True, env=ref)
    env: dict = {}

    def rule(eqn: JaxprEqn, *invals: Any) -> Any:
        kind = plan.get(id(eqn))
        if kind is None or kind == "linear":
            return None
        refs = [_read(ref, v) for v in eqn.invars]
        if kind == "rescale":
            out = eqn.outvars[0]
            F, consts = _region_fn(p, out, env)
            return _rescale(F, consts, _bind(eqn, invals)[0], ref[out], env[p.root[out]], ref[p.root[out]])
        if kind == "midpoint":
            return _midpoint(eqn, invals[0], invals[1], refs[0], refs[1])
        if kind == "quotient":
            return _quotient(invals[0], invals[1], refs[0], refs[1])
        deps = operands(eqn, p.dependent)
        if len(deps) == 2:  # max(a, b) of two activations: a maximum over a stacked pair
            pair = lambda s: _bind(eqn, [s[0], s[1]])[0]  # noqa: E731
            return _maximum(pair, jnp.stack(invals[:2]), jnp.stack(refs[:2]))
        i = deps[0]
        one = lambda u: _bind(eqn, [*invals[:i], u, *invals[i + 1:]])[0]  # noqa: E731
        return _maximum(one, invals[i], refs[i])

    table = {e.primitive.name: rule for e in p.jaxpr.eqns}
    return _interpret(p.jaxpr, consts, xs, inline=True, rules=table, env=env)[0]


def multipliers(score_fn: ScoreFn, method: str = "deeplift") -> Callable[[Inputs, list[jax.Array], list[jax.Array]], list[jax.Array]]:
    """``(inputs, xs, x0s) -> m``: DeepLift's multipliers at the leaves ``xs`` against ``x0s``
    (``a = (x - x0) * m``); shared by :func:`deeplift` and :func:`xai_core.deeplift_shap`."""
    score = checked_score(score_fn, method)

    def run(inputs: Inputs, xs: list[jax.Array], x0s: list[jax.Array]) -> list[jax.Array]:
        closed = trace(lambda leaves: score(inputs.score_input(leaves)), xs, calls=RULE_CALLS)
        p = analyse(closed.jaxpr)
        plan = _plan(p)  # raises here, before anything runs, if an operation has no rule
        grad = lambda xs, x0s: jax.grad(lambda ls: _run(p, plan, list(closed.consts), ls, x0s))(xs)  # noqa: E731
        return fast_kernels(grad)(xs, x0s)

    return run


def deeplift(score_fn: ScoreFn, baseline: Any = None) -> Callable[[Any], Any]:
    """DeepLift with the rescale rule: ``a = (x - x0) * m``, ``sum(a) = f(x) - f(x0)``.

    Shrikumar et al. 2017; the rules, and how the max-pooling rule differs from Captum's, are
    in :mod:`xai_core.rules.deeplift`. ``baseline`` is ``x0`` as in
    :func:`xai_core.integrated_gradients` (``None``: zeros). Equal to Captum's ``DeepLift``
    on models whose nonlinearities are ``nn.Module`` activations and whose max-pools do not
    overlap; unlike it, the same on every way of writing the model (``F.relu``, a ReLU
    module used twice, an inline residual add).

    >>> import jax, jax.numpy as jnp, xai_core as xc
    >>> f = lambda x: jnp.sum(jax.nn.relu(x - 1.0))
    >>> xc.deeplift(f)(jnp.array([3.0, 0.5]))  # f(x) - f(0) = 2, all of it from x[0]
    Array([2., 0.], dtype=float32)
    """
    run = multipliers(score_fn)

    def attribution(x: Any) -> Any:
        inputs = split_inputs(x, "deeplift")
        x0s = baselines(inputs, baseline, "deeplift")
        ms = run(inputs, inputs.leaves, x0s)
        return inputs.result([((a - b) * m).astype(a.dtype) for a, b, m in zip(inputs.leaves, x0s, ms)])

    return attribution
