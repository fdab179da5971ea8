"""Prompts and outputs as one padded batch, scored teacher-forced, and greedy generation.

A causal language model ``m`` (a :class:`xai_core.adapters.TextModel` whose logits are
``(tokens, vocab)``) reads ``prompt + output`` once: the logits at position ``P - 1 + i`` score
output token ``i`` (``P`` prompt tokens), so one forward pass scores every output token, as
Captum's ``LLMAttribution(forward_in_tokens=False)`` does. Sequences of different lengths are
padded on the right (a causal model never reads a later position), so a batch equals its
examples one by one.

Scores of output token ``i`` with logits ``z`` (``SCORES``):

- ``"log_prob"``: ``log softmax(z)[t_i]``; the whole output's score is their sum (Captum's default);
- ``"prob"``: ``softmax(z)[t_i]``; the whole output's score is their product (Captum's ``"prob"``);
- ``"logit"``: ``z[t_i]``; the whole output's score is their sum;
- ``"contrast"``: ``log p(t_i) - log p(foil_i)`` (inseq's contrastive attribution); summed;
- a callable ``score(z, t_i, foil_i) -> scalar``; summed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from xai_core.adapters import TextModel
from xai_core.core.inputs import fixed

SCORES = ("log_prob", "prob", "logit", "contrast")
Score = str | Callable[[jax.Array, jax.Array, jax.Array], jax.Array]


@dataclass(frozen=True)
class Batch:
    """Prompts and outputs padded to one length ``n`` (host arrays, one row per example)."""

    ids: np.ndarray       # (B, n) prompt + output + padding
    prompt: np.ndarray    # (B,) prompt lengths
    targets: np.ndarray   # (B, T) output ids, padded with 0
    foils: np.ndarray     # (B, T) foil ids (contrast), else 0
    valid: np.ndarray     # (B, T) which output slots are real

    def rows(self, take: Sequence[int]) -> dict[str, jax.Array]:
        """The per-example arrays of examples ``take``, to map over with ``jax.vmap``."""
        return {name: jnp.asarray(getattr(self, name)[np.asarray(take)])
                for name in ("ids", "prompt", "targets", "foils", "valid")}


def as_ids(tokens: Any, what: str) -> list[int]:
    """A 1-D sequence of token ids as a list of ints, or a clear error."""
    a = np.asarray(tokens)
    if a.ndim == 2 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 1 or not (np.issubdtype(a.dtype, np.integer) or a.size == 0):
        raise ValueError(f"xc.lm: {what} must be a 1-D sequence of integer token ids, got shape {a.shape} "
                         f"and dtype {a.dtype}; tokenize text first (tokenizer.encode(text)).")
    return [int(t) for t in a]


def check_model(m: Any) -> None:
    """``m`` must be a text model (token ids in); causality is checked on the first sequence."""
    if not isinstance(m, TextModel):
        raise TypeError(f"xc.lm needs a text model given token ids (from_torch(model, {{'input_ids': ids, ...}}), "
                        f"from_keras, from_flax or TextModel), got {type(m).__name__}.")


def batch(m: TextModel, prompts: Sequence[list[int]], targets: Sequence[list[int]], foil: Any,
          context: int | None) -> Batch:
    """Pad prompts and outputs into one :class:`Batch`, after the checks every call needs."""
    limit = m.context if context is None else context
    for p, t in zip(prompts, targets):
        if not p:
            raise ValueError("xc.lm: an empty prompt; give at least one prompt token (a BOS token, for one).")
        if not t:
            raise ValueError("xc.lm: an empty output; give target_ids, or max_new_tokens >= 1 to generate one.")
        if limit is not None and len(p) + len(t) > limit:
            raise ValueError(f"xc.lm: prompt ({len(p)} tokens) plus output ({len(t)}) is {len(p) + len(t)} tokens, "
                             f"past the model's context of {limit}; shorten the prompt or the output.")
    b, n, most = len(prompts), max(len(p) + len(t) for p, t in zip(prompts, targets)), max(map(len, targets))
    ids = np.full((b, n), m.pad_id, np.int32)
    tgt, foils, valid = (np.zeros((b, most), np.int32) for _ in range(3))
    for row, (p, t) in enumerate(zip(prompts, targets)):
        ids[row, :len(p) + len(t)] = p + t
        tgt[row, :len(t)], valid[row, :len(t)] = t, 1
        if foil is not None:
            f = np.broadcast_to(np.asarray(foil), (len(t),)) if np.ndim(foil) == 0 or len(foil) == len(t) else None
            if f is None:
                raise ValueError(f"xc.lm: foil must be one id or one per output token ({len(t)}), got {len(foil)}.")
            foils[row, :len(t)] = f
    return Batch(ids, np.array([len(p) for p in prompts], np.int32), tgt, foils, valid.astype(bool))


def output_logits(m: TextModel, embeddings: jax.Array, row: dict[str, jax.Array]) -> jax.Array:
    """The logits that score each output slot, ``(T, vocab)``, given the sequence's embeddings."""
    z = m.logits({"embeddings": embeddings, "inputs": fixed(m.from_ids(row["ids"]))})
    _check_per_token(m, z.shape)
    at = jnp.clip(row["prompt"] - 1 + jnp.arange(row["targets"].shape[0]), 0, z.shape[0] - 1)
    return z[at]


def _check_per_token(m: TextModel, shape: tuple[int, ...]) -> None:
    """One sequence's logits must be ``(tokens, vocab)``."""
    if len(shape) != 2:
        raise ValueError(f"xc.lm: {m.name} returns logits of shape {tuple(shape)} per sequence; a causal "
                         "language model returns (tokens, vocab). Pass a *ForCausalLM (an LM head), not a classifier.")


def token_scores(z: jax.Array, row: dict[str, jax.Array], score: Score) -> jax.Array:
    """Each output slot's score from its logits ``z`` ``(T, vocab)``; 0 on padding slots
    (so sums and products over the output ignore them)."""
    t, f = row["targets"], row["foils"]
    z = z.astype(jnp.promote_types(z.dtype, jnp.float32))
    logp = jax.nn.log_softmax(z, axis=-1)
    pick = jax.vmap(lambda v, i: v[i])
    if callable(score):
        s = jax.vmap(score)(z, t, f)
    else:
        s = {"log_prob": lambda: pick(logp, t), "prob": lambda: pick(logp, t), "logit": lambda: pick(z, t),
             "contrast": lambda: pick(logp, t) - pick(logp, f)}[score]()
    return jnp.where(row["valid"], s, 0.0)


def scores(m: TextModel, embeddings: jax.Array, row: dict[str, jax.Array], score: Score) -> jax.Array:
    """``[whole output's score, score of output token 0, 1, ...]`` (Captum's order), ``(1 + T,)``."""
    s = token_scores(output_logits(m, embeddings, row), row, score)
    if score == "prob":
        return jnp.exp(jnp.concatenate([s.sum()[None], s]))
    return jnp.concatenate([s.sum()[None], s])


_logits = jax.jit(jax.vmap(lambda m, ids: m.logits(m.inputs(m.from_ids(ids))), in_axes=(None, 0)))


def check_causal(m: TextModel, ids: np.ndarray) -> None:
    """Change the last token: a causal model's logits before it stay the same."""
    other = ids.copy()
    other[-1] = (other[-1] + 1) % max(2, int(ids.max()) + 2)
    z = _logits(m, jnp.asarray(np.stack([ids, other])))
    _check_per_token(m, z.shape[1:])
    if len(ids) > 1 and not np.allclose(z[0, :-1], z[1, :-1], rtol=1e-3, atol=1e-4 * float(jnp.abs(z[0]).max())):
        raise ValueError(f"xc.lm: {m.name} is not causal: changing the last token changed the logits before it. "
                         "xc.lm explains decoder-only (causal) language models; an encoder reads both ways.")


@partial(jax.jit, static_argnums=3)
def _greedy(m: TextModel, ids: jax.Array, starts: jax.Array, new: int) -> jax.Array:
    """``new`` greedy steps on each row of ``ids`` from its ``start``."""

    def one(ids: jax.Array, start: jax.Array) -> jax.Array:
        def step(i: int, ids: jax.Array) -> jax.Array:
            z = m.logits(m.inputs(m.from_ids(ids)))
            return ids.at[start + i].set(jnp.argmax(z[start + i - 1]).astype(ids.dtype))

        return jax.lax.fori_loop(0, new, step, ids)

    return jax.vmap(one)(ids, starts)


def generate(m: TextModel, prompts: Sequence[Sequence[int]], max_new_tokens: int = 16,
             eos_token: int | None = None) -> list[list[int]]:
    """Greedy decoding (argmax, as HuggingFace's ``generate(do_sample=False)``) of every prompt,
    as one padded batch in one compiled program; each output stops after ``eos_token`` if given.

    The adapters' models have no key-value cache, so each of the ``max_new_tokens`` steps runs
    the model over the whole padded buffer (causal, so later slots never change earlier ones).
    """
    prompts = [as_ids(p, "prompt_ids") for p in prompts]
    if not all(prompts):
        raise ValueError("xc.lm.generate: an empty prompt; give at least one prompt token.")
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"xc.lm.generate: max_new_tokens must be a positive int, got {max_new_tokens!r}.")
    b = batch(m, prompts, [[0] * max_new_tokens] * len(prompts), None, None)
    out = np.asarray(_greedy(m, jnp.asarray(b.ids), jnp.asarray(b.prompt), max_new_tokens))
    result = []
    for row, p in enumerate(prompts):
        new = out[row, len(p):len(p) + max_new_tokens].tolist()
        if eos_token is not None and eos_token in new:
            new = new[:new.index(eos_token) + 1]
        result.append(new)
    return result
