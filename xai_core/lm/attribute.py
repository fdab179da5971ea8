"""Which prompt tokens caused each generated token: ``xc.lm.attribute``.

Every output token's score and the whole output's score (:mod:`xai_core.lm.sequences`) come
from one teacher-forced forward pass; a method then attributes all ``1 + T`` of them at once by
``jax.vmap`` over the output index. ``vmap`` batches only what depends on that index, so the
forward passes are shared: a gradient method runs one forward and one batched backward pass
(per IG step), a perturbation method evaluates each perturbation once for every output.

- Gradient methods (``gradient``, ``gradient_x_input``, ``ig``, ``smoothgrad``, ``lrp``) attribute the
  embedding layer's output, as Captum's ``LLMGradientAttribution(LayerIntegratedGradients)``:
  IG's baseline puts ``baseline_token``'s embedding at every attributed prompt position while
  the output tokens (and skipped tokens) keep their own. ``reduce`` sums (or takes the L2 norm
  of) each token's row; a segment of several tokens sums its tokens (L2: the root of the sum of
  squares).
- Perturbation methods (``feature_ablation``, ``shapley``, ``shapley_sampling``, ``kernel_shap``,
  ``lime``) play the coalition game of :mod:`xai_core.attribution.features` over segments, a
  segment switched off by putting ``baseline_token`` at its positions, as Captum's
  ``LLMAttribution`` with ``TextTokenInput(baselines=...)``.
"""

from __future__ import annotations

from collections.abc import Sequence
import dataclasses
import warnings
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from xai_core.core.checks import check_choice
from xai_core.lm import sequences as seqs
from xai_core.lm.prefix import prefix_ablation
from xai_core.lm.result import LMAttributionResult
from xai_core.lm.segments import Features, features
from xai_core.registry import attribute as attribute_x

GRADIENT = {"gradient": "l2", "saliency": "l2", "gradient_x_input": "sum", "input_x_gradient": "sum",
            "ig": "sum", "integrated_gradients": "sum", "smoothgrad": "l2", "lrp": "sum"}
"""Gradient methods and their default ``reduce`` over the embedding axis."""
PERTURBATION = ("feature_ablation", "shapley", "shapley_sampling", "kernel_shap", "lime")
BASELINED = ("ig", "integrated_gradients")
REDUCE = ("sum", "l2")


@dataclass(frozen=True)
class _Spec:
    """What one compiled program computes (hashable: programs are cached per spec)."""

    method: str
    options: tuple[tuple[str, Any], ...]
    score: seqs.Score
    reduce: str
    k: int  # features per example (perturbation methods), else 0
    prefix: int  # feature ablation with the prefix reused: the longest prompt; else 0


def attribute(m: Any, prompt_ids: Any, target_ids: Any = None, method: str = "ig", *,
              baseline_token: int | None = None, tokenizer: Any = None, score: seqs.Score | None = None,
              foil: Any = None, reduce: str | None = None, segments: Any = None, skip: Sequence[int] = (),
              max_new_tokens: int = 16, eos_token: int | None = None, key: Any = None,
              context: int | None = None, attention: str = "attnlrp", prefix: bool = True,
              **options: Any) -> LMAttributionResult | list[LMAttributionResult]:
    """Attribute each output token of a causal language model to the prompt's tokens.

    Args:
      m: a causal LM as a text model (``from_torch(AutoModelForCausalLM..., {"input_ids": ids,
        "attention_mask": mask})``, ``from_keras``, ``from_flax``).
      prompt_ids: one prompt's token ids, or a list of prompts (then a list of results,
        computed as one padded batch).
      target_ids: the output to explain (ids, or one per prompt); ``None`` generates it greedily
        (:func:`xai_core.lm.generate`, ``max_new_tokens``, ``eos_token``).
      method: a gradient method (``"gradient"``, ``"gradient_x_input"``, ``"ig"``, ``"smoothgrad"``,
        ``"lrp"``) or a perturbation method (``"feature_ablation"``, ``"shapley"``,
        ``"shapley_sampling"``, ``"kernel_shap"``, ``"lime"``); ``**options`` go to it
        (``steps=``, ``rule=``, ``samples=``, ...), ``key`` too.
      baseline_token: the id put at a prompt position switched off, and IG's baseline
        (default the model's pad id).
      tokenizer: optional; gives token strings (``convert_ids_to_tokens``) and ``segments="words"``.
      score: ``"log_prob"`` (the default; ``"logit"`` for LRP, which explains logits), ``"prob"``,
        ``"logit"``, ``"contrast"`` (with ``foil``: one id, or one per output token) or
        ``score(logits, token, foil) -> scalar`` (see :mod:`xai_core.lm.sequences`).
      reduce: ``"sum"`` or ``"l2"`` over the embedding axis (gradient methods; default ``"l2"`` for
        the plain gradient and SmoothGrad, else ``"sum"``).
      segments: the features: ``None`` (tokens), ``"words"``, ``"sentences"``, a list of
        ``(start, stop)`` spans, or an int per prompt token (``-1``: not attributed).
      attention: LRP's treatment of attention: ``"attnlrp"`` (the default; Achtibat et al. 2024:
        relevance flows through the softmax, the query-key and weight-value products split it in
        halves) or ``"constant"`` (CP-LRP, Ali et al. 2022: attention weights are constants, as
        for ViTs). Both give a gated MLP's two factors half each (AttnLRP's uniform rule).
      prefix: feature ablation reuses the unchanged prefix (:mod:`xai_core.lm.prefix`): an
        ablation starting at position ``j`` recomputes only positions ``j`` on. Checked against
        the dense program on two ablations per call; where they differ it falls back, with a warning.
      skip: token ids never attributed (a BOS, a chat template's special tokens).
      context: the model's longest sequence, where the adapter does not know it.

    Returns:
      :class:`xai_core.lm.LMAttributionResult` (``token_attr`` ``(n_output, n_input)``,
      ``seq_attr``, ``output_scores``, ``to_html``, ``save``, ``to_json``), or a list of them.

    Example (a small random decoder; any causal LM through an adapter works the same):
        >>> import jax, xai_core as xc
        >>> from xai_core.lm.retrieval import decoder, init_decoder
        >>> m = decoder(init_decoder(jax.random.key(0), vocab=19))
        >>> res = xc.lm.attribute(m, [1, 3, 11, 4, 12, 2, 3], [11, 2], method="ig", steps=16)
        >>> res.token_attr.shape, res.seq_attr.shape, res.output_scores.shape
        ((2, 7), (7,), (2,))
    """
    seqs.check_model(m)
    check_choice(method, (*GRADIENT, *PERTURBATION), "method", "xc.lm.attribute")
    score = ("logit" if method == "lrp" else "log_prob") if score is None else score
    if method == "lrp":
        if score != "logit":
            raise ValueError(f"xc.lm.attribute: LRP redistributes a logit; score={score!r} puts a log-softmax "
                             "(no LRP rule) after it. Use score='logit' (the default for lrp).")
        check_choice(attention, ("attnlrp", "constant"), "attention", "xc.lm.attribute")
        options = {**options, "attention": attention}
    if not callable(score):
        check_choice(score, seqs.SCORES, "score", "xc.lm.attribute")
    if (score == "contrast") != (foil is not None):
        raise ValueError("xc.lm.attribute: score='contrast' needs foil= (the token the output is contrasted with), "
                         "and foil= needs score='contrast'.")
    reduce = GRADIENT.get(method, "sum") if reduce is None else reduce
    check_choice(reduce, REDUCE, "reduce", "xc.lm.attribute")
    many = _is_batch(prompt_ids)
    prompts = [seqs.as_ids(p, "prompt_ids") for p in (prompt_ids if many else [prompt_ids])]
    if target_ids is None:
        targets = seqs.generate(m, prompts, max_new_tokens, eos_token)
    else:
        if many and len(target_ids) != len(prompts):
            raise ValueError(f"xc.lm.attribute: {len(prompts)} prompts but {len(target_ids)} targets; give one per prompt.")
        targets = [seqs.as_ids(t, "target_ids") for t in (target_ids if many else [target_ids])]
    b = seqs.batch(m, prompts, targets, foil, context)
    seqs.check_causal(m, b.ids[0, :len(prompts[0]) + len(targets[0])])
    token = m.pad_id if baseline_token is None else int(baseline_token)
    feats = [features(p, segments, skip, tokenizer) for p in prompts]
    results: list[LMAttributionResult | None] = [None] * len(prompts)
    groups = [list(range(len(prompts)))] if method in GRADIENT else \
        [[i for i, f in enumerate(feats) if f.k == k] for k in sorted({f.k for f in feats})]
    for group in groups:
        k = 0 if method in GRADIENT else feats[group[0]].k
        reuse = max(len(prompts[i]) for i in group) if prefix and method == "feature_ablation" else 0
        spec = _Spec(method, tuple(sorted(options.items())), score, reduce, k, reuse)
        owner = jnp.asarray(np.stack([_owner(feats[i], b.ids.shape[1]) for i in group]))
        attr, out, agree = _program(spec)(m, b.rows(group), owner, token, key)
        if not bool(np.all(agree)):
            warnings.warn("xc.lm.attribute: reusing the prefix gave another value than the dense program for this "
                          "model (its attention is not written query-first); recomputing without it (prefix=False).",
                          RuntimeWarning, stacklevel=2)
            attr, out, _ = _program(dataclasses.replace(spec, prefix=0))(m, b.rows(group), owner, token, key)
        for j, i in enumerate(group):
            t = len(targets[i])
            a = np.asarray(attr[j])
            if method in GRADIENT:
                a = feats[i].gather(a[:, :len(prompts[i])], reduce)
            results[i] = LMAttributionResult(
                input_ids=prompts[i], output_ids=targets[i], token_attr=a[1:t + 1], seq_attr=a[0],
                output_scores=np.asarray(out[j])[1:t + 1], seq_score=float(out[j][0]), labels=feats[i].labels,
                tokenizer=tokenizer, method=method, score=score if isinstance(score, str) else "custom")
    return results if many else results[0]


def _is_batch(prompt_ids: Any) -> bool:
    """A list of prompts (sequences), as opposed to one prompt's ids."""
    return isinstance(prompt_ids, (list, tuple)) and len(prompt_ids) > 0 and \
        all(isinstance(p, (list, tuple, np.ndarray, jax.Array)) for p in prompt_ids)


def _owner(f: Features, n: int) -> np.ndarray:
    """Which feature owns each of the ``n`` positions, ``-1`` for none (skipped, output, padding)."""
    owner = np.full(n, -1, np.int32)
    owner[:len(f.ids)] = f.ids
    return owner


_PROGRAMS: dict[_Spec, Any] = {}


def _program(spec: _Spec) -> Any:
    """The compiled program for ``spec``: ``(m, rows, owner, token, key) -> (attr (B, 1+T, ...), scores,
    agree)``; ``agree``: the prefix-reusing ablation matched its dense check (else ``True``)."""
    try:
        return _PROGRAMS.setdefault(spec, jax.jit(lambda *a: _run(spec, *a)))
    except TypeError:  # an option is an array (replayed draws): compile for this call only
        return jax.jit(lambda *a: _run(spec, *a))


def _run(spec: _Spec, m: Any, rows: dict[str, jax.Array], owner: jax.Array, token: Any, key: Any
         ) -> tuple[jax.Array, jax.Array, jax.Array]:
    options = dict(spec.options)

    def one(row: dict[str, jax.Array], owner: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        def score(e: jax.Array) -> jax.Array:
            return seqs.scores(m, e, row, spec.score)

        e = m.embed(m.from_ids(row["ids"]))
        e0 = m.embed(m.from_ids(jnp.where(owner >= 0, jnp.asarray(token, row["ids"].dtype), row["ids"])))
        out = score(e)
        n_rows = out.shape[0]
        if spec.prefix:
            attr, agree = prefix_ablation(score, out, e, e0, owner, spec.k, spec.prefix)
            return attr.T, out, agree
        if spec.k == 0:
            opts = dict(options, baseline=e0) if spec.method in BASELINED else options

            def row_attr(r: jax.Array) -> jax.Array:
                a = attribute_x(lambda e: score(e)[r], e, method=spec.method, key=key, **opts)
                a = a.astype(jnp.promote_types(a.dtype, jnp.float32))
                return a.sum(-1) if spec.reduce == "sum" else jnp.sqrt(jnp.square(a).sum(-1))
        else:
            z_dtype = jnp.promote_types(e.dtype, jnp.float32)
            opts = dict(options, incremental=False) if spec.method == "feature_ablation" else options

            def value(z: jax.Array) -> jax.Array:
                keep = jnp.where(owner >= 0, z[jnp.maximum(owner, 0)], 1)  # rows of no feature stay on
                return score(e0 + (e - e0) * keep[:, None].astype(e.dtype))

            def row_attr(r: jax.Array) -> jax.Array:
                return attribute_x(lambda z: value(z)[r], jnp.ones(spec.k, z_dtype), method=spec.method, key=key,
                                   baseline=0.0, **opts)
        return jax.vmap(row_attr)(jnp.arange(n_rows)), out, jnp.array(True)

    return jax.vmap(one)(rows, owner)
