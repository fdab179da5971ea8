"""What each mode computes per example and checkpoint (its *terms* of *factors*), and how they meet.

An influence score at one checkpoint is a sum of terms, each a product of dot products of
per-example factors, ``sum_terms prod_i <f_i, f_i'>``:

- ``"full"``: the gradient of the loss with respect to every parameter (or those ``layers=``
  names), as Captum's ``TracInCP``. Each dense layer whose weight the loss uses once is a term of
  two factors, its input ``a`` and the gradient ``g`` at its output
  (:func:`~xai_core.influence.layers.factors`): ``(a . a') (g . g')`` is the dot product of the
  weight's gradients ``g a^T`` without forming them. The other parameters' gradients (biases,
  convolutions, embeddings) are one more term, flattened, by ``jax.vmap(jax.grad(loss))``;
- ``"last_layer"``: one term ``(a, g)``, the last dense layer's, as Captum's ``TracInCPFast``;
- ``"random_projection"``: the same two factors projected, ``P_a^T a`` and ``P_g^T g``, as Captum's
  ``TracInCPFastRandProj``, whose vector ``vec((P_g^T g)(P_a^T a)^T)`` has exactly this dot product.

The score over checkpoints is ``sum_t eta_t * sum_terms prod_i <f_i, f_i'>``; self-influence is the
same with an example against itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from xai_core.core.checks import check_positive_int
from xai_core.core.chunking import accumulation_dtype
from xai_core.influence.layers import factors, find_dense, leaf_names, pick, rank_one, trace_loss

__all__ = ["MODES", "Plan", "draw_projection", "plan", "projection_for"]

MODES = ("full", "last_layer", "random_projection")
"""The modes of :func:`~xai_core.influence.tracin`: all parameters, the last layer in closed form, the
last layer's factors randomly projected."""

#: ``batch_size="auto"``: chunks of about this many values of per-example factors (at least 16, at most 512).
AUTO_ELEMENTS = 2 ** 22


Terms = tuple[tuple[jax.Array, ...], ...]


class Plan(NamedTuple):
    """``terms(params, example, projection) -> tuple of terms, each a tuple of factor vectors`` for
    training and test examples (of one structure), the number of values they hold per example, and
    the last layer's ``(inputs, outputs)`` (modes ``"last_layer"`` and ``"random_projection"``)."""

    train: Callable[[Any, Any, Any], Terms]
    test: Callable[[Any, Any, Any], Terms]
    size: int
    last: tuple[int, int] | None


def _scalar_loss(loss_fn: Callable[[Any, Any], Any], params: Any, example: Any, what: str, method: str) -> Any:
    out = jax.eval_shape(loss_fn, params, example)
    if not hasattr(out, "shape") or out.shape != () or not jnp.issubdtype(out.dtype, jnp.floating):
        got = jax.tree.map(lambda s: (s.shape, str(s.dtype)), out)
        raise ValueError(f"{method}: {what}(params, example) must return the loss of ONE example, a floating-point "
                         f"scalar; got {got}. Return e.g. -log_softmax(logits)[label] (no batch axis: examples are "
                         "batched with jax.vmap, Captum's reduction='sum' or 'mean' is not needed).")
    return out


def draw_projection(key: jax.Array, projection_dim: int, inputs: int, outputs: int,
                    dtype: Any = jnp.float32) -> tuple[jax.Array, jax.Array] | None:
    """TracInCPFastRandProj's projection of the last layer's factors: ``(P_g, P_a)``, Gaussian
    matrices of shapes ``(outputs, k_g)`` and ``(inputs, k_a)`` with entries of standard deviation
    ``1 / sqrt(k)``, ``k_g = min(isqrt(projection_dim), outputs)`` and
    ``k_a = min(isqrt(projection_dim), inputs)``; ``None`` (no projection) when
    ``inputs * outputs <= projection_dim``, as Captum decides. Drawn from ``key`` (Captum draws
    ``P_g`` then ``P_a`` with ``torch.normal`` after ``torch.manual_seed(seed)``: pass its
    ``projection_quantities`` as ``projection=`` to replay them).

    >>> import jax
    >>> p_g, p_a = draw_projection(jax.random.key(0), 16, inputs=32, outputs=10)
    >>> p_g.shape, p_a.shape
    ((10, 4), (32, 4))
    """
    projection_dim = check_positive_int(projection_dim, "projection_dim", "draw_projection")
    if inputs * outputs <= projection_dim:
        return None
    root = math.isqrt(projection_dim)
    k_g, k_a = min(root, outputs), min(root, inputs)
    kg_key, ka_key = jax.random.split(key)
    return (jax.random.normal(kg_key, (outputs, k_g), dtype) / math.sqrt(k_g),
            jax.random.normal(ka_key, (inputs, k_a), dtype) / math.sqrt(k_a))


def _full(loss_fn: Callable[[Any, Any], Any], test_loss_fn: Callable[[Any, Any], Any], params: Any, example: Any,
          layers: Sequence[str] | None, method: str) -> Plan:
    leaves, names = jax.tree.leaves(params), leaf_names(params)
    inexact = [i for i, a in enumerate(leaves) if jnp.issubdtype(jnp.result_type(a), jnp.inexact)]
    chosen = inexact if layers is None else [i for i in pick(names, layers, "layers", method) if i in inexact]
    if not chosen:
        raise ValueError(f"{method}: no floating-point parameter to differentiate (layers={layers!r}).")
    dtype = accumulation_dtype(jnp.result_type(*[leaves[i] for i in chosen]))  # bfloat16 weights: float32 dots
    losses = [loss_fn] if test_loss_fn is loss_fn else [loss_fn, test_loss_fn]
    programs = [trace_loss(f, params, example) for f in losses]
    dense = [rank_one(c, names, method) for c in programs]
    factored = [i for i in chosen if all(i in d for d in dense)]  # the same terms for both losses
    rest = [i for i in chosen if i not in factored]

    def terms_of(closed: Any, found: dict[int, Any]) -> Callable[[Any, Any, Any], Terms]:
        run = factors(closed, [found[i] for i in factored], rest)

        def terms(p: Any, example: Any, _: None) -> Terms:
            pairs, grads = run([*jax.tree.leaves(p), *jax.tree.leaves(example)])
            out = tuple((a.astype(dtype), g.astype(dtype)) for a, g in pairs)
            if rest:
                out += ((jnp.concatenate([x.reshape(-1).astype(dtype) for x in grads]),),)
            return out

        return terms

    train, *test = [terms_of(c, d) for c, d in zip(programs, dense)]
    size = sum(dense[0][i].inputs + dense[0][i].outputs for i in factored) + sum(int(np.size(leaves[i])) for i in rest)
    return Plan(train, test[0] if test else train, size, None)


def _last(loss_fn: Callable[[Any, Any], Any], params: Any, example: Any, layer: str | None,
          method: str) -> tuple[Callable[[Any, Any, Any], Terms], Any]:
    closed, dense = find_dense(loss_fn, params, example, layer, method)
    run = factors(closed, [dense])

    def parts(p: Any, ex: Any, projection: tuple[jax.Array, jax.Array] | None) -> Terms:
        (a, g), = run([*jax.tree.leaves(p), *jax.tree.leaves(ex)])[0]
        a, g = a.astype(accumulation_dtype(a.dtype)), g.astype(accumulation_dtype(g.dtype))
        if projection is None:
            return ((a, g),)
        p_g, p_a = projection
        return ((a @ p_a.astype(a.dtype), g @ p_g.astype(g.dtype)),)

    return parts, dense


def _build(loss_fn: Callable[[Any, Any], Any], test_loss_fn: Callable[[Any, Any], Any], params: Any, example: Any,
           mode: str, layers: Sequence[str] | None, last_layer: str | None, method: str) -> Plan:
    _scalar_loss(loss_fn, params, example, "loss_fn", method)
    if test_loss_fn is not loss_fn:
        _scalar_loss(test_loss_fn, params, example, "test_loss_fn", method)
    if mode == "full":
        return _full(loss_fn, test_loss_fn, params, example, layers, method)
    train, dense = _last(loss_fn, params, example, last_layer, method)
    test = train if test_loss_fn is loss_fn else _last(test_loss_fn, params, example, last_layer, method)[0]
    return Plan(train, test, dense.inputs + dense.outputs, (dense.inputs, dense.outputs))


def _spec(tree: Any) -> tuple[Any, ...]:
    return jax.tree.structure(tree), tuple((np.shape(a), jnp.result_type(a)) for a in jax.tree.leaves(tree))


_PLANS: dict[tuple[Any, ...], Plan] = {}
_KEEP = 8  # plans kept for calls with the same loss functions and shapes: no tracing, no compiling again


def plan(loss_fn: Callable[[Any, Any], Any], test_loss_fn: Callable[[Any, Any], Any] | None, params: Any,
         example: Any, mode: str, *, layers: Sequence[str] | str | None, last_layer: str | None, method: str) -> Plan:
    """The factor functions of ``mode`` for checkpoints and examples shaped like ``params`` and
    ``example``; the last few are kept, so a call with the same loss functions reuses their programs."""
    test_loss_fn = loss_fn if test_loss_fn is None else test_loss_fn
    layers = (layers,) if isinstance(layers, str) else None if layers is None else tuple(map(str, layers))
    key = (loss_fn, test_loss_fn, mode, layers, last_layer, _spec(params), _spec(example))
    try:
        hash(key)
    except TypeError:  # a loss function that cannot be a key: built for this call only
        return _build(loss_fn, test_loss_fn, params, example, mode, layers, last_layer, method)
    if key not in _PLANS:
        _PLANS[key] = _build(loss_fn, test_loss_fn, params, example, mode, layers, last_layer, method)
        while len(_PLANS) > _KEEP:
            del _PLANS[next(iter(_PLANS))]
    return _PLANS[key]


def projection_for(p: Plan, projection: Any, projection_dim: int | None, key: jax.Array | None, dtype: Any,
                   method: str) -> tuple[tuple[jax.Array, jax.Array] | None, int]:
    """``mode="random_projection"``'s matrices ``(P_g, P_a)`` (given, or drawn from ``key``; ``None``
    where Captum would not project) and the values per example they leave."""
    inputs, outputs = p.last
    if projection is not None:
        try:
            p_g, p_a = (jnp.asarray(m) for m in projection)
        except (TypeError, ValueError):
            p_g = p_a = None
        if p_g is None or p_g.ndim != 2 or p_a.ndim != 2 or p_g.shape[0] != outputs or p_a.shape[0] != inputs:
            raise ValueError(f"{method}: projection must be a pair (P_g, P_a) of matrices of shapes ({outputs}, k_g) "
                             f"and ({inputs}, k_a) for the last layer's {outputs} outputs and {inputs} inputs "
                             "(Captum's projection_quantities); or pass projection_dim= and key=.")
        proj = (p_g, p_a)
    elif projection_dim is None or key is None:
        raise ValueError(f"{method}: mode='random_projection' needs projection_dim= and a key= (jax.random.key), "
                         "or the matrices themselves as projection=(P_g, P_a).")
    else:
        proj = draw_projection(key, projection_dim, inputs, outputs,
                               dtype if jnp.issubdtype(dtype, jnp.floating) else jnp.float32)
    return proj, p.size if proj is None else proj[0].shape[1] + proj[1].shape[1]
