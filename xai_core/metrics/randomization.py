"""Randomization sanity checks (Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018;
Sixt et al., "When Explanations Lie", ICML 2020).

An explanation that survives randomizing the model's weights does not explain the model.
:func:`model_randomization` randomizes the layers of ``params`` (the weights pytree,
``m.params``) from the output down, cumulatively ("cascading") or one at a time
("independent"), and returns the similarity of each randomized model's map to the original:
a method **passes** when the similarity falls. Every randomized model is explained in one
compiled program (``jax.lax.map`` over the layers, ``batch_size`` at a time); the weights are
arguments, so nothing recompiles per layer.

A *layer* is a group of leaves sharing a path but for the last key (``params/Conv_0`` for
Flax's ``kernel`` and ``bias``, ``conv1`` for torch's ``conv1.weight``) that holds a leaf with at
least 2 axes (a kernel or weight matrix). Normalization layers, which hold 1-d scales and
statistics only, stay as trained. Layers are ordered by where the traced program first uses
them, so "top" is the output side whatever the pytree's key order.

Example:
    >>> import jax, jax.numpy as jnp, xai_core as xc
    >>> from xai_core.metrics import model_randomization
    >>> params = {"dense1": {"w": jnp.ones((3, 4))}, "dense2": {"w": jnp.ones((4,))[:, None]}}
    >>> f = lambda p, x: jnp.tanh(x @ p["dense1"]["w"]) @ p["dense2"]["w"]
    >>> explain = lambda p, x: xc.gradient(lambda x: f(p, x)[0])(x)
    >>> result = model_randomization(explain, params, jnp.arange(3.0), key=jax.random.key(0))
    >>> list(result)
    ['dense2', 'dense1']
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.extend.core import Literal

from xai_core.core.checks import check_choice, check_positive_int
from xai_core.graph.interpreter import _CALL_LIKE, _inner
from xai_core.metrics._common import as_float, mapped
from xai_core.metrics.similarity import SIMILARITIES

ORDERS = ("cascading", "independent")


def _layer_name(path: tuple[Any, ...]) -> str:
    keys = [str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in path]
    if len(keys) == 1:  # a flat dict of dotted names (torch's state_dict): the module is before the last dot
        return keys[0].rsplit(".", 1)[0]
    return "/".join(keys[:-1])


def _first_uses(jaxpr: Any, owners: dict[Any, int], first: dict[int, int], counter: list[int]) -> None:
    """Record, for each leaf index in ``owners`` (var -> leaf), the position of the first
    equation (depth first through call bodies) that reads it."""
    for eqn in jaxpr.eqns:
        body = _inner(eqn)
        name = eqn.primitive.name
        if body is not None and (name in _CALL_LIKE or name == "pjit") and len(body.jaxpr.invars) == len(eqn.invars):
            inner = {iv: owners[v] for v, iv in zip(eqn.invars, body.jaxpr.invars)
                     if not isinstance(v, Literal) and v in owners}
            _first_uses(body.jaxpr, inner, first, counter)
            continue
        counter[0] += 1
        for v in eqn.invars:
            if not isinstance(v, Literal) and v in owners:
                first.setdefault(owners[v], counter[0])


def param_layers(explain: Callable[[Any, jax.Array], Any], params: Any, x: jax.Array) -> list[str]:
    """The layer names of ``params`` (see the module doc), output side first."""
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    closed = jax.make_jaxpr(lambda p: explain(p, x))(params)
    first: dict[int, int] = {}
    _first_uses(closed.jaxpr, {v: i for i, v in enumerate(closed.jaxpr.invars)}, first, [0])
    order: dict[str, int] = {}
    for i, (path, leaf) in enumerate(flat):
        if jnp.issubdtype(jnp.result_type(leaf), jnp.floating) and jnp.ndim(leaf) >= 2 and i in first:
            name = _layer_name(path)
            order[name] = min(order.get(name, first[i]), first[i])
    return sorted(order, key=lambda name: -order[name])


def randomize(params: Any, layers: list[str], key: jax.Array) -> Any:
    """``params`` with every floating leaf of the named layers redrawn from ``N(mean, std^2)``
    of that leaf (the trained leaf's scale, whatever the framework's layout; a constant leaf,
    such as a zero bias, stays constant)."""
    flat, treedef = jax.tree_util.tree_flatten_with_path(params)
    keys = jax.random.split(key, len(flat))
    leaves = []
    for k, (path, leaf) in zip(keys, flat):
        if _layer_name(path) in layers and jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
            leaf = jnp.asarray(leaf)
            leaf = (leaf.mean() + leaf.std() * jax.random.normal(k, leaf.shape)).astype(leaf.dtype)
        leaves.append(leaf)
    return jax.tree.unflatten(treedef, leaves)


def _as_map(a: Any, channel_axis: int | None) -> jax.Array:
    a = as_float(a)
    return a.sum(axis=channel_axis) if channel_axis is not None and a.ndim == 3 else a


def model_randomization(explain: Callable[[Any, jax.Array], Any], params: Any, x: jax.Array, *,
                        key: jax.Array | None = None, order: str = "cascading", layers: list[str] | None = None,
                        randomized: Any = None, similarity: str = "spearman_abs", channel_axis: int | None = -1,
                        batch_size: int | str | None = 1) -> dict[str, jax.Array]:
    """Model-parameter randomization test: ``{layer: similarity(map(original), map(randomized))}``
    from the output side down (Adebayo et al. 2018).

    Args:
      explain: ``(params, x) -> attribution`` for one example, e.g.
        ``lambda p, x: xc.gradient(m.with_params(p).score(t))(x)``.
      params: the trained weights pytree (``m.params``).
      x: one example (vmap the whole call over a batch).
      key: draws the random weights (:func:`randomize`), unless ``randomized`` gives the fully
        randomized weights (a pytree like ``params``; e.g. a peer's draws).
      order: "cascading" (layer ``k`` and all above it randomized) or "independent" (only layer ``k``).
      layers: the layers to randomize, output side first (default :func:`param_layers`).
      similarity: a name in :data:`xai_core.metrics.similarity.SIMILARITIES` ("spearman_abs",
        "spearman", "ssim", "hog", "pearson"), applied to maps summed over ``channel_axis``
        when they have 3 axes.
      batch_size: randomized models explained at once (each holds a copy of the weights).
    """
    metric = "model_randomization"
    check_choice(order, ORDERS, "order", metric)
    check_choice(similarity, tuple(SIMILARITIES), "similarity", metric)
    measure = SIMILARITIES[similarity]
    names = param_layers(explain, params, x) if layers is None else list(layers)
    if not names:
        raise ValueError(f"{metric}: params has no layer with a weight of 2 or more axes used by explain; pass layers=.")
    if randomized is None:
        if key is None:
            raise ValueError(f"{metric}: pass key=jax.random.key(0) to draw the random weights, or randomized=.")
        randomized = randomize(params, names, key)
    flat, treedef = jax.tree_util.tree_flatten_with_path(params)
    owner = [names.index(_layer_name(p)) if _layer_name(p) in names else -1 for p, _ in flat]
    random_leaves = jax.tree.leaves(randomized)
    steps = jnp.arange(len(names))
    reference = _as_map(explain(params, x), channel_axis)

    def at(step: jax.Array) -> jax.Array:
        leaves = []
        for (_, leaf), new, k in zip(flat, random_leaves, owner):
            chosen = (k == step) if order == "independent" else (k <= step)
            leaves.append(leaf if k < 0 else jnp.where(chosen, new, leaf))
        a = _as_map(explain(jax.tree.unflatten(treedef, leaves), x), channel_axis)
        return measure(reference, a)

    values = mapped(at, steps, batch_size, x, metric)
    return {name: values[i] for i, name in enumerate(names)}


def random_logit(explain: Callable[[jax.Array, jax.Array], Any], x: jax.Array, target: Any, *, num_classes: int,
                 key: jax.Array | None = None, other: Any = None, similarity: str = "ssim",
                 channel_axis: int | None = -1) -> jax.Array:
    """Random-logit test (Sixt et al. 2020): the similarity of the map for ``target`` to the map
    for another class, drawn uniformly from the other ``num_classes - 1`` (or given as
    ``other``). **Lower is better**: a class-sensitive method explains another class differently.

    Args:
      explain: ``(x, class) -> attribution``, e.g. ``lambda x, c: xc.gradient(m.score(c))(x)``.
      similarity: as in :func:`model_randomization` (Quantus's ``RandomLogit`` uses "ssim", on
        flattened maps).
    """
    metric = "random_logit"
    check_positive_int(num_classes, "num_classes", metric, minimum=2)
    check_choice(similarity, tuple(SIMILARITIES), "similarity", metric)
    target = jnp.asarray(target)
    if other is None:
        if key is None:
            raise ValueError(f"{metric}: pass key=jax.random.key(0) to draw the other class, or other=.")
        other = (target + 1 + jax.random.randint(key, (), 0, num_classes - 1)) % num_classes
    a = _as_map(explain(x, target), channel_axis)
    b = _as_map(explain(x, jnp.asarray(other)), channel_axis)
    return SIMILARITIES[similarity](a, b)
