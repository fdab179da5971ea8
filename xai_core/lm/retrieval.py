"""A retrieval task whose evidence is known, for language-model attribution (as the shapes
data's masks are for images): the prompt lists key-value pairs, then asks for one key's value.

``BOS k3 v7 k1 v2 k5 v0 k6 v4 SEP k3`` -> ``v7``: the answer is read from the pair ``k3 v7``
(the evidence), so a good attribution puts its mass on those two tokens (and the query).
:func:`evidence_share` measures that share for each method.

:func:`decoder` is a small causal transformer in plain JAX (a :class:`~xai_core.adapters.TextModel`),
and :func:`train_retrieval` trains it on the task with optax in seconds.

Example:
    >>> from xai_core.lm.retrieval import Retrieval
    >>> task = Retrieval(keys=8, pairs=4)
    >>> prompts, answers, evidence = task.sample(2, seed=0)
    >>> prompts.shape, answers.shape, evidence.shape, task.vocab
    ((2, 11), (2,), (2, 2), 19)
    >>> task.convert_ids_to_tokens([1, 3, 11, 2])
    ['BOS', 'k0', 'v0', 'SEP']
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from xai_core.adapters import TextModel
from xai_core.graph import mark

PAD, BOS, SEP = 0, 1, 2
HEADS = 4  # attention heads of the decoder


@dataclass(frozen=True)
class Retrieval:
    """Token ids: ``PAD`` 0, ``BOS`` 1, ``SEP`` 2, keys ``3 .. 3+keys-1``, values after them."""

    keys: int = 8
    pairs: int = 4

    @property
    def vocab(self) -> int:
        return 3 + 2 * self.keys

    def key(self, k: int) -> int:
        return 3 + k

    def value(self, v: int) -> int:
        return 3 + self.keys + v

    def convert_ids_to_tokens(self, ids: Any) -> list[str]:
        """Token names (``PAD``, ``BOS``, ``SEP``, ``k0``.., ``v0``..): the task is its own
        tokenizer, e.g. ``xc.lm.attribute(..., tokenizer=task)``."""
        special = {PAD: "PAD", BOS: "BOS", SEP: "SEP"}
        return [special.get(int(t)) or (f"k{int(t) - 3}" if int(t) < 3 + self.keys else f"v{int(t) - 3 - self.keys}")
                for t in np.asarray(ids).ravel()]

    def training_batch(self, n: int, seed: int) -> np.ndarray:
        """``n`` prompts followed by their answer and then every pair asked again in a random
        order (``... SEP k v k' v' ...``): more supervised positions per sequence."""
        prompts, answers, _ = self.sample(n, seed)
        pairs = prompts[:, 1:1 + 2 * self.pairs].reshape(n, self.pairs, 2)
        order = np.argsort(np.random.default_rng(seed).random((n, self.pairs)), 1)
        again = pairs[np.arange(n)[:, None], order].reshape(n, -1)
        return np.concatenate([prompts, answers[:, None], again], 1)

    def sample(self, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``n`` prompts ``(n, 2 * pairs + 3)``, their answers ``(n,)`` and the positions of the
        evidence pair (key, value) ``(n, 2)``. Keys in a prompt are distinct; values are random."""
        if not 1 <= self.pairs <= self.keys:
            raise ValueError(f"Retrieval: pairs={self.pairs} must be in 1..keys={self.keys}.")
        rng = np.random.default_rng(seed)
        keys = np.argsort(rng.random((n, self.keys)), axis=1)[:, :self.pairs]
        values = rng.integers(0, self.keys, (n, self.pairs))
        asked = rng.integers(0, self.pairs, n)
        body = np.stack([self.key(keys), self.value(values)], -1).reshape(n, 2 * self.pairs)
        rows = np.arange(n)
        prompts = np.concatenate([np.full((n, 1), BOS), body, np.full((n, 1), SEP),
                                  self.key(keys[rows, asked])[:, None]], 1).astype(np.int32)
        evidence = np.stack([1 + 2 * asked, 2 + 2 * asked], 1)
        return prompts, self.value(values[rows, asked]).astype(np.int32), evidence


def evidence_share(token_attr: np.ndarray, evidence: np.ndarray) -> float:
    """The share of ``|attribution|`` on the evidence positions, ``sum |a[evidence]| / sum |a|``,
    for one output token's row (or the mean over rows)."""
    a = np.abs(np.atleast_2d(np.asarray(token_attr, np.float64)))
    total = a.sum(-1)
    return float(np.mean(np.where(total > 0, a[:, evidence].sum(-1) / np.where(total > 0, total, 1), 0.0)))


def _norm(x: jax.Array, w: jax.Array) -> jax.Array:
    return x * jax.lax.rsqrt(jnp.mean(x * x, -1, keepdims=True) + 1e-6) * w


def _forward(p: dict[str, Any], e: jax.Array, heads: int) -> jax.Array:
    """Logits ``(L, vocab)`` from token embeddings ``e`` ``(L, D)``: learned positions, pre-norm
    blocks of causal softmax attention and a ReLU MLP, a final norm and an untied head."""
    n, d = e.shape
    h = e + p["pos"][:n]
    causal = jnp.tril(jnp.ones((n, n), bool))
    for b in p["blocks"]:
        x = _norm(h, b["ln1"])
        q, k, v = (jnp.reshape(x @ b[w], (n, heads, d // heads)) for w in ("wq", "wk", "wv"))
        s = jnp.einsum("qhd,khd->hqk", q, k) / np.sqrt(d // heads)
        a = jax.nn.softmax(jnp.where(causal, s, -1e9), axis=-1)
        h = h + jnp.einsum("hqk,khd->qhd", a, v).reshape(n, d) @ b["wo"]
        h = h + jax.nn.relu(_norm(h, b["ln2"]) @ b["w1"]) @ b["w2"]
    return _norm(h, p["lnf"]) @ p["head"]


def init_decoder(key: Any, vocab: int, width: int = 64, layers: int = 2, context: int = 32) -> dict[str, Any]:
    """Random weights of :func:`decoder` (normal, scaled by fan-in)."""
    keys = iter(jax.random.split(key, 3 + 6 * layers))

    def dense(n: int, m: int) -> jax.Array:
        return jax.random.normal(next(keys), (n, m)) / np.sqrt(n)

    blocks = [{"ln1": jnp.ones(width), "ln2": jnp.ones(width), "wq": dense(width, width), "wk": dense(width, width),
               "wv": dense(width, width), "wo": dense(width, width), "w1": dense(width, 2 * width),
               "w2": dense(2 * width, width)} for _ in range(layers)]
    return {"embed": jax.random.normal(next(keys), (vocab, width)),
            "pos": 0.1 * jax.random.normal(next(keys), (context, width)),
            "blocks": blocks, "lnf": jnp.ones(width), "head": dense(width, vocab)}


def decoder(params: dict[str, Any], heads: int = HEADS) -> TextModel:
    """The causal decoder of ``params`` as a text model: token ids ``(L,)`` in, logits
    ``(L, vocab)`` out, explained on the token embeddings (layer ``"embed"``)."""

    def apply_ids(p: dict[str, Any], ids: jax.Array) -> jax.Array:
        return _forward(p, mark(p["embed"][ids], "embed"), heads)

    def apply_text(p: dict[str, Any], x: dict[str, Any]) -> jax.Array:
        return _forward(p, x["embeddings"], heads)

    context = params["pos"].shape[0]
    return TextModel(apply_text, apply_ids, params, embedding="embed", example=jnp.zeros(context, jnp.int32),
                     pad_id=PAD, context=context, name="retrieval-decoder")


def train_retrieval(task: Retrieval = Retrieval(8, 3), seed: int = 0, steps: int = 4000, batch: int = 64,
                    accuracy: float = 0.97, verbose: bool = False) -> tuple[TextModel, float]:
    """Train :func:`decoder` on ``task`` with Adam until its answers are ``accuracy`` right on
    held-out prompts (checked every 100 steps) or ``steps`` run out; returns the model and the
    accuracy it reached. About 2,000 steps, well under a minute on two CPU cores."""
    params = init_decoder(jax.random.key(seed), task.vocab)
    opt = optax.adam(3e-3)
    prompt_len = 2 * task.pairs + 2
    asked = np.array([prompt_len] + [prompt_len + 2 + 2 * i for i in range(task.pairs)])

    def loss(p: dict[str, Any], ids: jax.Array) -> jax.Array:
        logits = jax.vmap(lambda s: _forward(p, p["embed"][s], HEADS))(ids)[:, asked]
        return optax.softmax_cross_entropy_with_integer_labels(logits, ids[:, asked + 1]).mean()

    @jax.jit
    def step(p: dict[str, Any], state: Any, ids: jax.Array) -> tuple[dict[str, Any], Any]:
        grads = jax.grad(loss)(p, ids)
        updates, state = opt.update(grads, state, p)
        return optax.apply_updates(p, updates), state

    held_out, answers, _ = task.sample(512, seed=10**6 + seed)
    predict = jax.jit(lambda p, ids: jax.vmap(lambda s: _forward(p, p["embed"][s], HEADS)[-1].argmax())(ids))
    state, start, acc = opt.init(params), time.time(), 0.0
    for i in range(1, steps + 1):
        params, state = step(params, state, jnp.asarray(task.training_batch(batch, seed=seed * 10**6 + i)))
        if i % 100 == 0:
            acc = float((np.asarray(predict(params, jnp.asarray(held_out))) == answers).mean())
            if verbose:
                print(f"step {i}: accuracy {acc:.3f} ({time.time() - start:.1f} s)")
            if acc >= accuracy:
                break
    return decoder(params), acc
