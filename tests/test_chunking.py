"""chunked_sum: the bounded-memory reduction every multi-evaluation method uses."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xai_core.core.chunking import chunked_sum


@pytest.mark.parametrize("n, batch_size", [(10, None), (10, 1), (10, 3), (10, 4), (10, 10), (10, 64), (7, 2)])
def test_chunked_sum_equals_python_sum(n: int, batch_size: int | None) -> None:
    term = lambda i: (jnp.float32(i) * jnp.ones(3), {"sq": jnp.float32(i) ** 2})  # noqa: E731
    vec, tree = chunked_sum(term, n, batch_size)
    np.testing.assert_allclose(vec, np.full(3, sum(range(n))))
    np.testing.assert_allclose(tree["sq"], sum(i * i for i in range(n)))


def test_bfloat16_terms_accumulate_in_float32() -> None:
    # 256 + 1 is not representable in bfloat16; a bfloat16 running sum would stall at 256.
    total = chunked_sum(lambda i: jnp.bfloat16(1.0), 300, batch_size=16)
    assert total.dtype == jnp.float32 and float(total) == 300.0


def test_chunking_bounds_the_batch_the_term_sees() -> None:
    jaxpr = str(jax.make_jaxpr(lambda: chunked_sum(lambda i: jnp.float32(i) * jnp.ones(5), 100, 8))())
    assert "length=13" in jaxpr  # 13 chunks of ceil(100 / 13) = 8 terms each
    assert "f32[8,5]" in jaxpr and "f32[100,5]" not in jaxpr


def _convs(jaxpr: Any) -> list[Any]:
    """Every conv_general_dilated equation, nested bodies (scan, jit) included."""
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "conv_general_dilated":
            found.append(eqn)
        for value in eqn.params.values():
            inner = getattr(value, "jaxpr", value)
            if hasattr(inner, "eqns"):
                found += _convs(inner)
    return found


@pytest.mark.parametrize("batch_size", [None, 2])
def test_every_convolution_in_the_chunk_body_runs_channels_last(batch_size: int | None) -> None:
    # An NCHW model's gradient: the backward convolution JAX writes has its kernel's
    # features swapped (OI order), which XLA:CPU ran on a slow path inside the loop.
    w = jax.random.normal(jax.random.key(0), (4, 3, 3, 3))
    score = lambda x: jnp.sum(jax.lax.conv(x[None], w, (1, 1), "SAME") ** 2)  # noqa: E731
    x = jax.random.normal(jax.random.key(1), (3, 6, 6))
    term = lambda i: jax.grad(score)(x * (i + 1.0) / 5)  # noqa: E731
    convs = _convs(jax.make_jaxpr(lambda: chunked_sum(term, 5, batch_size))().jaxpr)
    assert len(convs) == 2  # forward and backward (input gradient)
    for eqn in convs:
        lhs, rhs, out = eqn.params["dimension_numbers"]
        assert (lhs, rhs, out) == ((0, 3, 1, 2), (3, 2, 0, 1), (0, 3, 1, 2)), eqn  # NHWC, HWIO, NHWC
    expected = sum(term(i) for i in range(5))
    np.testing.assert_allclose(chunked_sum(term, 5, batch_size), expected, rtol=1e-5)


def test_max_pool_gradients_in_the_chunk_body_are_dense() -> None:
    # XLA:CPU's select_and_scatter (max pooling's gradient) is replaced by elementwise work.
    pool = lambda x: jnp.sum(jax.lax.reduce_window(  # noqa: E731
        jnp.maximum(x, 0), -jnp.inf, jax.lax.max, (1, 3, 3), (1, 2, 2), ((0, 0), (1, 1), (1, 1))) ** 2)
    x = jax.random.normal(jax.random.key(2), (2, 7, 7))
    term = lambda i: jax.grad(pool)(x * (i - 1.0))  # noqa: E731  (i = 1: all zeros, every window ties)
    jaxpr = jax.make_jaxpr(lambda: chunked_sum(term, 5, 2))().jaxpr
    assert "select_and_scatter_add" not in str(jaxpr)
    expected = sum(term(i) for i in range(5))
    np.testing.assert_allclose(chunked_sum(term, 5, 2), expected, rtol=1e-6)


def test_chunked_sum_keeps_forward_and_reverse_derivatives() -> None:
    # The channels-last rewrite re-traces the chunk body; derivatives through it stay exact.
    w = jax.random.normal(jax.random.key(0), (2, 3, 3, 3))
    f = lambda x: chunked_sum(lambda i: jnp.sum(jnp.tanh(jax.lax.conv(x[None] * i, w, (1, 1), "SAME"))), 4, 3)  # noqa: E731
    plain = lambda x: sum(jnp.sum(jnp.tanh(jax.lax.conv(x[None] * i, w, (1, 1), "SAME"))) for i in range(4))  # noqa: E731
    x, v = jax.random.normal(jax.random.key(1), (2, 3, 5, 5))
    np.testing.assert_allclose(jax.grad(f)(x), jax.grad(plain)(x), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(jax.jvp(f, (x,), (v,))[1], jax.jvp(plain, (x,), (v,))[1], rtol=1e-5)
