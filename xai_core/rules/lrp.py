"""Layer-wise relevance propagation on the traced program.

The program is re-run with the graph package's one interpreter; its backward pass carries
*relevance* instead of gradients, starting from the score's own value at the output (Zennit's
and Captum's ``onehot * logit``). What each operation does with it is read off the program
(:mod:`xai_core.rules.lrp_plan`): affine operations (dense, convolution, with their bias and
BatchNorm folded in; sums and average pools) apply the composite's rule
(:mod:`xai_core.rules.lrp_rules`, :mod:`xai_core.rules.composites`); activations pass it
through; residual adds split it in proportion; reshapes, slices, concatenations and
max-pooling move it (their gradient); attention weights and normalizer scales are constants
(Ali et al. 2022); an entrywise product of two activations (a gated MLP's ``silu(g) * u``)
gives each factor half (the uniform rule of AttnLRP, Achtibat et al. 2024). Anything else raises :class:`~xai_core.rules.NoRuleError` naming the
primitive and its layer.

Conservation: the relevance at the input plus what was *absorbed* on the way (by biases, by
the ``eps`` of the epsilon rule and by the stabilizers, i.e. ``sum(R_z) - sum(R_a)`` at every
operation) equals the score exactly; ``lrp(..., absorbed=True)`` returns that amount too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax
from jax.extend.core import JaxprEqn

from xai_core.core.checks import ScoreFn, check_choice, checked_score
from xai_core.graph import fast_kernels, trace
from xai_core.graph.interpreter import RULE_CALLS, _bind, _interpret, _read
from xai_core.core.inputs import split_inputs
from xai_core.rules.composites import Composite, resolve
from xai_core.rules.analysis import operands
from xai_core.rules.lrp_plan import BIJECTIONS, Chain, Plan, plan
from xai_core.rules.lrp_rules import Affine, Rule, ratio

sg = lax.stop_gradient


def _affine(chain: Chain, aux: dict[str, Any]) -> Affine:
    """The :class:`Affine` of ``chain`` from its operands' values: ``aux["start"]`` (the start
    equation's inputs), ``aux["post"]`` (each post equation's inputs), ``aux["u"]`` (``L``'s
    output) and ``aux["z"]`` (the chain's)."""

    def base(v: jax.Array, w: Any = None) -> jax.Array:
        if chain.start is None:
            return v
        vals = list(aux["start"])
        vals[chain.start.invars.index(chain.act)] = v
        if chain.weight is not None:
            vals[chain.weight] = w
        return _bind(chain.start, vals)[0]

    def post(u: jax.Array, reshapes_only: bool = False) -> jax.Array:
        cur, var = u, (chain.start.outvars[0] if chain.start is not None else chain.act)
        for eqn, vals in zip(chain.post, aux["post"]):
            if eqn.primitive.name != "name" and not (reshapes_only and eqn.primitive.name not in BIJECTIONS):
                cur = _bind(eqn, [cur if v is var else x for v, x in zip(eqn.invars, vals)])[0]
            var = eqn.outvars[0]
        return cur

    u0 = jnp.zeros_like(aux["u"])
    t = post(u0)
    s = jax.jvp(post, (u0,), (jnp.ones_like(u0),))[1] if chain.scaled else None
    W = None if chain.weight is None else aux["start"][chain.weight]

    def lin(v: jax.Array, which: str) -> jax.Array:
        def P(u: jax.Array) -> jax.Array:
            return post(u, reshapes_only=True)

        def part(w: str) -> jax.Array:  # L(v; W_w) in z's layout; no weight: non-negative unit weights
            if W is None:
                return 0 * P(base(v)) if w == "w-" else P(base(v))
            return P(base(v, {"w": W, "w+": jnp.maximum(W, 0), "w-": jnp.minimum(W, 0), "1": jnp.ones_like(W),
                              "w2": W * W}[w]))

        if which == "1" or s is None:
            return part(which)
        if which == "w":
            return s * part("w")
        if which == "w2":
            return s * s * part("w2")
        other = "w-" if which == "w+" else "w+"  # s * W's positive part: s+ W+ + s- W- (negative: swapped)
        return jnp.maximum(s, 0) * part(which) + jnp.minimum(s, 0) * part(other)

    return Affine(lin, t, aux["z"])


def _total(x: Any) -> jax.Array:
    return sum(jnp.sum(v) for v in jax.tree.leaves(x))


def _relay(backward: Callable[[Any, Any, jax.Array], Any], z: jax.Array, carried: Any, sink: jax.Array,
           aux: Any) -> jax.Array:
    """``z``, whose backward pass sends the relevance ``R`` to ``carried`` as
    ``backward(carried, aux, R)`` and what it does not send on (``sum(R) - sum(sent)``) to ``sink``."""

    @jax.custom_vjp
    def relay(z: jax.Array, carried: Any, sink: jax.Array, aux: Any) -> jax.Array:
        return z

    def forward(z: jax.Array, carried: Any, sink: jax.Array, aux: Any) -> tuple[jax.Array, Any]:
        return z, (z, carried, aux)

    def back(res: Any, R: jax.Array) -> tuple[Any, ...]:
        z, carried, aux = res
        sent = backward(carried, aux, R)
        absorbed = (_total(R) - _total(sent)).astype(sink.dtype)
        return jnp.zeros_like(z), sent, absorbed, jax.tree.map(jnp.zeros_like, aux)

    relay.defvjp(forward, back)
    return relay(z, carried, sink, aux)


def _run(pl: Plan, composite: Composite, consts: list[Any], xs: list[jax.Array], sink: jax.Array) -> jax.Array:
    """The score at ``xs``; its backward pass from the score's value is the relevance."""
    env: dict = {}
    stabilizer = dict(composite.other.params).get("eps", 0.0 if composite.other.name == "zero" else 1e-6)

    def rule(eqn: JaxprEqn, *invals: Any) -> Any:
        key = id(eqn)
        if key in pl.passes:
            r = env[pl.passes[key]]
            return sg(_bind(eqn, invals)[0]) + (r - sg(r))
        if key in pl.norms:
            out = _bind(eqn, invals)[0]
            deps = operands(eqn, pl.program.dependent)

            def split(ops: list[jax.Array], aux: Any, R: jax.Array) -> list[jax.Array]:
                vals = list(aux)
                for i, o in zip(deps, ops):
                    vals[i] = o
                total, vjp = jax.vjp(lambda *o: _bind(eqn, [*o])[0], *vals)
                grads = vjp(ratio(R, total, stabilizer))
                return [(vals[i] * grads[i]).astype(vals[i].dtype) for i in deps]

            others = [jnp.asarray(sg(v)) for v in invals]
            return _relay(split, out, [invals[i] for i in deps], sink, others)
        if key in pl.products:  # AttnLRP's uniform rule: each factor of a * b (or a @ b) gets half
            out = _bind(eqn, invals)[0]

            def halves(ops: list[jax.Array], aux: Any, R: jax.Array) -> list[jax.Array]:
                total, vjp = jax.vjp(lambda *o: _bind(eqn, list(o))[0], *ops)
                return [(o * g / 2).astype(o.dtype) for o, g in zip(ops, vjp(ratio(R, total, stabilizer)))]

            return _relay(halves, out, list(invals), sink, [])
        if key in pl.softmaxes:  # AttnLRP's softmax rule: R_x = x (R - s sum(R))
            s = _bind(eqn, invals)[0]
            x, axes = pl.softmaxes[key]

            def through(ops: list[jax.Array], aux: Any, R: jax.Array) -> list[jax.Array]:
                x = ops[0]  # a masked score (-inf) gets no relevance
                r = jnp.where(jnp.isfinite(x), x, 0) * (R - aux[0] * R.sum(axes, keepdims=True))
                return [r.astype(x.dtype)]

            return _relay(through, s, [_read(env, x)], sink, [sg(s)])
        chain = pl.chains.get(key)
        if chain is None:
            return None
        z = _bind(eqn, invals)[0]
        u = env[chain.act] if chain.start is None else z if not chain.post else env[chain.start.outvars[0]]
        aux = {"start": [] if chain.start is None else [sg(jnp.asarray(_read(env, v))) for v in chain.start.invars],
               "post": [[sg(jnp.asarray(_read(env, v))) for v in e.invars] for e in chain.post], "u": sg(u),
               "z": sg(z)}
        chosen: Rule = composite.rule_for(chain.kind, chain.first, chain.layer)

        def backward(a: jax.Array, aux: Any, R: jax.Array) -> jax.Array:
            return chosen(_affine(chain, aux), a, R).astype(a.dtype)

        return _relay(backward, z, env[chain.act], sink, aux)

    table = {e.primitive.name: rule for e in pl.program.jaxpr.eqns}
    return _interpret(pl.program.jaxpr, consts, xs, inline=True, rules=table, env=env)[0]


def lrp(score_fn: ScoreFn, composite: str | Composite | Rule = "epsilon_plus_flat", *,
        layers: Mapping[str, Rule] | None = None, low: Any = None, high: Any = None,
        absorbed: bool = False, attention: str = "constant") -> Callable[[Any], Any]:
    """Layer-wise relevance propagation: the score's value redistributed onto the input.

    Bach et al. 2015; the rules are Zennit's (:mod:`xai_core.rules.lrp_rules`), assigned by a
    composite (:mod:`xai_core.rules.composites`). ``composite`` is one of
    ``"epsilon_plus_flat"`` (the default), ``"epsilon_gamma_box"`` (needs ``low`` and ``high``,
    the input's bounds), ``"epsilon_alpha2_beta1"``, a rule's name applied to every dense and
    convolution (``"epsilon"``, ``"zero"``, ``"zplus"``, ``"gamma"``, ``"alpha1_beta0"``,
    ``"alpha2_beta1"``, ``"flat"``, ``"wsquare"``, ``"zbox"``), a :class:`~xai_core.rules.Rule` or a
    :class:`~xai_core.rules.Composite`. ``layers`` maps layer-mark patterns (``fnmatch``, e.g.
    ``"features.*"``) to rules and wins over the composite's type rules.

    ``attention``: ``"constant"`` (CP-LRP, Ali et al. 2022: attention weights are constants) or
    ``"attnlrp"`` (Achtibat et al. 2024: relevance flows through the softmax by
    ``R_x = x (R - s sum(R))`` and the query-key and weight-value products split it in halves);
    AttnLRP's softmax rule is not conservative, so ``absorbed`` then includes what it adds or loses.

    With ``absorbed=True`` the function returns ``(relevance, absorbed)``: ``absorbed`` is what
    biases, ``eps`` and the stabilizers took, so ``sum(relevance) + absorbed == score`` up to
    rounding. On a bias-free ReLU network LRP-0 (``"zero"``) equals gradient times input.

    >>> import jax, jax.numpy as jnp, xai_core as xc
    >>> w1, w2 = jnp.array([[1.0, -1.0], [2.0, 1.0]]), jnp.array([1.0, 2.0])
    >>> f = lambda x: jax.nn.relu(x @ w1) @ w2
    >>> r = xc.lrp(f, "zero")(jnp.array([1.0, 1.0]))
    >>> r, float(r.sum()), float(f(jnp.array([1.0, 1.0])))
    (Array([1., 2.], dtype=float32), 3.0, 3.0)
    """
    check_choice(attention, ("constant", "attnlrp"), "attention", "lrp")
    chosen = resolve(composite, low, high)
    if layers:
        chosen = chosen.with_layers(layers)
    score = checked_score(score_fn, "lrp")

    def attribution(x: Any) -> Any:
        inputs = split_inputs(x, "lrp")
        closed = trace(lambda leaves: score(inputs.score_input(leaves)), inputs.leaves, calls=RULE_CALLS)
        pl = plan(closed.jaxpr, attention)

        def propagate(leaves: list[jax.Array]) -> tuple[list[jax.Array], jax.Array]:
            sink = jnp.zeros((), jnp.result_type(*leaves))
            value, pull = jax.vjp(lambda ls, k: _run(pl, chosen, list(closed.consts), ls, k), leaves, sink)
            return pull(value)

        relevance, lost = fast_kernels(propagate)(inputs.leaves)
        result = inputs.result([r.astype(a.dtype) for r, a in zip(relevance, inputs.leaves)])
        return (result, lost) if absorbed else result

    return attribution
