"""Per-token scores from attributions on token embeddings.

A text model is explained on its embeddings (``xai_core.adapters.TextModel``): the
attribution of one example has shape ``(tokens, width)``. One score per token is its
sum over the embedding axis (signed; for IG the token's share of ``f(x) - f(x0)``, so the
scores keep completeness) or its L2 norm (magnitude only, as in Captum's BERT tutorial's
normalised summaries).

Example:
    >>> import jax.numpy as jnp, xai_core as xc
    >>> a = jnp.array([[1.0, -3.0], [3.0, 4.0]])
    >>> xc.token_scores(a).tolist(), xc.token_scores(a, how="l2").tolist()
    ([-2.0, 7.0], [3.1622776985168457, 5.0])
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from xai_core.core.checks import check_choice

HOW = ("sum", "l2")


def token_scores(attribution: Any, how: str = "sum") -> jax.Array:
    """One score per token: ``sum_d a[..., t, d]`` (``how="sum"``) or ``||a[..., t, :]||_2``
    (``how="l2"``).

    ``attribution`` is the embeddings' attribution, ``(tokens, width)`` (or with leading
    batch axes), or a text model's whole attribution ``{"embeddings": ..., "inputs": None}``.
    """
    check_choice(how, HOW, "how", "token_scores")
    if isinstance(attribution, dict):
        if "embeddings" not in attribution:
            raise ValueError("token_scores: a dict attribution needs an 'embeddings' entry (what a text "
                             f"model's methods return); got keys {sorted(attribution)}.")
        attribution = attribution["embeddings"]
    a = jnp.asarray(attribution)
    if a.ndim < 2:
        raise ValueError(f"token_scores: expected attributions of shape (tokens, width), got shape "
                         f"{tuple(a.shape)}; these already look like one score per token.")
    acc = jnp.promote_types(a.dtype, jnp.float32)
    if how == "sum":
        return a.astype(acc).sum(-1)
    return jnp.sqrt(jnp.square(a.astype(acc)).sum(-1))
