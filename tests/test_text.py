"""Text classifiers explained on their token embeddings: HuggingFace BERT / DistilBERT and a plain
torch model given token ids, against Captum's LayerIntegratedGradients on the word embeddings;
padding, batches of different lengths under jit(vmap), completeness, baselines, token scores."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
captum_attr = pytest.importorskip("captum.attr")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import xai_core as xc  # noqa: E402
from xai_core.adapters import TextModel, from_torch  # noqa: E402

CLS, SEP, MASK, PAD = 1, 2, 3, 0
SEQUENCES = [[CLS, 17, 42, 8, 23, SEP], [CLS, 55, 9, SEP]]  # two lengths, padded to 6
TARGETS = [1, 2]
STEPS = 16


def bert() -> torch.nn.Module:
    torch.manual_seed(0)
    return transformers.BertForSequenceClassification(transformers.BertConfig(
        vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=32, num_labels=3, pad_token_id=PAD)).eval()


def distilbert() -> torch.nn.Module:
    torch.manual_seed(0)
    return transformers.DistilBertForSequenceClassification(transformers.DistilBertConfig(
        vocab_size=64, dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=32,
        num_labels=3, pad_token_id=PAD)).eval()


def word_embeddings(net: torch.nn.Module) -> torch.nn.Module:
    return net.get_input_embeddings()


class BagOfWords(torch.nn.Module):
    """A plain torch text model: embedding, masked mean over tokens, linear, softmax."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.emb = torch.nn.Embedding(64, 8, padding_idx=PAD)
        self.hidden = torch.nn.Linear(8, 8)
        self.out = torch.nn.Linear(8, 3)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        keep = (ids != PAD).unsqueeze(-1).to(self.emb.weight.dtype)
        pooled = (self.emb(ids) * keep).sum(1) / keep.sum(1).clamp(min=1)
        return torch.softmax(self.out(torch.tanh(self.hidden(pooled))), -1)


def explain(m: TextModel, batch: object, targets: jax.Array, **options: object) -> jax.Array:
    def one(m: TextModel, inputs: object, t: jax.Array) -> jax.Array:
        x = m.inputs(inputs)
        return xc.attribute(m.score(t), x, method="ig", baseline=m.baseline(x, token=MASK, keep=(CLS, SEP)),
                            **options)["embeddings"]
    return jax.jit(jax.vmap(one, in_axes=(None, 0, 0)))(m, batch, targets)


def rel(ours: object, theirs: torch.Tensor) -> float:
    ours, theirs = np.asarray(ours, np.float64), theirs.detach().double().numpy()
    return float(np.abs(ours - theirs).max() / np.abs(theirs).max())


@pytest.fixture(scope="module", params=["bert", "distilbert"])
def hf_text(request: pytest.FixtureRequest):
    net = {"bert": bert, "distilbert": distilbert}[request.param]()
    m = from_torch(net, {"input_ids": torch.tensor([SEQUENCES[0]]), "attention_mask": torch.ones(1, 6, dtype=torch.long)})
    return request.param, net, m


def test_hf_text_model_finds_its_embeddings_and_gives_the_logits(hf_text) -> None:
    name, net, m = hf_text
    assert isinstance(m, TextModel) and m.pad_id == PAD
    assert m.embedding == {"bert": "bert.embeddings.word_embeddings",
                           "distilbert": "distilbert.embeddings.word_embeddings"}[name]
    batch = m.pad(SEQUENCES)
    assert set(batch) == {"input_ids", "attention_mask"}
    np.testing.assert_array_equal(batch["attention_mask"][1], [1, 1, 1, 1, 0, 0])
    expected = net(input_ids=torch.tensor(np.asarray(batch["input_ids"])),
                   attention_mask=torch.tensor(np.asarray(batch["attention_mask"]))).logits.detach().numpy()
    got = jax.vmap(lambda b: m.logits(m.inputs(b)))(batch)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    emb = m.embed(jax.tree.map(lambda a: a[0], batch))
    np.testing.assert_allclose(emb, word_embeddings(net).weight.detach().numpy()[SEQUENCES[0]], rtol=1e-6)


def test_hf_text_ig_equals_captum_layer_integrated_gradients_with_padding(hf_text) -> None:
    name, net, m = hf_text
    batch = m.pad(SEQUENCES)
    ids = torch.tensor(np.asarray(batch["input_ids"]), dtype=torch.long)
    mask = torch.tensor(np.asarray(batch["attention_mask"]), dtype=torch.long)
    special = (ids == CLS) | (ids == SEP) | (ids == PAD)
    reference = torch.where(special, ids, torch.full_like(ids, MASK))
    lig = captum_attr.LayerIntegratedGradients(lambda i, a: net(input_ids=i, attention_mask=a).logits,
                                               word_embeddings(net))
    theirs = lig.attribute(ids, baselines=reference, additional_forward_args=(mask,), target=TARGETS,
                           n_steps=STEPS, method="gausslegendre")
    ours = explain(m, batch, jnp.array(TARGETS), steps=STEPS, rule="gauss_legendre")
    err = rel(ours, theirs)
    print(f"\nLayerIG {name}: {err:.1e}")
    assert err < 1e-4
    np.testing.assert_array_equal(ours[1, 4:], 0.0)  # padding: same embedding in x and baseline


def test_a_padded_batch_equals_each_sequence_alone(hf_text) -> None:
    _, _, m = hf_text
    padded = explain(m, m.pad(SEQUENCES), jnp.array(TARGETS), steps=8)
    for k, seq in enumerate(SEQUENCES):
        alone = explain(m, m.pad([seq]), jnp.array([TARGETS[k]]), steps=8)[0]
        np.testing.assert_allclose(padded[k, :len(seq)], alone, rtol=2e-4, atol=1e-6)


def test_a_plain_torch_text_model_is_complete_on_its_embeddings(x64: None) -> None:
    net = BagOfWords().double().eval()
    m = from_torch(net, torch.tensor([[CLS, 5, 6, SEP]]))
    assert m.embedding == "emb" and m.cut == "softmax"
    ids = m.pad(SEQUENCES)  # a model of ids alone: the padded ids
    assert ids.shape == (2, 6)
    x = m.inputs(ids[0])
    base = m.baseline(x)  # pad token everywhere
    a = xc.attribute(m.score(2), x, method="ig", baseline=base, steps=64, rule="gauss_legendre")
    change = m.score(2)(x) - m.score(2)({**x, "embeddings": base["embeddings"]})
    assert abs(float(xc.completeness_gap(m.score(2), x, a, baseline=base))) < 1e-9 * abs(float(change))
    scores = xc.token_scores(a)
    assert scores.shape == (6,)
    np.testing.assert_allclose(scores.sum(), change, rtol=1e-9)
    np.testing.assert_allclose(xc.token_scores(a, how="l2"), np.linalg.norm(a["embeddings"], axis=-1))
    theirs = captum_attr.LayerIntegratedGradients(lambda i: net(i), net.emb).attribute(
        torch.tensor(np.asarray(ids[:1])), baselines=torch.zeros(1, 6, dtype=torch.long), target=2,
        n_steps=64, method="gausslegendre")
    # Captum explains the softmax output (net(i)); xai-core the logit: they differ on purpose.
    assert rel(a["embeddings"][None], theirs) > 1e-2


def test_every_gradient_and_path_method_runs_on_the_embeddings(hf_text) -> None:
    _, _, m = hf_text
    x = m.inputs(jax.tree.map(lambda a: a[0], m.pad(SEQUENCES)))
    for method in ("gradient", "gradient_x_input", "ig", "smoothgrad", "vargrad"):
        a = xc.attribute(m.score(0), x, method=method, key=jax.random.key(0), **({} if method in (
            "gradient", "gradient_x_input", "ig") else {"samples": 4}))
        assert a["embeddings"].shape == (6, 32) and a["inputs"] is None, method
        assert bool(jnp.all(jnp.isfinite(a["embeddings"]))), method


def test_text_model_errors() -> None:
    class TwoTables(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = torch.nn.Embedding(10, 4), torch.nn.Embedding(10, 4)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return (self.a(ids) + self.b(ids)).mean(1)

    with pytest.raises(ValueError, match="several, so name one with embedding='...': a, b"):
        from_torch(TwoTables().eval(), torch.zeros(1, 3, dtype=torch.long))
    m = from_torch(TwoTables().eval(), torch.zeros(1, 3, dtype=torch.long), embedding="b")
    assert m.embedding == "b"
    with pytest.raises(ValueError, match="has no module 'c'"):
        from_torch(TwoTables().eval(), torch.zeros(1, 3, dtype=torch.long), embedding="c")
    with pytest.raises(ValueError, match="no longer than length=2"):
        m.pad([[1, 2, 3]], length=2)
    with pytest.raises(ValueError, match="embeddings of shape \\(3, 5\\) given"):
        m.logits({"embeddings": jnp.zeros((3, 5)), "inputs": xc.fixed(jnp.zeros(3, jnp.int32))})
    with pytest.raises(TypeError, match="x\\['inputs'\\] must be a floating-point array.*xc.fixed"):
        xc.gradient(m.score(0))({"embeddings": jnp.zeros((3, 4)), "inputs": jnp.zeros(3, jnp.int32)})
