"""RISE: randomized input sampling for explanation.

Petsiuk, Das & Saenko, "RISE: Randomized Input Sampling for Explanation of Black-box Models",
BMVC 2018. Each of ``N`` masks keeps a random ``grid x grid`` set of cells (probability ``p``),
upsampled bilinearly to ``(grid + 1)`` cells' size and cropped at a random shift, so masks are
smooth and not aligned to the cells; the saliency is the score-weighted mean mask,
``a = sum_i f(x * M_i) M_i / (N p)``. All masks are drawn and evaluated in one program.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from xai_core.core.checks import (
    ScoreFn,
    check_batch_size,
    check_positive_int,
    checked_score,
)
from xai_core.core.chunking import (
    CPU_FORWARD_CHUNK,
    DEFAULT_BATCH_SIZE,
    FORWARD_ELEMENTS_PER_CORE,
    accumulation_dtype,
    chunked_sum,
    resolve_batch_size,
)
from xai_core.core.inputs import baselines as leaf_baselines
from xai_core.core.inputs import split_inputs


def rise(score_fn: ScoreFn, samples: int = 2000, grid: int = 7, p: float = 0.5, channel_axis: int | None = -1,
         baseline: Any = 0.0, batch_size: int | str | None = DEFAULT_BATCH_SIZE) -> Callable[..., Any]:
    """RISE saliency of one array ``x`` (see the module doc); a mask multiplies every axis except
    ``channel_axis`` (``None``: no channel axis) and off pixels take ``baseline`` (the paper's 0).
    The map is the same on every channel, so the attribution has ``x``'s shape.

    >>> import jax, jax.numpy as jnp, xai_core as xc
    >>> f = lambda x: x[:4, :4].sum()  # only the top-left corner counts
    >>> a = xc.rise(f, samples=256, grid=4)(jnp.ones((8, 8, 1)), key=jax.random.key(0))
    >>> bool(a[:4, :4].mean() > a[4:, 4:].mean())
    True
    """
    score = checked_score(score_fn, "rise")
    n = check_positive_int(samples, "samples", "rise")
    cells = check_positive_int(grid, "grid", "rise")
    batch_size = check_batch_size(batch_size, "rise")
    if not 0 < p <= 1:
        raise ValueError(f"rise: p is the probability of keeping a cell, in (0, 1]; got {p!r}.")

    def attribution(x: Any, *, key: Any = None) -> Any:
        inputs = split_inputs(x, "rise")
        if len(inputs.leaves) != 1:
            raise ValueError("rise masks one image-like array; for several inputs use a feature_mask method "
                             "(kernel_shap, lime, shapley_sampling).")
        if key is None:
            raise ValueError("rise draws random masks and needs an explicit key: fn(x, key=jax.random.key(0)).")
        a, = inputs.leaves
        fill, = leaf_baselines(inputs, baseline, "rise")
        channel = None if channel_axis is None else channel_axis % a.ndim
        space = tuple(s for axis, s in enumerate(a.shape) if axis != channel)
        cell = tuple(math.ceil(s / cells) for s in space)
        acc = accumulation_dtype(a.dtype)

        def mask(i: jax.Array) -> jax.Array:
            keep_key, shift_key = jax.random.split(jax.random.fold_in(key, i))
            kept = jax.random.bernoulli(keep_key, p, (cells,) * len(space)).astype(acc)
            smooth = jax.image.resize(kept, tuple((cells + 1) * c for c in cell), "linear")
            shift = [jax.random.randint(k, (), 0, c) for k, c in zip(jax.random.split(shift_key, len(space)), cell)]
            return jax.lax.dynamic_slice(smooth, shift, space)

        def term(i: jax.Array) -> jax.Array:
            m = mask(i)
            full = m if channel is None else jnp.expand_dims(m, channel)
            return score(inputs.score_input([(a * full + fill * (1 - full)).astype(a.dtype)])).astype(acc) * m

        chunk = resolve_batch_size(batch_size, [a], FORWARD_ELEMENTS_PER_CORE, least=8, most=CPU_FORWARD_CHUNK)
        saliency = chunked_sum(term, n, chunk) / (n * p)
        full = saliency if channel is None else jnp.expand_dims(saliency, channel)
        return inputs.result([jnp.broadcast_to(full, a.shape).astype(a.dtype)])

    return attribution
