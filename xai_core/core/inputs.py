"""Inputs of several arrays: any pytree as ``x``, and inputs marked as fixed.

Every method takes ``x`` as one array or as any pytree of arrays (a tuple of image and
metadata, a dict of named inputs) and returns attributions of the same structure, each leaf
with its input's shape and dtype. A leaf wrapped in :func:`fixed` (an attention mask, token
ids, a segment map) is passed to the score function as it is but never attributed: it gets
no noise, no path, no occlusion, and its place in the result is ``None``.

Example:
    >>> import jax.numpy as jnp, xai_core as xc
    >>> f = lambda x: jnp.sum(x["image"] * x["mask"]) + 2.0 * x["bias"]
    >>> x = {"image": jnp.ones(3), "mask": xc.fixed(jnp.array([1.0, 0.0, 1.0])), "bias": jnp.array(1.0)}
    >>> a = xc.gradient(f)(x)
    >>> a["image"].tolist(), a["mask"], float(a["bias"])
    ([1.0, 0.0, 1.0], None, 2.0)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp

from xai_core.core.checks import check_baseline, check_input

__all__ = ["Fixed", "fixed"]


@jax.tree_util.register_pytree_node_class
@dataclass(frozen=True)
class Fixed:
    """An input the score function reads but that is not attributed (see :func:`fixed`)."""

    value: Any

    def tree_flatten(self) -> tuple[tuple[Any], None]:
        return (self.value,), None

    @classmethod
    def tree_unflatten(cls, _: None, children: Sequence[Any]) -> Fixed:
        return cls(children[0])


def fixed(value: Any) -> Fixed:
    """Mark ``value`` (an array or pytree of arrays, any dtype) as a fixed input.

    Inside ``x`` it reaches the score function unchanged (unwrapped) and gets ``None`` as
    its attribution. It may be traced, so per-example masks work under ``jax.vmap``.
    """
    return Fixed(value)


def _is_fixed(node: Any) -> bool:
    return isinstance(node, Fixed)


@dataclass(frozen=True)
class Inputs:
    """``x`` split into the leaves to attribute and the rest.

    ``leaves`` are the attributed arrays (in ``jax.tree.leaves`` order); ``score_input``
    rebuilds what the score function is called with from new values of those leaves (fixed
    inputs unwrapped), ``noisy`` rebuilds ``x`` itself (fixed inputs still marked, for
    wrapped attribution functions), and ``result`` rebuilds the output structure from one
    array per attributed leaf (``None`` where the input is fixed).
    """

    leaves: list[jax.Array]
    treedef: Any                      # structure of x with each Fixed node as one leaf
    slots: list[Any]                  # per outer leaf: the Fixed node, or None (attributed)
    single: bool                      # x is one array (not a container)

    def _fill(self, leaves: Sequence[Any], fixed_as: Callable[[Fixed], Any]) -> Any:
        it = iter(leaves)
        return self.treedef.unflatten([next(it) if s is None else fixed_as(s) for s in self.slots])

    def score_input(self, leaves: Sequence[Any]) -> Any:
        return self._fill(leaves, lambda f: f.value)

    def noisy(self, leaves: Sequence[Any]) -> Any:
        return self._fill(leaves, lambda f: f)

    def result(self, leaves: Sequence[Any]) -> Any:
        return self._fill(leaves, lambda f: None)

    def per_leaf(self, value: Any, what: str, method: str) -> list[Any]:
        """``value`` for each attributed leaf: a pytree of x's structure (entries at fixed
        inputs ignored), or one value used for every leaf: an array, a number, ``None`` or
        a tuple of ints (a window shape)."""
        one = value is None or jax.tree.structure(value).num_nodes == 1 or (
            isinstance(value, (tuple, list)) and all(isinstance(v, int) for v in value))
        if self.single or one:
            return [value] * len(self.leaves)
        try:
            outer = self.treedef.flatten_up_to(value)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{method}: {what} must have the structure of x ({self.treedef}), or be "
                             f"one value for every input; got {jax.tree.structure(value)}.") from e
        return [v for v, s in zip(outer, self.slots) if s is None]


def split_inputs(x: Any, method: str) -> Inputs:
    """Split ``x`` into attributed leaves (checked: floating point, finite) and fixed ones."""
    outer, treedef = jax.tree_util.tree_flatten_with_path(x, is_leaf=_is_fixed)
    if not outer:
        raise ValueError(f"{method}: x holds no arrays (got {x!r}); pass an array or a pytree of arrays.")
    slots = [node if _is_fixed(node) else None for _, node in outer]
    attributed = [(path, n) for path, n in outer if not _is_fixed(n)]
    if not attributed:
        raise ValueError(f"{method}: every input of x is marked fixed, so there is nothing to "
                         "attribute; leave at least one array unwrapped.")
    single = treedef.num_leaves == 1 and treedef.num_nodes == 1
    checked = [check_input(a, method, where="" if single else jax.tree_util.keystr(path))
               for path, a in attributed]
    return Inputs(checked, treedef, slots, single)


def tree_sum(leaves: Sequence[jax.Array], dtype: Any) -> jax.Array:
    """Sum of every element of every leaf, in ``dtype``."""
    return sum((jnp.sum(a.astype(dtype)) for a in leaves), jnp.zeros((), dtype))


def baselines(inputs: Inputs, baseline: Any, method: str) -> list[jax.Array]:
    """One baseline per attributed leaf: ``None`` (zeros), one value for every input, or a
    pytree of ``x``'s structure (entries at fixed inputs ignored)."""
    values = inputs.per_leaf(baseline, "baseline", method)
    return [check_baseline(b, a, method) for b, a in zip(values, inputs.leaves)]
