"""chunked_sum: the bounded-memory reduction every multi-evaluation method uses."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xai_core._chunking import chunked_sum


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
