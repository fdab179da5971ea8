"""What each mode computes per example and checkpoint (its *factors*), and how factors meet.

An influence score at one checkpoint is a product of dot products of per-example factors:

- ``"full"``: one factor, the gradient of the loss with respect to every parameter (or those
  ``layers=`` names) flattened, by ``jax.vmap(jax.grad(loss))``; as Captum's ``TracInCP``;
- ``"last_layer"``: two factors, the last dense layer's input ``a`` and the gradient ``g`` at its
  output (:func:`~xai_core.influence.layers.factors`): ``(a . a') (g . g')`` is the dot product of the
  weight's gradients ``g a^T`` without forming them, as Captum's ``TracInCPFast``;
- ``"random_projection"``: the same two factors projected, ``P_a^T a`` and ``P_g^T g``, as Captum's
  ``TracInCPFastRandProj``, whose vector ``vec((P_g^T g)(P_a^T a)^T)`` has exactly this dot product.

The score over checkpoints is ``sum_t eta_t * prod_i <f_i, f_i'>``; self-influence is the same with
an example against itself.
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
from xai_core.influence.layers import factors, find_dense, leaf_names, pick

__all__ = ["MODES", "Plan", "draw_projection", "plan"]

MODES = ("full", "last_layer", "random_projection")
"""The modes of :func:`~xai_core.influence.tracin`: all parameters, the last layer in closed form, the
last layer's factors randomly projected."""

#: ``batch_size="auto"``: chunks of about this many values of per-example factors (at least 16, at most 512).
AUTO_ELEMENTS = 2 ** 22


class Plan(NamedTuple):
    """``factors(params, example) -> tuple of vectors`` for training and test examples, and the
    number of values they hold per example."""

    train: Callable[[Any, Any], tuple[jax.Array, ...]]
    test: Callable[[Any, Any], tuple[jax.Array, ...]]
    size: int


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


def _full(loss_fn: Callable[[Any, Any], Any], params: Any, layers: Sequence[str] | None, method: str
          ) -> tuple[Callable[[Any, Any], tuple[jax.Array]], int]:
    leaves = jax.tree.leaves(params)
    inexact = [i for i, a in enumerate(leaves) if jnp.issubdtype(jnp.result_type(a), jnp.inexact)]
    chosen = inexact if layers is None else [i for i in pick(leaf_names(params), layers, "layers", method)
                                             if i in inexact]
    if not chosen:
        raise ValueError(f"{method}: no floating-point parameter to differentiate (layers={layers!r}).")
    treedef = jax.tree.structure(params)
    dtype = accumulation_dtype(jnp.result_type(*[leaves[i] for i in chosen]))  # bfloat16 weights: float32 dots

    def grads(p: Any, example: Any) -> tuple[jax.Array]:
        flat = jax.tree.leaves(p)

        def loss(sel: list[jax.Array]) -> jax.Array:
            full = list(flat)
            for i, s in zip(chosen, sel):
                full[i] = s
            return loss_fn(jax.tree.unflatten(treedef, full), example)

        g = jax.grad(loss)([flat[i] for i in chosen])
        return (jnp.concatenate([x.reshape(-1).astype(dtype) for x in g]),)

    return grads, sum(int(np.size(leaves[i])) for i in chosen)


def _last(loss_fn: Callable[[Any, Any], Any], params: Any, example: Any, layer: str | None,
          projection: tuple[Any, Any] | None, method: str) -> Callable[[Any, Any], tuple[jax.Array, jax.Array]]:
    closed, dense = find_dense(loss_fn, params, example, layer, method)
    run = factors(closed, dense)

    def parts(p: Any, ex: Any) -> tuple[jax.Array, jax.Array]:
        a, g = run([*jax.tree.leaves(p), *jax.tree.leaves(ex)])
        a, g = a.astype(accumulation_dtype(a.dtype)), g.astype(accumulation_dtype(g.dtype))
        if projection is None:
            return a, g
        p_g, p_a = projection
        return a @ p_a.astype(a.dtype), g @ p_g.astype(g.dtype)

    parts.dense = dense  # type: ignore[attr-defined]
    return parts


def _check_projection(projection: Any, inputs: int, outputs: int, method: str) -> tuple[jax.Array, jax.Array]:
    try:
        p_g, p_a = (jnp.asarray(p) for p in projection)
    except (TypeError, ValueError):
        p_g = p_a = None
    if p_g is None or p_g.ndim != 2 or p_a.ndim != 2 or p_g.shape[0] != outputs or p_a.shape[0] != inputs:
        raise ValueError(f"{method}: projection must be a pair (P_g, P_a) of matrices of shapes ({outputs}, k_g) and "
                         f"({inputs}, k_a) for the last layer's {outputs} outputs and {inputs} inputs (Captum's "
                         "projection_quantities); or pass projection_dim= and key=.")
    return p_g, p_a


def plan(loss_fn: Callable[[Any, Any], Any], test_loss_fn: Callable[[Any, Any], Any] | None, params: Any,
         example: Any, mode: str, *, layers: Sequence[str] | None, last_layer: str | None,
         projection: Any, projection_dim: int | None, key: jax.Array | None, method: str) -> Plan:
    """The factor functions of ``mode`` for these checkpoints' parameters and examples like ``example``."""
    test_loss_fn = loss_fn if test_loss_fn is None else test_loss_fn
    _scalar_loss(loss_fn, params, example, "loss_fn", method)
    if test_loss_fn is not loss_fn:
        _scalar_loss(test_loss_fn, params, example, "test_loss_fn", method)
    if isinstance(layers, str):
        layers = [layers]
    if mode == "full":
        train, size = _full(loss_fn, params, layers, method)
        test = train if test_loss_fn is loss_fn else _full(test_loss_fn, params, layers, method)[0]
        return Plan(train, test, size)
    proj = None
    if mode == "random_projection":
        dense = find_dense(loss_fn, params, example, last_layer, method)[1]
        if projection is not None:
            proj = _check_projection(projection, dense.inputs, dense.outputs, method)
        elif projection_dim is None or key is None:
            raise ValueError(f"{method}: mode='random_projection' needs projection_dim= and a key= (jax.random.key), "
                             "or the matrices themselves as projection=(P_g, P_a).")
        else:
            dtype = jnp.result_type(*jax.tree.leaves(params))
            proj = draw_projection(key, projection_dim, dense.inputs, dense.outputs,
                                   dtype if jnp.issubdtype(dtype, jnp.floating) else jnp.float32)
    train = _last(loss_fn, params, example, last_layer, proj, method)
    test = train if test_loss_fn is loss_fn else _last(test_loss_fn, params, example, last_layer, proj, method)
    dense = train.dense  # type: ignore[attr-defined]
    size = dense.inputs + dense.outputs if proj is None else proj[0].shape[1] + proj[1].shape[1]
    return Plan(train, test, size)
