"""Shapes of one example for :class:`xai_core.adapters.Model`: one array or a pytree of them,
checked, formatted for messages, and the weights' signature (structure, shapes, dtypes)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from xai_core.core.inputs import Fixed


def _spec(leaf: Any) -> jax.ShapeDtypeStruct:
    aval = jax.typeof(leaf)
    return jax.ShapeDtypeStruct(aval.shape, aval.dtype, weak_type=getattr(aval, "weak_type", False))


def _signature(params: Any) -> tuple[Any, tuple[tuple[tuple[int, ...], str], ...]]:
    leaves, treedef = jax.tree.flatten(params)
    return treedef, tuple((tuple(s.shape), str(s.dtype)) for s in map(_spec, leaves))


def _fmt_shape(shape: Sequence[int | None]) -> str:
    return "(" + ", ".join("*" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def _is_shape(s: Any) -> bool:
    return isinstance(s, tuple) and all(d is None or isinstance(d, (int, np.integer)) for d in s)


def _shapes(x: Any) -> Any:
    """The shape of every array leaf of ``x``, in ``x``'s structure."""
    return jax.tree.map(lambda a: tuple(jnp.shape(a)), x)


def _as_input(x: Any) -> Any:
    """Every leaf of ``x`` as a JAX array (tracers and ``ShapeDtypeStruct``s stay as they are),
    inputs marked :func:`xai_core.fixed` unwrapped."""
    x = jax.tree.map(lambda a: a.value if isinstance(a, Fixed) else a, x, is_leaf=lambda a: isinstance(a, Fixed))
    return jax.tree.map(lambda a: a if isinstance(a, (jax.Array, jax.ShapeDtypeStruct)) else jnp.asarray(a), x)


def _fmt_shapes(shapes: Any) -> str:
    """One shape as ``(3, 32, 32)``, a pytree of them as its structure with shapes inside."""
    if _is_shape(shapes):
        return _fmt_shape(shapes)
    return str(jax.tree.map(_fmt_shape, shapes, is_leaf=_is_shape)).replace("'", "")
