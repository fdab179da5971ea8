"""HuggingFace vision models passed to from_torch as they are (small random configs): logits equal
`.logits`, gradients equal autograd, IG equals Captum's; bfloat16 / float16 / float64 models."""

from __future__ import annotations

import warnings

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
captum_attr = pytest.importorskip("captum.attr")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import xai_core as xc  # noqa: E402
from xai_core.adapters import from_torch  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients")

CONFIGS = {
    "vit": lambda: transformers.ViTForImageClassification(transformers.ViTConfig(
        image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, num_labels=5)),
    "swin": lambda: transformers.SwinForImageClassification(transformers.SwinConfig(
        image_size=32, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[1, 2], window_size=4,
        num_labels=5)),
    "convnext": lambda: transformers.ConvNextForImageClassification(transformers.ConvNextConfig(
        num_stages=2, hidden_sizes=[8, 16], depths=[1, 1], num_labels=5)),
    "resnet": lambda: transformers.ResNetForImageClassification(transformers.ResNetConfig(
        embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic", num_labels=5)),
}
TARGETS = [1, 3]


def hf(name: str, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    torch.manual_seed(0)
    return CONFIGS[name]().eval().to(dtype)


def images(n: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(1)).to(dtype)


def rel(ours: object, theirs: torch.Tensor) -> float:
    ours, theirs = np.asarray(ours, np.float64), theirs.detach().double().numpy()
    return float(np.abs(ours - theirs).max() / np.abs(theirs).max())


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def pair(request: pytest.FixtureRequest):
    net = hf(request.param)
    return request.param, net, from_torch(net, images(1))


def test_a_model_output_gives_its_logits_and_gradients_equal_autograd(pair) -> None:
    name, net, m = pair
    xs = images(2)
    np.testing.assert_allclose(jax.vmap(m.logits)(jnp.asarray(xs.numpy())), net(xs).logits.detach().numpy(),
                               rtol=1e-4, atol=1e-5)
    xs.requires_grad_(True)
    net(pixel_values=xs).logits[torch.arange(2), torch.tensor(TARGETS)].sum().backward()
    ours = jax.vmap(lambda x, t: jax.grad(m.score(t))(x))(jnp.asarray(xs.detach().numpy()), jnp.array(TARGETS))
    assert rel(ours, xs.grad) < 1e-4, name


def test_integrated_gradients_equal_captums(pair) -> None:
    name, net, m = pair
    xs = images(2)
    theirs = captum_attr.IntegratedGradients(lambda x: net(pixel_values=x).logits).attribute(
        xs, target=TARGETS, n_steps=16, method="gausslegendre")
    ours = jax.jit(jax.vmap(lambda m, x, t: xc.attribute(m.score(t), x, method="ig", steps=16, rule="gauss_legendre"),
                            in_axes=(None, 0, 0)))(m, jnp.asarray(xs.numpy()), jnp.array(TARGETS))
    err = rel(ours, theirs)
    print(f"\nIG {name}: {err:.1e}")
    assert err < 1e-4, name


def test_the_hf_layers_are_module_names(pair) -> None:
    name, net, m = pair
    names = {layer.name for layer in m.layers}
    assert "classifier" in names
    assert names <= {n for n, _ in net.named_modules()} | {f"{n}:{k}" for n, _ in net.named_modules() for k in range(1, 9)}


@pytest.mark.parametrize("dtype,tol", [(torch.bfloat16, 5e-2), (torch.float16, 5e-3)])
def test_low_precision_models_convert_and_keep_their_dtype(dtype: torch.dtype, tol: float) -> None:
    net = hf("resnet", dtype)
    x = images(1, dtype)
    m = from_torch(net, x)
    one = jnp.asarray(x[0].float().numpy()).astype({torch.bfloat16: jnp.bfloat16, torch.float16: jnp.float16}[dtype])
    got = np.asarray(m.logits(one), np.float32)
    expected = net.float()(x.float()).logits[0].detach().numpy()
    assert np.abs(got - expected).max() <= tol * max(1.0, np.abs(expected).max())
    a = xc.attribute(m.score(2), one, method="ig", steps=8)
    assert a.dtype == one.dtype and a.shape == one.shape
    assert bool(jnp.all(jnp.isfinite(a.astype(jnp.float32))))


def test_a_float64_model_warns_that_it_runs_in_float32() -> None:
    net = hf("resnet", torch.float64)
    with pytest.warns(UserWarning, match="jax_enable_x64"):
        m = from_torch(net, images(1, torch.float64))
    assert m.logits(jnp.zeros((3, 32, 32))).dtype == jnp.float32


def test_float64_runs_in_float64_with_x64(x64: None) -> None:
    net = hf("resnet", torch.float64)
    x = images(1, torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = from_torch(net, x)
    got = m.logits(jnp.asarray(x[0].numpy()))
    assert got.dtype == jnp.float64
    np.testing.assert_allclose(got, net(x).logits[0].detach().numpy(), rtol=1e-10, atol=1e-12)


def test_outputs_that_are_not_one_tensor_say_to_wrap_the_module() -> None:
    class TwoHeads(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(4, 3)

        def forward(self, x: torch.Tensor) -> dict:
            return {"a": self.fc(x), "b": self.fc(x) * 2}

    with pytest.raises(TypeError, match="must return one tensor.*returned dict.*Wrap the module"):
        from_torch(TwoHeads().eval(), torch.zeros(1, 4))
