"""xc.lm against Captum's LLMAttribution (FeatureAblation) and LLMGradientAttribution
(LayerIntegratedGradients on the word embeddings) on the same tiny GPT-2 and Llama weights.

Captum scores an output teacher-forced (``forward_in_tokens=False``: one pass over prompt +
output) or token by token (``forward_in_tokens=True``, its default). Ours is the one
teacher-forced pass; both of Captum's uncached modes equal it. Its default, cached, path
(``use_cached_outputs=True``) does not under transformers 5: after the first output token it
feeds the whole sequence again on top of the cache, so its log-probabilities from the second
output token on are wrong, and so are its attributions (the last test measures by how much).
"""

from __future__ import annotations


import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
captum_attr = pytest.importorskip("captum.attr")

import numpy as np  # noqa: E402

import xai_core as xc  # noqa: E402

from lm_models import WordTokenizer, converted  # noqa: E402

PROMPT, TARGET = [5, 9, 13, 7, 21, 4], [11, 30, 8]
TOK = WordTokenizer()
pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def pair(request: pytest.FixtureRequest):
    return converted(request.param)


def rel(ours: np.ndarray, theirs: torch.Tensor, score: float = 0.0) -> float:
    """The largest difference over the largest attribution, after 4 float32 ulps of ``score``
    (an ablation subtracts scores of that size, so both sides round by that much)."""
    theirs = theirs.detach().double().numpy()
    err = np.abs(np.asarray(ours, np.float64) - theirs).max() - 4 * np.spacing(np.float32(abs(score)))
    return float(max(err, 0.0) / np.abs(theirs).max())


def captum_ablation(net: torch.nn.Module, skip: list[int] | None = None, baseline: int = 0, **options):
    inp = captum_attr.TextTokenInput(TOK.text(PROMPT), TOK, baselines=baseline, skip_tokens=skip)
    llm = captum_attr.LLMAttribution(captum_attr.FeatureAblation(net), TOK)
    return llm.attribute(inp, target=torch.tensor(TARGET), **options)


@pytest.mark.parametrize("options", [{"forward_in_tokens": False}, {"use_cached_outputs": False}],
                         ids=["teacher-forced", "token-by-token"])
def test_feature_ablation_equals_captums(pair, options) -> None:
    net, m = pair
    theirs = captum_ablation(net, skip=[4], baseline=3, **options)
    ours = xc.lm.attribute(m, PROMPT, TARGET, method="feature_ablation", baseline_token=3, skip=[4], tokenizer=TOK)
    assert ours.input_tokens == theirs.input_tokens
    assert rel(ours.token_attr, theirs.token_attr, ours.output_scores.min()) < 1e-4
    assert rel(ours.seq_attr, theirs.seq_attr, ours.seq_score) < 1e-4


def test_feature_ablation_on_probabilities_equals_captums(pair) -> None:
    net, m = pair
    inp = captum_attr.TextTokenInput(TOK.text(PROMPT), TOK)
    theirs = captum_attr.LLMAttribution(captum_attr.FeatureAblation(net), TOK, attr_target="prob").attribute(
        inp, target=torch.tensor(TARGET), forward_in_tokens=False)
    ours = xc.lm.attribute(m, PROMPT, TARGET, method="feature_ablation", score="prob")
    assert rel(ours.token_attr, theirs.token_attr) < 1e-4
    assert rel(ours.seq_attr, theirs.seq_attr) < 1e-4


def test_layer_integrated_gradients_equal_captums(pair) -> None:
    net, m = pair
    inp = captum_attr.TextTokenInput(TOK.text(PROMPT), TOK, skip_tokens=[5])
    lig = captum_attr.LayerIntegratedGradients(net, net.get_input_embeddings())
    theirs = captum_attr.LLMGradientAttribution(lig, TOK).attribute(inp, target=torch.tensor(TARGET), n_steps=16)
    ours = xc.lm.attribute(m, PROMPT, TARGET, method="ig", steps=16, rule="gauss_legendre", skip=[5])
    assert rel(ours.token_attr, theirs.token_attr) < 1e-4
    assert rel(ours.seq_attr, theirs.seq_attr) < 1e-4
    right = captum_attr.LLMGradientAttribution(lig, TOK).attribute(
        inp, target=torch.tensor(TARGET), n_steps=16, method="riemann_right")
    ours = xc.lm.attribute(m, PROMPT, TARGET, method="ig", steps=16, rule="riemann_right", skip=[5])
    assert rel(ours.token_attr, right.token_attr) < 1e-4
    # Captum's riemann_trapezoid weights sum to (n-1)/n (tests/test_crosscheck_captum.py); ours to 1.
    trapezoid = captum_attr.LLMGradientAttribution(lig, TOK).attribute(
        inp, target=torch.tensor(TARGET), n_steps=16, method="riemann_trapezoid")
    ours = xc.lm.attribute(m, PROMPT, TARGET, method="ig", steps=16, rule="trapezoid", skip=[5])
    assert rel(ours.token_attr * 15 / 16, trapezoid.token_attr) < 1e-4


def test_captums_default_cached_path_is_off_after_the_first_output_token(pair) -> None:
    net, m = pair
    teacher = captum_ablation(net, forward_in_tokens=False)
    cached = captum_ablation(net)  # Captum's defaults: token by token, with the model's cache
    gap = np.abs((cached.token_attr - teacher.token_attr).numpy()).max(1) / np.abs(teacher.token_attr.numpy()).max()
    print(f"\ncached - teacher-forced, per output token (relative): {np.round(gap, 4).tolist()}")
    assert gap[0] < 1e-4  # the first output token reads the prompt alone: right
    assert gap[1:].max() > 1e-3  # later ones are scored on a wrong cache


class _HalfMul(torch.autograd.Function):
    """``a * b`` (or ``a @ b``) whose backward gives each factor half: AttnLRP's uniform rule in
    lxt's gradient-times-input form (relevance = input x modified gradient)."""

    @staticmethod
    def forward(ctx, a, b, matmul):  # noqa: ANN001, ANN205
        ctx.save_for_backward(a, b)
        ctx.matmul = matmul
        return a @ b if matmul else a * b

    @staticmethod
    def backward(ctx, g):  # noqa: ANN001, ANN205
        a, b = ctx.saved_tensors
        if ctx.matmul:
            return 0.5 * g @ b.transpose(-1, -2), 0.5 * a.transpose(-1, -2) @ g, None
        return 0.5 * g * b, 0.5 * g * a, None


class _Identity(torch.autograd.Function):
    """An activation whose relevance passes unchanged (lxt's identity rule): ``x g' = f(x) g``."""

    @staticmethod
    def forward(ctx, x):  # noqa: ANN001, ANN205
        y = torch.nn.functional.silu(x)
        ctx.save_for_backward(x, y)
        return y

    @staticmethod
    def backward(ctx, g):  # noqa: ANN001, ANN205
        x, y = ctx.saved_tensors
        return g * y / torch.where(x.abs() < 1e-12, torch.full_like(x, 1e-12), x)


def attnlrp_reference(net: torch.nn.Module, ids: list[int], position: int, token: int) -> np.ndarray:
    """AttnLRP (Achtibat et al. 2024) of logit ``token`` at ``position`` on a HF Llama, written
    from the paper and lxt's efficient rules: gradient x input with the RMSNorm scale detached
    (identity), SiLU as identity, the gated MLP's product and attention's two matmuls halved
    (uniform), the softmax's own gradient (its AttnLRP rule in this form). One score per token."""
    from transformers.models.llama import modeling_llama as L

    def attention(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):  # noqa: ANN001, ANN202
        key, value = L.repeat_kv(key, module.num_key_value_groups), L.repeat_kv(value, module.num_key_value_groups)
        weights = _HalfMul.apply(query, key.transpose(2, 3), True) * scaling
        if attention_mask is not None:
            weights = weights + attention_mask
        weights = torch.softmax(weights, dim=-1)
        return _HalfMul.apply(weights, value, True).transpose(1, 2).contiguous(), weights

    def norm(self, h):  # noqa: ANN001, ANN202
        return self.weight * (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True).detach() + self.variance_epsilon))

    def mlp(self, x):  # noqa: ANN001, ANN202
        return self.down_proj(_HalfMul.apply(_Identity.apply(self.gate_proj(x)), self.up_proj(x), False))

    saved = (L.eager_attention_forward, L.LlamaRMSNorm.forward, L.LlamaMLP.forward, net.config._attn_implementation)
    L.eager_attention_forward, L.LlamaRMSNorm.forward, L.LlamaMLP.forward = attention, norm, mlp
    net.config._attn_implementation = "eager"
    try:
        e = net.get_input_embeddings()(torch.tensor([ids])).detach().double().requires_grad_(True)
        net.double()(inputs_embeds=e).logits[0, position, token].backward()
        return (e * e.grad).sum(-1)[0].detach().numpy()
    finally:
        net.float()
        L.eager_attention_forward, L.LlamaRMSNorm.forward, L.LlamaMLP.forward, net.config._attn_implementation = saved


def test_attnlrp_equals_a_reference_of_its_rules_on_llama(x64) -> None:
    net, m = converted("llama")
    ours = xc.lm.attribute(m, PROMPT, TARGET, method="lrp", attention="attnlrp", composite="zero")
    for i, t in enumerate(TARGET):
        theirs = attnlrp_reference(net, PROMPT + TARGET[:i + 1], len(PROMPT) - 1 + i, t)[:len(PROMPT)]
        assert rel(ours.token_attr[i], torch.tensor(theirs)) < 1e-4, i
    cp = xc.lm.attribute(m, PROMPT, TARGET, method="lrp", attention="constant", composite="zero")
    gap = abs(ours.token_attr[0].sum() - ours.output_scores[0]) / abs(ours.output_scores[0])
    print(f"\nAttnLRP's conservation gap on the first output token: {gap:.1%} (CP-LRP: "
          f"{abs(cp.token_attr[0].sum() - cp.output_scores[0]) / abs(cp.output_scores[0]):.1e})")
