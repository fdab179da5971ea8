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
