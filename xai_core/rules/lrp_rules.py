"""LRP rules for one affine operation ``z = s * L(a; W) + t``, as Zennit defines them.

Bach et al., "On Pixel-Wise Explanations for Non-Linear Classifier Decisions by Layer-Wise
Relevance Propagation", PLoS ONE 2015; Montavon et al., "Layer-Wise Relevance Propagation:
An Overview", 2019. The engine (:mod:`xai_core.rules.lrp`) finds every affine operation of the
traced program: a dense or convolution ``L`` with its weight ``W``, together with what follows
it entry by entry (a bias add, an eval-mode BatchNorm: the scale ``s`` and the shift ``t``),
which is folded into it as Zennit's ``SequentialMergeBatchNorm`` canonizer does. A rule maps
the relevance ``R`` at ``z`` to the relevance at the input ``a``. With ``W'`` the folded
weight, ``stab(d) = d + eps * sign(d)`` (``sign(0) = +1``; Zennit's ``Stabilizer``) and
``x+ = max(x, 0)``, ``x- = min(x, 0)`` (the formulas of zennit 0.5.1's ``rules.py``):

- ``epsilon(eps)``: ``R_a = a * W'^T (R / stab(z))``; the bias and ``eps`` absorb relevance.
- ``zero()``: LRP-0, ``epsilon`` without a stabilizer (0 where ``z = 0``).
- ``zplus()``: ``a+ * W'+^T s + a- * W'-^T s``, ``s = R / stab(W'+ a+ + W'- a- + t+)``.
- ``alpha_beta(alpha, beta)``: ``alpha * (a+ W'+^T s+ + a- W'-^T s+) - beta * (a+ W'-^T s- + a- W'+^T s-)``
  with ``s+ = R / stab(W'+ a+ + W'- a- + t+)``, ``s- = R / stab(W'- a+ + W'+ a- + t-)``.
- ``gamma(gamma)``: where ``z > 0``, ``a+ (W' + g W'+)^T s+ + a- (W' + g W'-)^T s+`` with
  ``s+ = R / stab((W' + g W'+) a+ + (W' + g W'-) a- + t + g t+)``; where ``z < 0`` the same with
  ``+`` and ``-`` swapped on the weights and ``t + g t-``.
- ``zbox(low, high)``: ``a W'^T s - low W'+^T s - high W'-^T s``, ``s = R / stab(W' a - W'+ low - W'- high)``.
- ``flat()``: every weight and input 1, no bias: ``R_a = 1^T (R / stab(L(1; 1)))``.
- ``wsquare()``: ``R_a = (W'^2)^T (R / stab(W'^2 1 + t^2))``.

Operations without a weight (sums, average pools, an entrywise scale) are ``L`` with
non-negative unit weights, so every rule applies to them; composites give them ``epsilon``
with the stabilizer (Zennit's ``Norm``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp

#: ``lin(v, which)``: the folded ``s * L(v; W_which)`` for ``which`` in ``"w"``, ``"w+"``,
#: ``"w-"``, ``"1"`` (every weight 1, no scale) and ``"w2"`` (squared weights and scale).
Lin = Callable[[jax.Array, str], jax.Array]


@dataclass(frozen=True)
class Affine:
    """What a rule sees of ``z = s * L(a; W) + t``: ``lin`` (see :data:`Lin`), ``bias`` (``t``)
    and ``z`` itself (the forward value, so rules need not recompute it)."""

    lin: Lin
    bias: jax.Array
    z: jax.Array

    def T(self, which: str, like: jax.Array, cotangent: jax.Array) -> jax.Array:
        """The transpose of ``v -> lin(v, which)`` (``v`` shaped like ``like``) at ``cotangent``."""
        return jax.vjp(lambda v: self.lin(v, which), like)[1](cotangent)[0]


def stabilize(d: jax.Array, eps: float) -> jax.Array:
    """``d + eps * sign(d)`` with ``sign(0) = +1``."""
    return d + eps * jnp.where(d >= 0, 1, -1).astype(d.dtype)


def ratio(R: jax.Array, z: jax.Array, eps: float) -> jax.Array:
    """``R / stabilize(z, eps)``, and 0 where ``z = 0`` (so ``eps = 0`` is LRP-0)."""
    return jnp.where(z == 0, 0, R / jnp.where(z == 0, 1, stabilize(z, eps)))


@dataclass(frozen=True)
class Rule:
    """An LRP rule: ``rule(op, a, R) -> R_a`` for an :class:`Affine` ``op``."""

    name: str
    fn: Callable[[Affine, jax.Array, jax.Array], jax.Array] = field(repr=False, compare=False)
    params: tuple[tuple[str, Any], ...] = ()

    def __call__(self, op: Affine, a: jax.Array, R: jax.Array) -> jax.Array:
        return self.fn(op, a, R)

    def __repr__(self) -> str:
        return f"{self.name}({', '.join(f'{k}={v!r}' for k, v in self.params if not hasattr(v, 'shape'))})"


def _pos(x: jax.Array) -> jax.Array:
    return jnp.maximum(x, 0)


def _neg(x: jax.Array) -> jax.Array:
    return jnp.minimum(x, 0)


def epsilon(eps: float = 1e-6) -> Rule:
    """LRP-epsilon (Zennit's ``Epsilon``, default 1e-6; Captum's ``EpsilonRule`` uses 1e-9)."""

    def fn(op: Affine, a: jax.Array, R: jax.Array) -> jax.Array:
        return a * op.T("w", a, R / stabilize(op.z, eps))

    return Rule("epsilon", fn, (("eps", eps),))


def zero() -> Rule:
    """LRP-0: ``epsilon`` without a stabilizer; outputs with ``z = 0`` pass nothing."""

    def fn(op: Affine, a: jax.Array, R: jax.Array) -> jax.Array:
        return a * op.T("w", a, ratio(R, op.z, 0.0))

    return Rule("zero", fn)


def zplus(stabilizer: float = 1e-6) -> Rule:
    """LRP-z+ (Zennit's ``ZPlus``): positive contributions only; negative inputs pair with ``W-``."""

    def fn(op: Affine, a: jax.Array, R: jax.Array) -> jax.Array:
        ap, an = _pos(a), _neg(a)
        s = R / stabilize(op.lin(ap, "w+") + op.lin(an, "w-") + _pos(op.bias), stabilizer)
        return ap * op.T("w+", a, s) + an * op.T("w-", a, s)

    return Rule("zplus", fn, (("stabilizer", stabilizer),))


def alpha_beta(alpha: float = 2.0, beta: float = 1.0, stabilizer: float = 1e-6) -> Rule:
    """LRP-alpha-beta (Zennit's ``AlphaBeta``); needs ``alpha - beta = 1``, both >= 0."""
    if not (alpha >= 0 and beta >= 0 and abs(alpha - beta - 1) < 1e-12):
        raise ValueError(f"alpha_beta: needs alpha - beta = 1 and alpha, beta >= 0 (conservation), got "
                         f"alpha={alpha!r}, beta={beta!r}; e.g. alpha_beta(2, 1) or alpha_beta(1, 0).")

    def fn(op: Affine, a: jax.Array, R: jax.Array) -> jax.Array:
        ap, an = _pos(a), _neg(a)
        sp = R / stabilize(op.lin(ap, "w+") + op.lin(an, "w-") + _pos(op.bias), stabilizer)
        sn = R / stabilize(op.lin(ap, "w-") + op.lin(an, "w+") + _neg(op.bias), stabilizer)
        positive = ap * op.T("w+", a, sp) + an * op.T("w-", a, sp)
        negative = ap * op.T("w-", a, sn) + an * op.T("w+", a, sn)
        return alpha * positive - beta * negative

    return Rule("alpha_beta", fn, (("alpha", alpha), ("beta", beta), ("stabilizer", stabilizer)))


def gamma(gamma: float = 0.25, stabilizer: float = 1e-6) -> Rule:
    """LRP-gamma (Zennit's ``Gamma``, default 0.25): positive weights boosted by ``gamma``."""

    def fn(op: Affine, a: jax.Array, R: jax.Array) -> jax.Array:
        ap, an = _pos(a), _neg(a)
        z = op.z

        def lin(v: jax.Array, boost: str) -> jax.Array:
            return op.lin(v, "w") + gamma * op.lin(v, boost)

        up = jnp.where(z > 0, R, 0) / stabilize(lin(ap, "w+") + lin(an, "w-") + op.bias + gamma * _pos(op.bias),
                                                stabilizer)
        down = jnp.where(z < 0, R, 0) / stabilize(lin(ap, "w-") + lin(an, "w+") + op.bias + gamma * _neg(op.bias),
                                                  stabilizer)
        # (W + g W+)^T up + (W + g W-)^T down for a+, and with W+ / W- swapped for a-: each transpose once
        both = op.T("w", a, up + down)
        plus_up, minus_up, plus_down, minus_down = (op.T(w, a, s) for w, s in
                                                    (("w+", up), ("w-", up), ("w+", down), ("w-", down)))
        return ap * (both + gamma * (plus_up + minus_down)) + an * (both + gamma * (minus_up + plus_down))

    return Rule("gamma", fn, (("gamma", gamma), ("stabilizer", stabilizer)))


def zbox(low: Any, high: Any, stabilizer: float = 1e-6) -> Rule:
    """LRP-z^B (Zennit's ``ZBox``) for inputs bounded by ``low <= a <= high`` (arrays broadcast to ``a``)."""
    if low is None or high is None:
        raise ValueError("zbox: needs the input's bounds, e.g. zbox(low=0.0, high=1.0) for images in [0, 1] "
                         "(or the normalized bounds of your preprocessing); they have no default.")

    def fn(op: Affine, a: jax.Array, R: jax.Array) -> jax.Array:
        lo = jnp.broadcast_to(jnp.asarray(low, a.dtype), a.shape)
        hi = jnp.broadcast_to(jnp.asarray(high, a.dtype), a.shape)
        s = R / stabilize(op.lin(a, "w") - op.lin(lo, "w+") - op.lin(hi, "w-"), stabilizer)
        return a * op.T("w", a, s) - lo * op.T("w+", a, s) - hi * op.T("w-", a, s)

    return Rule("zbox", fn, (("low", low), ("high", high), ("stabilizer", stabilizer)))


def flat(stabilizer: float = 1e-6) -> Rule:
    """LRP-flat (Zennit's ``Flat``): relevance spread evenly over each output's receptive field."""

    def fn(op: Affine, a: jax.Array, R: jax.Array) -> jax.Array:
        ones = jnp.ones_like(a)
        return op.T("1", a, R / stabilize(op.lin(ones, "1"), stabilizer))

    return Rule("flat", fn, (("stabilizer", stabilizer),))


def wsquare(stabilizer: float = 1e-6) -> Rule:
    """LRP-w^2 (Zennit's ``WSquare``): relevance in proportion to the squared weights."""

    def fn(op: Affine, a: jax.Array, R: jax.Array) -> jax.Array:
        ones = jnp.ones_like(a)
        return op.T("w2", a, R / stabilize(op.lin(ones, "w2") + op.bias ** 2, stabilizer))

    return Rule("wsquare", fn, (("stabilizer", stabilizer),))


#: Rules by name, with their default parameters (``"alpha1_beta0"`` is ``alpha_beta(1, 0)``).
RULES: dict[str, Callable[[], Rule]] = {
    "epsilon": epsilon, "zero": zero, "zplus": zplus, "gamma": gamma, "flat": flat, "wsquare": wsquare,
    "alpha1_beta0": lambda: alpha_beta(1.0, 0.0), "alpha2_beta1": lambda: alpha_beta(2.0, 1.0),
}
