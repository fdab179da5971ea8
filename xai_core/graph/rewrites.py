"""Faster kernels by rewriting primitives with the shared interpreter: convolutions
channels-last (:func:`channels_last`), and also max / min pooling gradients as dense
elementwise work and box sums (average pooling and its gradient) one axis at a time
(:func:`fast_kernels`). Each replacement is a
:data:`~xai_core.graph.interpreter.Rule`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
from jax.extend.core import JaxprEqn

from xai_core.graph.interpreter import Rule, _bind, _interpret
from xai_core.graph.layout import _conv, _original, whole_program
from xai_core.graph.windows import box_sums, dense_pool_gradient


# --------------------------------------------------------------------------- #
# Layout: convolutions in channels-last order
# --------------------------------------------------------------------------- #

def _conv_channels_last(eqn: JaxprEqn, lhs: Any, rhs: Any) -> Any:
    """``eqn`` (a conv_general_dilated in any layout) computed channels-last: the input
    and kernel are transposed to NHWC / HWIO order, the result back to ``eqn``'s layout
    (the layout pass's convolution, :func:`xai_core.graph.layout._conv`, then back)."""
    return _original(*_conv(eqn, (lhs, None), (rhs, None)))


def _select_and_scatter_add_dense(eqn: JaxprEqn, source: Any, operand: Any) -> Any:
    """:func:`dense_pool_gradient` for a ``select_and_scatter_add`` equation, or the
    primitive itself where that does not apply."""
    out = dense_pool_gradient(eqn.params, source, operand)
    return _bind(eqn, [source, operand])[0] if out is None else out


def _reduce_window_sum_separable(eqn: JaxprEqn, operand: Any) -> Any:
    """A box sum (``reduce_window_sum``: average pooling, and its transpose) one axis at a time.

    A window is a product of per-axis ranges, so the sum over it is the sum over each axis in
    turn, each with that axis's stride, padding and dilations: ``sum_k w_k`` additions per
    output instead of ``prod_k w_k``. Equal up to the order of additions. The transpose of a
    4x4 adaptive average pool over 60x60 maps is a 16x16 window at stride 1 over the dilated
    cotangent; XLA:CPU ran the gradient with a per-example traced target 9x slower than with
    a static one, where the cotangent is the same for every example and summed once
    (``benchmarks/results/metrics-xeon2.json``'s floors)."""
    p = eqn.params
    if sum(w > 1 for w in p["window_dimensions"]) < 2:
        return _bind(eqn, [operand])[0]
    return box_sums(operand, p)


def _rewritten(fn: Callable[..., Any], rules: Mapping[str, Rule]) -> Callable[..., Any]:
    """``fn`` traced to a jaxpr and evaluated with ``rules`` (see :func:`_interpret`)."""
    def wrapped(*args: Any) -> Any:
        specs = jax.tree.map(lambda a: jax.ShapeDtypeStruct(jax.numpy.shape(a), jax.numpy.result_type(a)), args)
        closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(*specs)
        outs = _interpret(closed.jaxpr, closed.consts, jax.tree.leaves(args), inline=True, rules=rules)
        return jax.tree.unflatten(jax.tree.structure(out_shape), outs)

    return wrapped


def channels_last(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` with every convolution computed in channels-last (NHWC) order.

    Same values and gradients; only the layout the convolutions run in changes.
    XLA:CPU's fast convolutions are channels-last: it converts a channels-first
    (NCHW, torch's) convolution itself in a straight-line program, but not inside a
    loop body (``lax.scan``, which chunked methods use), where NCHW convolutions ran
    14x slower on a ResNet-18. The transposes this adds around each convolution
    cancel or fuse away in XLA.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from xai_core.graph import channels_last
        >>> conv = lambda x, w: jax.lax.conv(x, w, (1, 1), "SAME")  # NCHW / OIHW
        >>> x, w = jnp.ones((1, 2, 5, 5)), jnp.ones((3, 2, 3, 3))
        >>> bool(jnp.allclose(channels_last(conv)(x, w), conv(x, w)))
        True
    """
    return _rewritten(fn, {"conv_general_dilated": _conv_channels_last})


def fast_kernels(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` with the whole program channels-last (:mod:`xai_core.graph.layout`: every value
    kept in the layout its convolution wrote, transposes free), max / min pooling gradients
    computed as dense elementwise work instead of XLA's ``select_and_scatter``, and box sums
    (average pooling, forward and backward) one axis at a time.

    Same values and gradients (pooling gradients up to the order of additions where windows
    overlap). Chunked methods, the gradients and the rule methods run their differentiated
    program through it (``xai_core/core/chunking.py``); calls inside it are inlined, custom JVP
    rules included (their primal bodies), so apply it to a program that is already
    differentiated. The pooling gradient was XLA:CPU's slowest kernel in a ResNet-18 backward
    pass: 4.5x slower than the dense form, 4.8x slower than torch's; carrying the layout
    through made IG-16 on a torch ResNet-18 (two 224x224 images) 1.27x faster than only
    transposing around each convolution (1.36-1.38 s against 1.71-1.76 s).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from xai_core.graph import fast_kernels
        >>> pool = lambda x: jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (2, 2), (2, 2), "VALID").sum()
        >>> x = jnp.arange(16.0).reshape(4, 4)
        >>> bool(jnp.array_equal(fast_kernels(jax.grad(pool))(x), jax.grad(pool)(x)))
        True
    """
    return whole_program(fn, {"select_and_scatter_add": _select_and_scatter_add_dense,
                              "reduce_window_sum": _reduce_window_sum_separable})
