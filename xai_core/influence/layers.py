"""Which parameters: leaves picked by name, and the final dense layer found in the loss's program.

Names are key paths split into parts at ``/`` and ``.``: a torch adapter's ``"fc2.weight"`` is
``("fc2", "weight")``, a Flax ``{"params": {"Dense_1": {"kernel": ...}}}`` leaf is
``("params", "Dense_1", "kernel")``; a name picks the leaves whose parts contain its parts in a row
(``"fc2"``, ``"Dense_1/kernel"``).

TracInCPFast (Captum) takes the gradient of the final fully connected layer's weight in closed form:
for one example with layer input ``a`` and ``g = dloss/dz`` at its output ``z = W a (+ b)``, the
weight's gradient is the outer product ``g a^T``, so ``<G, G'> = (g . g') (a . a')``. Captum hooks the
``final_fc_layer`` module for ``a`` and differentiates its loss with respect to the model's output for
``g``; here :func:`dense_layers` finds the layer in the traced loss (a ``dot_general`` one of whose
operands is a parameter leaf, moved at most by transposes, reshapes and casts) and :func:`factors`
re-runs the program with that equation's input recorded and a zero added to its output, whose
gradient is ``g``: exact for a layer written any way, in any framework, one backward pass.

The same closed form serves ``mode="full"`` for every such layer (:func:`rank_one`): the dot product
of two examples' gradients is ``sum_layers (a . a') (g . g')`` plus that of the other parameters'
gradients, so a dense weight's per-example gradient is never formed (the trick of "ghost" norms in
differentially private training, Goodfellow 2015, arXiv:1510.01799).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.extend.core import Literal

from xai_core.graph import trace
from xai_core.graph.interpreter import _bind, _interpret

__all__ = ["Dense", "dense_layers", "factors", "find_dense", "leaf_names", "pick", "rank_one", "trace_loss"]

#: Ops that move a weight without mixing its entries: the gradient keeps its norm through them.
_MOVES = frozenset({"transpose", "convert_element_type", "copy", "copy_p", "reshape", "squeeze"})


def leaf_names(params: Any) -> list[tuple[str, ...]]:
    """Each leaf's key path as name parts (``/`` and ``.`` split)."""
    def parts(key: Any) -> list[str]:
        name = getattr(key, "key", getattr(key, "name", getattr(key, "idx", key)))
        return [p for p in re.split(r"[./]", str(name)) if p]
    return [tuple(p for k in path for p in parts(k)) for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]]


def _matches(name: tuple[str, ...], spec: str) -> bool:
    want = tuple(p for p in re.split(r"[./]", spec) if p)
    return any(name[i:i + len(want)] == want for i in range(len(name) - len(want) + 1)) if want else False


def pick(names: Sequence[tuple[str, ...]], specs: Sequence[str], what: str, method: str) -> list[int]:
    """The indices of the leaves that some name of ``specs`` picks (each name must pick one)."""
    chosen = set()
    for spec in specs:
        hit = [i for i, n in enumerate(names) if _matches(n, str(spec))]
        if not hit:
            known = ", ".join("/".join(n) for n in names)
            raise ValueError(f"{method}: {what} {spec!r} names no parameter; the parameters are: {known}.")
        chosen.update(hit)
    return sorted(chosen)


class Dense(NamedTuple):
    """A dense layer of the traced loss: its ``dot_general`` equation, the parameter leaf that is its
    weight (index and name), which operand the weight is, and the sizes of its input and output."""

    eqn: Any
    leaf: int
    name: str
    operand: int
    inputs: int
    outputs: int


def dense_layers(closed: Any, names: Sequence[tuple[str, ...]], method: str) -> tuple[list[Dense], dict[int, int]]:
    """The dense layers of ``closed`` (a traced ``loss(param leaves..., example leaves...)``), in
    program order, and how many times each parameter leaf is used (moves not counted)."""
    jaxpr, n = closed.jaxpr, len(names)
    origin = {v: i for i, v in enumerate(jaxpr.invars[:n])}
    data = set(jaxpr.invars[n:])
    uses: dict[int, int] = {}
    found = []
    for eqn in jaxpr.eqns:
        ins = [v for v in eqn.invars if not isinstance(v, Literal)]
        if eqn.primitive.name in _MOVES and len(ins) == 1 and ins[0] in origin:
            origin[eqn.outvars[0]] = origin[ins[0]]
            continue
        for v in ins:
            if v in origin:
                uses[origin[v]] = uses.get(origin[v], 0) + 1
        if any(v in data for v in ins):
            data.update(eqn.outvars)
        if eqn.primitive.name != "dot_general" or len(eqn.invars) != 2:
            continue
        w = [k for k, v in enumerate(eqn.invars) if not isinstance(v, Literal) and v in origin]
        if len(w) != 1 or isinstance(eqn.invars[1 - w[0]], Literal) or eqn.invars[1 - w[0]] not in data:
            continue
        (contract, batch) = eqn.params["dimension_numbers"]
        wv, av = eqn.invars[w[0]], eqn.invars[1 - w[0]]
        w_free = [d for d in range(wv.aval.ndim) if d not in contract[w[0]]]
        a_free = [d for d in range(av.aval.ndim) if d not in contract[1 - w[0]]]
        if batch[0] or math.prod(av.aval.shape[d] for d in a_free) != 1:
            continue  # not one vector per example (a sequence, a batch axis): no rank-one gradient
        found.append(Dense(eqn, origin[wv], "/".join(names[origin[wv]]), w[0],
                           math.prod(av.aval.shape[d] for d in contract[1 - w[0]]),
                           math.prod(wv.aval.shape[d] for d in w_free)))
    return found, uses


def trace_loss(loss_fn: Callable[[Any, Any], Any], params: Any, example: Any) -> Any:
    """``loss_fn(params, example)`` traced to one flat program of ``(param leaves..., example leaves...)``."""
    treedef = jax.tree.structure(params)
    return trace(lambda ls, ex: loss_fn(jax.tree.unflatten(treedef, ls), ex), jax.tree.leaves(params), example)


def rank_one(closed: Any, names: Sequence[tuple[str, ...]], method: str) -> dict[int, Dense]:
    """The dense layers whose weight's per-example gradient is the outer product ``g a^T``: those
    whose weight leaf the loss uses once, by leaf index."""
    found, uses = dense_layers(closed, names, method)
    return {d.leaf: d for d in found if uses.get(d.leaf, 0) == 1}


def find_dense(loss_fn: Callable[[Any, Any], Any], params: Any, example: Any, layer: str | None,
               method: str) -> tuple[Any, Dense]:
    """Trace ``loss_fn(params, example)`` and return ``(program, the final dense layer)`` (the last
    one, or the one ``layer`` names), or an error that says what was found."""
    names = leaf_names(params)
    closed = trace_loss(loss_fn, params, example)
    found, uses = dense_layers(closed, names, method)
    listed = ", ".join(d.name for d in found) or "none"
    if layer is not None:
        chosen = [d for d in found if _matches(names[d.leaf], str(layer))]
        if len(chosen) != 1:
            raise ValueError(f"{method}: layer={layer!r} names {len(chosen)} of the dense layers found in the loss "
                             f"({listed}); name exactly one weight.")
        dense = chosen[0]
    elif not found:
        raise ValueError(f"{method}: found no dense layer in the loss (a matrix product of one parameter with one "
                         "vector per example), so there is no last layer for mode='last_layer' or "
                         "'random_projection'; use mode='full'.")
    else:
        dense = found[-1]
    if uses.get(dense.leaf, 0) != 1:
        raise ValueError(f"{method}: the last layer's weight {dense.name} is used {uses.get(dense.leaf, 0)} times in "
                         "the loss (a regularizer? a shared weight?); its gradient is then not the closed form "
                         "g a^T. Use mode='full' (with layers=[...]), or name another weight with layer=.")
    return closed, dense


def factors(closed: Any, denses: Sequence[Dense], rest: Sequence[int] = ()
            ) -> Callable[[Sequence[Any]], tuple[list[tuple[jax.Array, jax.Array]], list[jax.Array]]]:
    """``args -> ([(a, g) per dense layer], [gradient of each leaf in rest])`` in one backward pass:
    each layer's input ``a`` (a vector of ``dense.inputs``) and the loss's gradient ``g`` at its
    output (a vector of ``dense.outputs``), and the gradients of the parameter leaves ``rest`` (flat
    input indices), for the program's flat inputs ``args``. The layers' weights are not differentiated."""
    which = {id(d.eqn): k for k, d in enumerate(denses)}
    orders = []
    for d in denses:
        contract = d.eqn.params["dimension_numbers"][0][1 - d.operand]
        a_ndim = d.eqn.invars[1 - d.operand].aval.ndim
        orders.append([i for i in range(a_ndim) if i not in contract] + list(contract))

    def run(args: Sequence[Any]) -> tuple[list[tuple[jax.Array, jax.Array]], list[jax.Array]]:
        def program(deltas: list[jax.Array], values: list[jax.Array]) -> tuple[jax.Array, list[jax.Array]]:
            full, seen = list(args), {}
            for i, v in zip(rest, values):
                full[i] = v

            def rule(e: Any, *invals: Any) -> Any:
                k = which.get(id(e))
                if k is None:
                    return None
                seen[k] = invals[1 - denses[k].operand]
                return _bind(e, invals)[0] + deltas[k]

            loss = _interpret(closed.jaxpr, closed.consts, full, inline=False, rules={"dot_general": rule})[0]
            return loss, [seen[k] for k in range(len(denses))]

        zeros = [jnp.zeros(d.eqn.outvars[0].aval.shape, d.eqn.outvars[0].aval.dtype) for d in denses]
        (_, acts), (gs, grads) = jax.value_and_grad(program, (0, 1), has_aux=True)(zeros, [args[i] for i in rest])
        pairs = [(jnp.transpose(a, o).reshape(d.inputs), g.reshape(d.outputs))
                 for a, g, o, d in zip(acts, gs, orders, denses)]
        return pairs, grads

    return run
