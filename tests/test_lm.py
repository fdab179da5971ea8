"""xc.lm on tiny HuggingFace causal LMs: generation equals HF's, the teacher-forced scores equal
torch's, every method's defining property, batches equal their examples, segments, the result's
outputs, and the errors bad input gets."""

from __future__ import annotations

import json
import warnings

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import xai_core as xc  # noqa: E402
from xai_core.adapters import from_torch  # noqa: E402

from lm_models import WordTokenizer, converted, example  # noqa: E402

PROMPT, TARGET = [5, 9, 13, 7, 21, 4], [11, 30, 8]


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def pair(request: pytest.FixtureRequest):
    return converted(request.param)


def torch_log_probs(net: torch.nn.Module, ids: list[int]) -> np.ndarray:
    with torch.no_grad():
        return torch.log_softmax(net(torch.tensor([ids])).logits[0].double(), -1).numpy()


def scores_by_hand(net: torch.nn.Module, prompt: list[int], target: list[int]) -> np.ndarray:
    logp = torch_log_probs(net, prompt + target)
    return np.array([logp[len(prompt) - 1 + i, t] for i, t in enumerate(target)])


def test_generation_equals_huggingface_greedy_token_for_token(pair) -> None:
    net, m = pair
    prompts = [PROMPT, [3, 17, 22], [40, 2, 9, 9, 31, 12, 6, 8]]
    ours = xc.lm.generate(m, prompts, max_new_tokens=6)
    for p, o in zip(prompts, ours):
        theirs = net.generate(torch.tensor([p]), attention_mask=torch.ones(1, len(p), dtype=torch.long),
                              max_new_tokens=6, do_sample=False, eos_token_id=None, pad_token_id=0)
        assert o == theirs[0, len(p):].tolist()
    first = ours[0][2]
    stopped = xc.lm.generate(m, [PROMPT], max_new_tokens=6, eos_token=first)[0]
    assert stopped == ours[0][:ours[0].index(first) + 1]


def test_output_scores_are_torch_teacher_forced_log_probs_and_the_other_scores(pair) -> None:
    net, m = pair
    logp = scores_by_hand(net, PROMPT, TARGET)
    res = xc.lm.attribute(m, PROMPT, TARGET, method="gradient")
    np.testing.assert_allclose(res.output_scores, logp, rtol=1e-5, atol=1e-5)
    assert res.seq_score == pytest.approx(logp.sum(), rel=1e-5)
    prob = xc.lm.attribute(m, PROMPT, TARGET, method="gradient", score="prob")
    np.testing.assert_allclose(prob.output_scores, np.exp(logp), rtol=1e-4)
    assert prob.seq_score == pytest.approx(np.exp(logp.sum()), rel=1e-4)
    foil = 17
    full = torch_log_probs(net, PROMPT + TARGET)
    contrast = xc.lm.attribute(m, PROMPT, TARGET, method="gradient", score="contrast", foil=foil)
    np.testing.assert_allclose(contrast.output_scores, logp - full[len(PROMPT) - 1:-1, foil], rtol=1e-4, atol=1e-5)
    custom = xc.lm.attribute(m, PROMPT, TARGET, method="gradient", score=lambda z, t, f: z[t] - z.mean())
    with torch.no_grad():
        z = net(torch.tensor([PROMPT + TARGET])).logits[0, len(PROMPT) - 1:-1].double().numpy()
    np.testing.assert_allclose(custom.output_scores, z[np.arange(3), TARGET] - z.mean(-1), rtol=1e-4, atol=1e-4)


def test_each_gradient_row_equals_a_single_target_call(pair) -> None:
    _, m = pair
    res = xc.lm.attribute(m, PROMPT, TARGET, method="gradient_x_input")
    x = m.inputs(m.from_ids(jnp.array(PROMPT + TARGET)))
    for i, t in enumerate(TARGET):
        def score(x, i=i, t=t):
            return jax.nn.log_softmax(m.logits(x)[len(PROMPT) - 1 + i])[t]
        a = xc.attribute(score, x, method="gradient_x_input")["embeddings"].sum(-1)[:len(PROMPT)]
        np.testing.assert_allclose(res.token_attr[i], a, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(res.seq_attr, res.token_attr.sum(0), rtol=1e-4, atol=1e-6)
    plain = xc.lm.attribute(m, PROMPT, TARGET, method="gradient")  # default reduce "l2": non-negative norms
    assert plain.token_attr.min() >= 0


def test_integrated_gradients_are_complete_per_output_token(pair) -> None:
    net, m = pair
    # Token 3 at every prompt position: Llama's pad embedding is zero, and RMSNorm(a x) jumps from 0
    # to its value within a ~ sqrt(eps) / |x| of the start, a step no quadrature resolves.
    res = xc.lm.attribute(m, PROMPT, TARGET, method="ig", steps=128, baseline_token=3)
    base = scores_by_hand(net, [3] * len(PROMPT), TARGET)
    gap = res.token_attr.sum(1) - (res.output_scores - base)
    assert np.abs(gap).max() < 2e-3 * np.abs(res.output_scores - base).max()


def test_feature_ablation_is_the_drop_when_a_token_is_replaced(pair) -> None:
    net, m = pair
    res = xc.lm.attribute(m, PROMPT, TARGET, method="feature_ablation", baseline_token=3)
    full = scores_by_hand(net, PROMPT, TARGET)
    for j in range(len(PROMPT)):
        off = scores_by_hand(net, PROMPT[:j] + [3] + PROMPT[j + 1:], TARGET)
        np.testing.assert_allclose(res.token_attr[:, j], full - off, rtol=1e-4, atol=1e-5)
        assert res.seq_attr[j] == pytest.approx((full - off).sum(), rel=1e-4, abs=1e-5)


def test_shapley_methods_are_efficient_for_every_output(pair) -> None:
    net, m = pair
    full, none = scores_by_hand(net, PROMPT, TARGET), scores_by_hand(net, [0] * len(PROMPT), TARGET)
    for method, options in (("shapley_sampling", {"samples": 4}), ("kernel_shap", {"samples": 40}),
                            ("shapley", {})):
        res = xc.lm.attribute(m, PROMPT, TARGET, method=method, key=jax.random.key(0), **options)
        np.testing.assert_allclose(res.token_attr.sum(1), full - none, rtol=1e-4, atol=1e-4, err_msg=method)
    lime = xc.lm.attribute(m, PROMPT, TARGET, method="lime", key=jax.random.key(0), samples=64)
    assert lime.token_attr.shape == (3, 6) and np.isfinite(lime.token_attr).all()


def test_a_batch_equals_its_prompts_one_by_one(pair) -> None:
    _, m = pair
    prompts, targets = [PROMPT, [3, 17, 22, 8, 9, 1], [40, 2, 9, 9]], [TARGET, [6], [12, 13, 14, 15]]
    for method, options in (("ig", {"steps": 8}), ("feature_ablation", {}),
                            ("shapley_sampling", {"samples": 2, "key": jax.random.key(1)})):
        batch = xc.lm.attribute(m, prompts, targets, method=method, **options)
        for p, t, b in zip(prompts, targets, batch):
            one = xc.lm.attribute(m, p, t, method=method, **options)
            assert b.token_attr.shape == (len(t), len(p))
            np.testing.assert_allclose(b.token_attr, one.token_attr, rtol=1e-4, atol=1e-6, err_msg=method)
            np.testing.assert_allclose(b.output_scores, one.output_scores, rtol=1e-5, atol=1e-6)


def test_segments_and_skipped_tokens(pair) -> None:
    net, m = pair
    tok = WordTokenizer()
    spans = xc.lm.attribute(m, PROMPT, TARGET, method="feature_ablation", segments=[(1, 3), (3, 6)], tokenizer=tok)
    assert spans.input_tokens == ["t5", "t9t13", "t7t21t4"]
    full = scores_by_hand(net, PROMPT, TARGET)
    off = scores_by_hand(net, PROMPT[:1] + [0, 0] + PROMPT[3:], TARGET)
    np.testing.assert_allclose(spans.token_attr[:, 1], full - off, rtol=1e-4, atol=1e-5)
    skipped = xc.lm.attribute(m, PROMPT, TARGET, method="ig", steps=8, skip=[5, 4])
    assert skipped.input_tokens == [9, 13, 7, 21]
    grouped = xc.lm.attribute(m, PROMPT, TARGET, method="ig", steps=8, segments=[0, 0, 1, 1, 2, -1])
    tokens = xc.lm.attribute(m, PROMPT, TARGET, method="ig", steps=8, skip=[4])
    a = tokens.token_attr  # ig is additive over tokens: a group's attribution is its tokens' sum
    np.testing.assert_allclose(grouped.token_attr, np.stack([a[:, 0:2].sum(1), a[:, 2:4].sum(1), a[:, 4]], 1),
                               rtol=1e-4, atol=1e-6)


def test_the_result_as_html_png_and_json(pair, tmp_path) -> None:
    _, m = pair
    res = xc.lm.attribute(m, PROMPT, TARGET, method="feature_ablation", tokenizer=WordTokenizer())
    assert res.input_tokens == [f"t{i}" for i in PROMPT] and res.output_tokens == [f"t{i}" for i in TARGET]
    page = res.to_html()
    assert page.count("<td") == (len(TARGET) + 1) * len(PROMPT) and "t21" in page
    png = res.save(tmp_path / "x.png")
    from PIL import Image
    assert Image.open(png).size[0] > 6 * 28
    data = json.loads(res.save(tmp_path / "x.json").read_text())
    np.testing.assert_allclose(data["token_attr"], res.token_attr, rtol=1e-6)
    assert data["output_ids"] == TARGET and data["method"] == "feature_ablation"
    with pytest.raises(ValueError, match="must end in"):
        res.save(tmp_path / "x.txt")


def test_bad_input_gets_clear_errors(pair) -> None:
    _, m = pair
    with pytest.raises(ValueError, match="past the model's context of 48"):
        xc.lm.attribute(m, list(range(3, 43)), list(range(3, 13)), method="gradient")
    with pytest.raises(ValueError, match="empty prompt"):
        xc.lm.attribute(m, [], TARGET)
    with pytest.raises(ValueError, match="one int per prompt token"):
        xc.lm.attribute(m, PROMPT, TARGET, method="feature_ablation", segments=[0, 1, 2])
    with pytest.raises(ValueError, match="0..K-1"):
        xc.lm.attribute(m, PROMPT, TARGET, method="feature_ablation", segments=[0, 0, 2, 2, 3, 3])
    with pytest.raises(ValueError, match="method"):
        xc.lm.attribute(m, PROMPT, TARGET, method="gradcam")
    with pytest.raises(ValueError, match="foil"):
        xc.lm.attribute(m, PROMPT, TARGET, score="contrast")
    with pytest.raises(ValueError, match="needs tokenizer"):
        xc.lm.attribute(m, PROMPT, TARGET, segments="words")
    with pytest.raises(ValueError, match="2 prompts but 1 targets"):
        xc.lm.attribute(m, [PROMPT, PROMPT], [TARGET])
    with pytest.raises(TypeError, match="text model"):
        xc.lm.attribute(lambda x: x, PROMPT, TARGET)


def test_a_model_that_is_not_a_causal_language_model_is_refused() -> None:
    torch.manual_seed(0)
    bert = transformers.BertForMaskedLM(transformers.BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=32)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = from_torch(bert, example())
    with pytest.raises(ValueError, match="not causal"):
        xc.lm.attribute(m, PROMPT, TARGET, method="gradient")
    clf = transformers.GPT2ForSequenceClassification(transformers.GPT2Config(
        vocab_size=50, n_positions=32, n_embd=16, n_layer=1, n_head=2, pad_token_id=0, num_labels=3)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = from_torch(clf, example())
    with pytest.raises(ValueError, match="not a classifier"):
        xc.lm.attribute(m, PROMPT, TARGET, method="gradient")


def test_cp_lrp_conserves_on_a_bias_free_llama_and_needs_logits(pair) -> None:
    net, m = pair
    res = xc.lm.attribute(m, PROMPT, TARGET, method="lrp", composite="zero", attention="constant")  # CP-LRP
    with torch.no_grad():
        z = net(torch.tensor([PROMPT + TARGET])).logits[0, len(PROMPT) - 1:-1].numpy()
    np.testing.assert_allclose(res.output_scores, z[np.arange(3), TARGET], rtol=1e-5, atol=1e-5)
    if isinstance(net, transformers.LlamaForCausalLM):  # no biases; the first output reads the prompt only
        assert res.token_attr[0].sum() == pytest.approx(res.output_scores[0], rel=1e-4, abs=1e-4)
    with pytest.raises(ValueError, match="score='logit'"):
        xc.lm.attribute(m, PROMPT, TARGET, method="lrp", score="log_prob")
    with pytest.raises(ValueError, match="attention"):
        xc.lm.attribute(m, PROMPT, TARGET, method="lrp", attention="softmax")
    attn = xc.lm.attribute(m, PROMPT, TARGET, method="lrp")  # AttnLRP by default: not conservative
    assert np.isfinite(attn.token_attr).all() and attn.token_attr.shape == (3, 6)


def test_on_the_retrieval_model_the_evidence_gets_the_attribution() -> None:
    from xai_core.lm.retrieval import BOS, SEP, Retrieval, evidence_share, train_retrieval

    task = Retrieval(8, 4)
    m, accuracy = train_retrieval(task)
    assert accuracy >= 0.97
    prompts, answers, evidence = task.sample(8, seed=3)
    res = xc.lm.attribute(m, [p.tolist() for p in prompts], [[int(a)] for a in answers],
                          method="feature_ablation", skip=[BOS, SEP])
    assert all(r.output_ids == [int(a)] for r, a in zip(res, answers))
    share = np.mean([evidence_share(r.token_attr, e - 1) for r, e in zip(res, evidence)])  # BOS skipped
    assert share > 0.5  # 2 of 9 features: uniform attribution would give 0.22


def test_ig_on_a_longer_prompt_equals_one_output_at_a_time() -> None:
    """Under jaxlib 0.10.2, XLA:CPU's YNNPACK reduce fusions computed this program's gradients wrong
    (by half their size) with the weights as arguments; xai_core's XLA defaults turn them off."""
    torch.manual_seed(0)
    net = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=4, max_position_embeddings=64, pad_token_id=0)).eval()
    rng = np.random.default_rng(0)
    prompt, target = rng.integers(1, 512, 32).tolist(), rng.integers(1, 512, 4).tolist()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = from_torch(net, {"input_ids": torch.tensor([prompt]), "attention_mask": torch.ones(1, 32, dtype=torch.long)})
    all_at_once = xc.lm.attribute(m, prompt, target, method="ig", steps=32, baseline_token=1, batch_size=None)
    first = xc.lm.attribute(m, prompt, target[:1], method="ig", steps=32, baseline_token=1, batch_size=None)
    np.testing.assert_allclose(all_at_once.token_attr[0], first.token_attr[0], rtol=1e-4,
                               atol=1e-5 * np.abs(first.token_attr).max())


def test_feature_ablation_reusing_the_prefix_equals_the_dense_program(pair) -> None:
    _, m = pair
    prompts, targets = [PROMPT * 2, [3, 17, 22, 8]], [TARGET, [6, 7]]
    reuse = xc.lm.attribute(m, prompts, targets, method="feature_ablation", segments=None)
    dense = xc.lm.attribute(m, prompts, targets, method="feature_ablation", prefix=False)
    for a, b in zip(reuse, dense):
        np.testing.assert_allclose(a.token_attr, b.token_attr, rtol=1e-4, atol=2e-6)
        np.testing.assert_allclose(a.seq_attr, b.seq_attr, rtol=1e-4, atol=4e-6)
    spans = xc.lm.attribute(m, PROMPT, TARGET, method="feature_ablation", segments=[(0, 2), (3, 6)])
    spans_dense = xc.lm.attribute(m, PROMPT, TARGET, method="feature_ablation", segments=[(0, 2), (3, 6)], prefix=False)
    np.testing.assert_allclose(spans.token_attr, spans_dense.token_attr, rtol=1e-4, atol=2e-6)


def test_a_model_the_prefix_rule_does_not_fit_falls_back_with_a_warning() -> None:
    from xai_core.adapters import TextModel
    from xai_core.graph import mark

    table = jax.random.normal(jax.random.key(0), (20, 8))
    w = jax.random.normal(jax.random.key(1), (8, 8)) / 3

    def forward(p, e):  # causal attention written key-first: the scores' first operand is the keys
        n = e.shape[0]
        s = jax.lax.dot_general(e @ p["w"], e, (((1,), (1,)), ((), ()))).T  # (k, q), then (q, k)
        a = jax.nn.softmax(jnp.where(jnp.tril(jnp.ones((n, n), bool)), s, -1e9), -1)
        return (e + a @ e) @ p["table"].T

    m = TextModel(lambda p, x: forward(p, x["embeddings"]), lambda p, ids: forward(p, mark(p["table"][ids], "emb")),
                  {"table": table, "w": w}, embedding="emb", example=jnp.zeros(6, jnp.int32), context=16)
    with pytest.warns(RuntimeWarning, match="prefix=False"):
        res = xc.lm.attribute(m, [3, 4, 5, 6, 7, 8], [9, 10], method="feature_ablation")
    dense = xc.lm.attribute(m, [3, 4, 5, 6, 7, 8], [9, 10], method="feature_ablation", prefix=False)
    np.testing.assert_allclose(res.token_attr, dense.token_attr, rtol=1e-5, atol=1e-6)


def test_a_flax_nnx_decoder_through_from_flax() -> None:
    from flax import nnx

    from xai_core.adapters import from_flax

    class Decoder(nnx.Module):
        def __init__(self, rngs: nnx.Rngs) -> None:
            self.embed = nnx.Embed(20, 16, rngs=rngs)
            self.pos = nnx.Param(0.1 * jax.random.normal(jax.random.key(3), (32, 16)))
            self.attn = nnx.MultiHeadAttention(num_heads=2, in_features=16, decode=False, rngs=rngs)
            self.head = nnx.Linear(16, 20, rngs=rngs)

        def __call__(self, ids: jax.Array) -> jax.Array:
            h = self.embed(ids) + self.pos[:ids.shape[1]]
            return self.head(h + self.attn(h, mask=nnx.make_causal_mask(ids)))

    net = Decoder(nnx.Rngs(0))
    m = from_flax(net, embedding="embed", example=jnp.zeros(8, jnp.int32), context=32)
    prompt, target = [3, 4, 5, 6, 7], [8, 9]

    def log_probs(ids: list[int]) -> np.ndarray:
        z = jax.nn.log_softmax(net(jnp.array([ids]))[0, len(prompt) - 1:-1])
        return np.asarray(z[jnp.arange(2), jnp.array(target)])

    res = xc.lm.attribute(m, prompt, target, method="feature_ablation", baseline_token=1)
    full = log_probs(prompt + target)
    for j in range(len(prompt)):
        off = log_probs(prompt[:j] + [1] + prompt[j + 1:] + target)
        np.testing.assert_allclose(res.token_attr[:, j], full - off, rtol=1e-4, atol=1e-5)
    ids = list(prompt)
    for _ in range(3):
        ids.append(int(jnp.argmax(net(jnp.array([ids]))[0, -1])))
    assert xc.lm.generate(m, [prompt], max_new_tokens=3)[0] == ids[len(prompt):]
    with pytest.raises(ValueError, match="past the model's context of 32"):
        xc.lm.attribute(m, list(range(3, 19)) * 2, target)


@pytest.mark.parametrize("name", ["qwen2", "gemma"])
def test_qwen2_and_gemma_generate_score_and_ablate_as_torch(name: str) -> None:
    net, m = converted(name)
    theirs = net.generate(torch.tensor([PROMPT]), max_new_tokens=4, do_sample=False, eos_token_id=None, pad_token_id=0)
    assert xc.lm.generate(m, [PROMPT], max_new_tokens=4)[0] == theirs[0, len(PROMPT):].tolist()
    res = xc.lm.attribute(m, PROMPT, TARGET, method="feature_ablation")
    full = scores_by_hand(net, PROMPT, TARGET)
    np.testing.assert_allclose(res.output_scores, full, rtol=1e-4, atol=1e-5)
    for j in (0, 3):
        off = scores_by_hand(net, PROMPT[:j] + [0] + PROMPT[j + 1:], TARGET)
        np.testing.assert_allclose(res.token_attr[:, j], full - off, rtol=1e-4, atol=1e-5)
    assert np.isfinite(xc.lm.attribute(m, PROMPT, TARGET, method="lrp").token_attr).all()
