"""Feature ablation with the prefix reused: switching off a feature that starts at position ``j``
changes nothing before ``j`` in a causal model, so only positions ``j..n`` are recomputed.

The unchanged sequence runs once (every layer's values kept); each ablation then runs the
model on the rows from its bucket's start on (:func:`xai_core.graph.incremental.incremental`
with ``causal=True``: dense layers on those rows, attention of those rows against all keys,
the keys and values before them read from the unchanged pass, as a KV cache would give them).
Shapes are static, so the prompt is cut into ``BUCKETS`` buckets of start positions, each one
program over the rows from its start; on average about ``(B + 1) / 2B`` of the work.

A model whose attention is written so that the rule does not apply (a ``dot_general`` of two
changed values whose first operand is not the query side) would get wrong rows; so two
ablations (the middle feature's and the last one's) are also computed densely in the same
program, and :func:`prefix_ablation` reports whether they agree (the caller then falls back
to the dense program).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from xai_core.core.chunking import CPU_FORWARD_CHUNK, chunked_map
from xai_core.graph.incremental import incremental

BUCKETS = 8
"""Buckets of start positions (one compiled branch each): 8 recompute about 56% of the rows."""
TOLERANCE = 1e-4


def prefix_ablation(fn: Callable[[jax.Array], jax.Array], full: jax.Array, e: jax.Array, e0: jax.Array,
                    owner: jax.Array, k: int, prompt: int) -> tuple[jax.Array, jax.Array]:
    """``full - fn(e with feature f's rows from e0)`` for each feature ``f < k`` (``full = fn(e)``;
    ``owner``: each row's feature, ``-1`` for none; features lie in the first ``prompt`` rows),
    ``(k, ...)``, and whether the dense checks of two ablations agreed."""
    changed = incremental(fn, e, causal=True)
    n = e.shape[0]
    starts = [*bucket_starts(prompt), prompt]

    def off(q: jax.Array, start: int) -> jax.Array:
        rows = jax.lax.dynamic_slice_in_dim(owner, start, n - start) == owner[q]
        patch = jnp.where(rows[:, None], e0[start:], e[start:])
        return changed([start, 0], patch)

    values = jnp.concatenate([
        chunked_map(lambda i, s=s: off(s + i, s), stop - s, CPU_FORWARD_CHUNK)
        for s, stop in zip(starts[:-1], starts[1:])])
    first = jnp.argmax(owner[None, :prompt] == jnp.arange(k)[:, None], axis=1)  # each feature's first row
    attr = full[None] - values[first]
    agree = jnp.array(True)
    for probe in (first[k // 2], jnp.max(first)):  # the smallest box is the likeliest to show wrong rows
        dense = fn(jnp.where((owner == owner[probe])[:, None], e0, e))
        agree &= jnp.all(jnp.abs(dense - values[probe]) <= TOLERANCE * (1 + jnp.abs(dense)))
    return attr, agree


def bucket_starts(prompt: int) -> list[int]:
    """The buckets' first start positions for a prompt of ``prompt`` tokens."""
    b = min(BUCKETS, prompt)
    return sorted({i * prompt // b for i in range(b)})
