"""LRP on the traced program: defining properties in float64, exact bookkeeping of absorbed
relevance, composites by kind / position / layer mark, jit and vmap, the errors, the same map
for three ways of writing a torch model, and Zennit 0.5.1 / Captum on the same weights."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_core as xc
from xai_core.graph import mark
from xai_core.rules import NoRuleError

RULE_NAMES = ["epsilon", "zero", "zplus", "gamma", "alpha1_beta0", "alpha2_beta1", "flat", "wsquare"]


def net(bias: bool = True, seed: int = 0):
    """A random float64 conv-maxpool-residual-dense ReLU network for one (6, 6, 2) example."""
    k = jax.random.split(jax.random.key(seed), 8)
    conv = jax.random.normal(k[0], (3, 3, 2, 4), jnp.float64)
    cb = jax.random.normal(k[1], (4,), jnp.float64) * bias
    w1 = jax.random.normal(k[2], (36, 8), jnp.float64) / 6
    b1 = jax.random.normal(k[3], (8,), jnp.float64) * bias
    w2 = jax.random.normal(k[4], (8, 3), jnp.float64)

    def logits(x):
        y = jax.lax.conv_general_dilated(x[None], conv, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))[0]
        h = mark(jax.nn.relu(y + cb), "conv")
        h = jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (2, 2, 1), (2, 2, 1), "VALID")
        h = jax.nn.relu(h + jnp.mean(h, axis=-1, keepdims=True))  # a residual add, the same ReLU again
        h = mark(jax.nn.relu(h.reshape(-1) @ w1 + b1), "dense")
        return h @ w2

    return logits


def sample() -> jax.Array:
    """One float64 example (call under the x64 fixture)."""
    return jax.random.normal(jax.random.key(9), (6, 6, 2), jnp.float64)


def test_lrp_zero_on_a_bias_free_relu_net_is_gradient_times_input(x64: None) -> None:
    X = sample()
    f = net(bias=False)
    for t in range(3):
        score = lambda x, t=t: f(x)[t]  # noqa: E731
        np.testing.assert_allclose(xc.lrp(score, "zero")(X), xc.gradient_x_input(score)(X), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("composite", RULE_NAMES + ["epsilon_plus_flat", "epsilon_alpha2_beta1", "epsilon_gamma_box"])
def test_relevance_plus_what_was_absorbed_is_the_score(composite: str, x64: None) -> None:
    X = sample()
    f = net()
    score = lambda x: f(x)[1]  # noqa: E731
    r, absorbed = xc.lrp(score, composite, low=-4.0, high=4.0, absorbed=True)(X)
    assert r.shape == X.shape and r.dtype == X.dtype
    np.testing.assert_allclose(float(r.sum() + absorbed), float(score(X)), rtol=1e-10, atol=1e-12)


def test_without_biases_epsilon_conserves_and_the_bias_takes_its_share(x64: None) -> None:
    X = sample()
    score = lambda x: net(bias=False)(x)[0]  # noqa: E731
    r, absorbed = xc.lrp(score, xc.rules.epsilon(1e-12), absorbed=True)(X)
    assert abs(float(absorbed)) < 1e-9
    np.testing.assert_allclose(float(r.sum()), float(score(X)), rtol=1e-9)
    _, absorbed = xc.lrp(lambda x: net()(x)[0], "epsilon", absorbed=True)(X)
    assert abs(float(absorbed)) > 1e-3


def test_zplus_and_alpha1_beta0_maps_are_non_negative_on_non_negative_inputs(x64: None) -> None:
    X = sample()
    f = net(bias=False)
    x = jnp.abs(X)
    for t in range(3):
        score = lambda x, t=t: f(x)[t]  # noqa: E731
        if float(score(x)) <= 0:
            continue
        for rule in ("zplus", "alpha1_beta0"):
            assert float(jnp.min(xc.lrp(score, rule)(x))) >= -1e-12, rule


def test_composites_assign_rules_by_kind_position_and_layer_mark(x64: None) -> None:
    X = sample()
    score = lambda x: net()(x)[2]  # noqa: E731
    eps, zp, fl = xc.rules.epsilon(1e-6), xc.rules.zplus(), xc.rules.flat()
    by_hand = xc.rules.Composite(dense=eps, conv=zp, first=fl)
    np.testing.assert_allclose(xc.lrp(score, by_hand)(X), xc.lrp(score, "epsilon_plus_flat")(X), rtol=1e-12)
    # the first (and only) convolution is flat under epsilon_plus_flat; a layer pattern wins over it
    flat_first = xc.lrp(score, "epsilon_plus_flat")(X)
    zplus_first = xc.lrp(score, "epsilon_plus_flat", layers={"con*": zp})(X)
    assert not np.allclose(flat_first, zplus_first)
    np.testing.assert_allclose(zplus_first, xc.lrp(score, xc.rules.Composite(dense=eps, conv=zp))(X), rtol=1e-12)
    with pytest.raises(ValueError, match="needs the input's bounds"):
        xc.lrp(score, "epsilon_gamma_box")
    with pytest.raises(ValueError, match="unknown composite 'epsilon_plus_flt'.*Did you mean 'epsilon_plus_flat'"):
        xc.lrp(score, "epsilon_plus_flt")
    with pytest.raises(ValueError, match="alpha - beta = 1"):
        xc.rules.alpha_beta(2.0, 2.0)
    with pytest.raises(TypeError, match=r"layers\['dense'\] must be a rule"):
        xc.lrp(score, layers={"dense": "epsilon"})


def test_jit_vmap_traced_target_and_pytree_inputs(x64: None) -> None:
    X = sample()
    f = net()
    xs = jax.random.normal(jax.random.key(3), (3, 6, 6, 2), jnp.float64)
    ts = jnp.array([0, 2, 1])
    fn = jax.jit(jax.vmap(lambda x, t: xc.attribute(lambda x: f(x)[t], x, method="lrp", composite="epsilon_plus_flat")))
    batched = fn(xs, ts)
    for i in range(3):
        one = xc.lrp(lambda x, t=int(ts[i]): f(x)[t])(xs[i])
        np.testing.assert_allclose(batched[i], one, rtol=1e-10, atol=1e-13)
    g = lambda d: f(d["a"] + d["b"])[0]  # noqa: E731
    eps = xc.rules.epsilon(1e-12)
    r = xc.lrp(g, eps)({"a": X, "b": 0.5 * X})  # the add splits relevance in proportion: 2 to 1
    np.testing.assert_allclose(r["a"], 2 * r["b"], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(r["a"] + r["b"], xc.lrp(lambda x: f(x)[0], eps)(1.5 * X), rtol=1e-9, atol=1e-12)


def test_errors_name_the_primitive_and_the_layer() -> None:
    w = jnp.ones((3, 3))
    with pytest.raises(NoRuleError, match=r"sort in layer 'sorter'"):
        xc.lrp(lambda x: jnp.sum(mark(jnp.sort(x @ w), "sorter")), "epsilon")(jnp.arange(3.0))
    with pytest.raises(NoRuleError, match=r"dot_general .*product of two activations.*stop_gradient"):
        xc.lrp(lambda x: (x @ w) @ (x @ w.T), "epsilon")(jnp.arange(3.0))
    # the same product with one factor marked as a weight is fine
    r = xc.lrp(lambda x: (x @ w) @ jax.lax.stop_gradient(x @ w.T), "epsilon")(jnp.arange(3.0))
    assert r.shape == (3,)


def test_an_entrywise_product_of_two_activations_gives_each_factor_half(x64: None) -> None:
    """AttnLRP's uniform rule (Achtibat et al. 2024, lxt's ``mul2``), as in a gated MLP."""
    w = jnp.array([[1.0, 2.0], [-1.0, 0.5]])
    r = xc.lrp(lambda d: jnp.sum(d["a"] * d["b"]), "zero")({"a": jnp.array([1.0, 2.0]), "b": jnp.array([3.0, -1.0])})
    np.testing.assert_allclose(r["a"], [1.5, -1.0])
    np.testing.assert_allclose(r["b"], [1.5, -1.0])
    x = jnp.array([0.3, -1.2])
    gated = lambda x: jnp.sum(jax.nn.silu(x @ w) * (x @ w.T))  # noqa: E731
    r = xc.lrp(gated, "zero")(x)
    assert float(r.sum()) == pytest.approx(float(gated(x)), rel=1e-10)


def test_attention_weights_and_layernorm_scale_are_constants_so_a_transformer_block_conserves(x64: None) -> None:
    k = jax.random.split(jax.random.key(1), 6)
    wq, wk, wv = (jax.random.normal(kk, (8, 8), jnp.float64) / 3 for kk in k[:3])
    w1, w2 = jax.random.normal(k[3], (8, 16), jnp.float64) / 3, jax.random.normal(k[4], (16, 8), jnp.float64) / 4

    def layernorm(h):
        mu = jnp.mean(h, -1, keepdims=True)
        return (h - mu) * jax.lax.rsqrt(jnp.mean((h - mu) ** 2, -1, keepdims=True) + 1e-5)

    def f(x):  # x: (tokens, 8)
        h = layernorm(x)
        att = jax.nn.softmax((h @ wq) @ (h @ wk).T / jnp.sqrt(8.0), axis=-1)
        x = x + att @ (h @ wv)
        x = x + jax.nn.gelu(layernorm(x) @ w1) @ w2
        return jnp.mean(x, 0)[3]

    x = jax.random.normal(k[5], (5, 8), jnp.float64)
    r, absorbed = xc.lrp(f, xc.rules.epsilon(1e-12), absorbed=True)(x)
    assert abs(float(absorbed)) < 1e-8
    np.testing.assert_allclose(float(r.sum()), float(f(x)), rtol=1e-8)


torch = pytest.importorskip("torch")
captum_attr = pytest.importorskip("captum.attr")

from lrp_refs import Logits, block_canonizer, captum_lrp, require_zennit, zennit_composite, zennit_rule  # noqa: E402
from rule_models import CNN, MLP, build, images, three_ways  # noqa: E402

from xai_core.adapters import from_torch  # noqa: E402


def rel(ours: object, theirs: object) -> float:
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    return float(np.abs(ours - theirs).max() / np.abs(theirs).max())


def ours_batched(net: torch.nn.Module, xs: torch.Tensor, targets: list[int], composite: object, **kw: object) -> np.ndarray:
    m = from_torch(net, xs[:1])
    fn = jax.jit(jax.vmap(lambda x, t: xc.lrp(m.score(t), composite, **kw)(x)))
    return np.asarray(fn(jnp.asarray(xs.numpy()), jnp.array(targets)))


def torch_resnet() -> tuple[torch.nn.Module, type]:
    import torch_models

    net = torch_models.build("resnetish").double()
    return net, torch_models.BasicBlock


NETS = {"mlp": (lambda: build(MLP), 8), "cnn": (lambda: build(CNN), 16), "resnet": (lambda: torch_resnet()[0], 16)}
ZENNIT_RULES = {"epsilon": "epsilon", "gamma": "gamma", "zplus": "zplus", "alpha2_beta1": "alpha_beta",
                "flat": "flat", "wsquare": "wsquare"}


def reference(net: torch.nn.Module) -> torch.nn.Module:
    """The module Zennit and Captum see: the logits (the ResNet's forward ends in a log_softmax)."""
    return Logits(net) if hasattr(net, "logits") else net


def canonizers(name: str) -> list[object] | None:
    if name != "resnet":
        return None  # lrp_refs' default: SequentialMergeBatchNorm
    from lrp_refs import exact_merge_batchnorm

    return [exact_merge_batchnorm(), block_canonizer(torch_resnet()[1])]


@pytest.mark.parametrize("name", sorted(NETS))
def test_composites_and_rules_equal_zennit(name: str, x64: None) -> None:
    require_zennit()
    make, size = NETS[name]
    net = make()
    xs, targets = images(2, size), [1, 3]
    worst = {}
    for composite in ("epsilon_plus_flat", "epsilon_alpha2_beta1", "epsilon_gamma_box"):
        kw = {"low": -4.0, "high": 4.0} if composite == "epsilon_gamma_box" else {}
        theirs = zennit_composite(reference(net), xs, targets, composite, canonizers=canonizers(name), **kw)
        worst[composite] = rel(ours_batched(net, xs, targets, composite, **kw), theirs)
    for ours_name, theirs_name in ZENNIT_RULES.items():
        theirs = zennit_rule(reference(net), xs, targets, theirs_name, canonizers=canonizers(name))
        worst[ours_name] = rel(ours_batched(net, xs, targets, ours_name), theirs)
    print(f"\nlrp {name} vs Zennit: " + ", ".join(f"{k} {v:.1e}" for k, v in worst.items()))
    assert max(worst.values()) < 1e-4


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_epsilon_gamma_alpha1_beta0_equal_captum(name: str, x64: None) -> None:
    make, size = NETS[name]
    net = make()
    xs, targets = images(2, size), [0, 2]
    eps = xc.rules.epsilon(1e-9)
    ours = ours_batched(net, xs, targets, xc.rules.Composite(dense=eps, conv=eps, other=eps))
    err = {"epsilon": rel(ours, captum_lrp(net, xs, targets, "epsilon"))}
    # Captum's gamma and alpha1-beta0 use one modified weight for all inputs and the raw bias:
    # Zennit's (ours) on non-negative inputs with the biases zeroed
    with torch.no_grad():
        for m in net.modules():
            if getattr(m, "bias", None) is not None:
                m.bias.zero_()
    pos = xs.abs()
    targets = net(pos).argmax(1).tolist()  # positive logits: Captum's gamma has no output-sign split
    for ours_name, theirs_name in (("gamma", "gamma"), ("alpha1_beta0", "alpha1_beta0")):
        rule = {"gamma": xc.rules.gamma(0.25, 1e-9), "alpha1_beta0": xc.rules.alpha_beta(1.0, 0.0, 1e-9)}[ours_name]
        ours = ours_batched(net, pos, targets, xc.rules.Composite(dense=rule, conv=rule, other=eps))
        err[ours_name] = rel(ours, captum_lrp(net, pos, targets, theirs_name))
    print(f"\nlrp {name} vs Captum LRP: " + ", ".join(f"{k} {v:.1e}" for k, v in err.items()))
    assert max(err.values()) < 1e-4
    # the convention difference: on signed inputs Zennit's (ours) pairs negative inputs with W-,
    # Captum applies W+ (alpha1-beta0) or W + gamma W+ to every input
    rule = xc.rules.alpha_beta(1.0, 0.0, 1e-9)
    signed = ours_batched(net, xs, targets, xc.rules.Composite(dense=rule, conv=rule, other=eps))
    assert rel(signed, captum_lrp(net, xs, targets, "alpha1_beta0")) > 1e-2


def test_three_ways_of_writing_a_model_give_one_lrp_map(x64: None) -> None:
    nets = three_ways()
    xs, targets = images(2), [0, 4]
    for composite in ("epsilon_plus_flat", "epsilon_alpha2_beta1", "epsilon"):
        maps = {s: ours_batched(n, xs, targets, composite) for s, n in nets.items()}
        for style in ("functional", "reused"):
            assert rel(maps[style], maps["modules"]) < 1e-6, (composite, style)


@pytest.mark.parametrize("bias", [False, True])
def test_a_tiny_vit_through_from_torch_conserves(bias: bool, x64: None) -> None:
    from vit_model import TinyViT

    torch.manual_seed(0)
    net = TinyViT(bias).double().eval()
    xs = images(1, 16)
    m = from_torch(net, xs)
    x = jnp.asarray(xs.numpy()[0])
    for t in range(2):
        r, absorbed = xc.lrp(m.score(t), xc.rules.epsilon(1e-12), absorbed=True)(x)
        score = float(m.logits(x)[t])
        assert abs(float(r.sum() + absorbed) - score) < 1e-9
        if not bias:  # nothing absorbs: the input's relevance is the score
            assert abs(float(r.sum()) - score) < 1e-6 * max(1.0, abs(score))


def test_attnlrp_sends_relevance_through_the_softmax_by_its_rule(x64: None) -> None:
    """AttnLRP (Achtibat et al. 2024): R_x = x (R_s - s sum(R_s)) at a softmax; here R_s = s v
    (LRP-0 of the weighted sum), so R_x = x s (v - f(x))."""
    v = jnp.array([1.0, -2.0, 0.5, 3.0])
    f = lambda x: jax.nn.softmax(x) @ v  # noqa: E731
    x = jnp.array([0.3, -1.0, 2.0, 0.1])
    s = jax.nn.softmax(x)
    np.testing.assert_allclose(xc.lrp(f, "zero", attention="attnlrp")(x), x * s * (v - f(x)), rtol=1e-12)
    with pytest.raises(ValueError, match="attention"):
        xc.lrp(f, attention="attn")
