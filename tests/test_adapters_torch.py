"""from_torch: PyTorch modules as pure JAX logits functions (torchax), layers and errors."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings

import pytest

torch = pytest.importorskip("torch")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from torch import nn  # noqa: E402

import xai_core as xc  # noqa: E402
from torch_models import MODELS, SHAPE, build, inputs  # noqa: E402
from xai_core.adapters import _torchax, from_torch  # noqa: E402

CUTS = {"small_cnn": "softmax", "resnetish": "log_softmax", "functional": "softmax"}


@pytest.fixture(scope="module", params=sorted(MODELS))
def pair(request: pytest.FixtureRequest) -> tuple[str, nn.Module, xc.adapters.Model]:
    net = build(request.param)
    return request.param, net, from_torch(net, inputs(1))


def test_logits_equal_the_torch_forward_before_the_softmax(pair) -> None:
    name, net, m = pair
    xs = inputs(3)
    with torch.no_grad():
        expected = net.logits(xs).numpy()
    got = np.asarray(jax.vmap(m.logits)(jnp.asarray(xs.numpy())))
    assert m.cut == CUTS[name]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_gradients_equal_torch_autograd(pair) -> None:
    _, net, m = pair
    xs = inputs(2).requires_grad_(True)
    net.logits(xs)[:, 3].sum().backward()
    got = jax.vmap(jax.grad(m.score(3)))(jnp.asarray(xs.detach().numpy()))
    np.testing.assert_allclose(np.asarray(got), xs.grad.numpy(), rtol=1e-4, atol=1e-6)


def test_every_listed_layer_splits_so_that_tail_of_head_is_the_logits(pair) -> None:
    _, net, m = pair
    x = jnp.asarray(inputs(1)[0].numpy())
    z = m.logits(x)
    names = [layer.name for layer in m.layers]
    assert len(names) >= 2
    for layer in m.layers:
        head, tail = m.split(layer.name)
        a = head(x)
        assert a.shape == layer.shape
        try:
            out = tail(a)
        except ValueError as e:
            assert "skip connection" in str(e)
            out = tail(a, x)
        np.testing.assert_allclose(out, z, rtol=1e-5, atol=1e-5, err_msg=layer.name)


def test_layers_are_the_torch_module_names_with_per_example_shapes() -> None:
    net = build("resnetish")
    m = from_torch(net, inputs(1))
    shapes = {layer.name: layer.shape for layer in m.layers}
    assert shapes["conv1"] == (8, 16, 16)
    assert shapes["layer2.0.downsample.0"] == (16, 8, 8)
    assert shapes["layer2"] == (16, 8, 8) and shapes["fc"] == (5,)
    assert "layer1.0.relu:1" in shapes  # the block's shared ReLU runs twice
    head, tail = m.split("layer2")  # the last stage cuts the graph: no input needed
    x = jnp.asarray(inputs(1)[0].numpy())
    np.testing.assert_allclose(tail(head(x)), m.logits(x), rtol=1e-5, atol=1e-5)
    head, tail = m.split("layer1.0.conv1")  # bypassed by the block's identity path
    with pytest.raises(ValueError, match=r"after layer 'layer1.0.conv1' also reads the input.*tail\(a, x\)"):
        tail(head(x))
    with pytest.raises(ValueError, match=r"unknown layer 'layer9'.*'conv1'"):
        m.split("layer9")
    with pytest.raises(ValueError, match=r"made for one example of shape \(3, 16, 16\); got \(3, 8, 8\)"):
        head(jnp.ones((3, 8, 8)))


def test_gradients_through_split_match_torch_hooks() -> None:
    """The gradient at a layer (what Grad-CAM needs) equals torch's, via a hook."""
    net = build("resnetish")
    m = from_torch(net, inputs(1))
    xs = inputs(1)
    seen = {}

    def keep(mod: nn.Module, args: object, out: torch.Tensor) -> None:
        out.retain_grad()
        seen["a"] = out

    handle = net.layer2.register_forward_hook(keep)
    net.logits(xs)[0, 2].backward()
    handle.remove()
    head, tail = m.split("layer2")
    x = jnp.asarray(xs[0].numpy())
    got = jax.grad(lambda a: tail(a)[2])(head(x))
    np.testing.assert_allclose(np.asarray(got), seen["a"].grad[0].numpy(), rtol=1e-4, atol=1e-6)


def test_traced_targets_under_jit_and_vmap_equal_the_per_example_loop() -> None:
    m = from_torch(build("resnetish"), inputs(1))
    xs = jnp.asarray(inputs(3).numpy())
    ts = jnp.array([0, 4, 2])
    batched = jax.jit(jax.vmap(lambda x, t: xc.attribute(m.score(t), x, method="ig", steps=8)))(xs, ts)
    for x, t, got in zip(xs, ts.tolist(), batched):
        np.testing.assert_allclose(got, xc.attribute(m.score(t), x, method="ig", steps=8), rtol=1e-5, atol=1e-6)


def test_a_model_in_train_mode_warns_is_traced_in_eval_mode_and_keeps_its_mode() -> None:
    net = build("resnetish").train()
    net.layer1.eval()  # a mixed state must survive too
    with pytest.warns(UserWarning, match=r"train\(\) mode; it is traced with eval semantics"):
        m = from_torch(net, inputs(1))
    assert net.training and not net.layer1.training and net.layer2.training
    net.eval()
    with torch.no_grad():
        expected = net.logits(inputs(2)).numpy()
    np.testing.assert_allclose(jax.vmap(m.logits)(jnp.asarray(inputs(2).numpy())), expected,
                               rtol=1e-5, atol=1e-5)


def test_probs_and_log_probs_match_the_torch_outputs() -> None:
    net = build("small_cnn")
    x = inputs(1)
    with torch.no_grad():
        probs = net(x)[0].numpy()
    assert np.allclose(probs.sum(), 1.0)
    xj = jnp.asarray(x[0].numpy())
    np.testing.assert_allclose(from_torch(net, x, output="probs").logits(xj), probs, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(from_torch(net, x, output="log_probs").logits(xj), np.log(probs),
                               rtol=1e-5, atol=1e-5)


def test_a_model_ending_in_plain_logits_is_left_alone() -> None:
    net = nn.Sequential(*list(build("small_cnn"))[:-1]).eval()
    m = from_torch(net, inputs(1))
    x = inputs(1)
    assert m.cut is None
    with torch.no_grad():
        np.testing.assert_allclose(m.logits(jnp.asarray(x[0].numpy())), net(x)[0].numpy(), rtol=1e-5, atol=1e-5)


def test_hooks_are_removed_and_weights_are_copied() -> None:
    net = build("small_cnn")
    m = from_torch(net, inputs(1))
    m.logits(jnp.ones(SHAPE))
    assert all(not mod._forward_hooks and not mod._forward_pre_hooks for mod in net.modules())
    assert set(m.params) == set(net.state_dict())
    with torch.no_grad():
        net[0].weight.zero_()  # the model keeps the weights it was built with
    assert float(jnp.abs(m.params["0.weight"]).sum()) > 0


def test_wrong_input_shape_names_the_expected_one() -> None:
    m = from_torch(build("small_cnn"), inputs(1))
    with pytest.raises(ValueError, match=r"expects one example of shape \(3, 16, 16\).*got shape \(1, 3, 16, 16\).*batch of 1"):
        m.logits(jnp.ones((1, *SHAPE)))
    with pytest.raises(ValueError, match=r"expects one example of shape \(3, 16, 16\)"):
        m.logits(jnp.ones((16, 16, 3)))


def test_bad_arguments_get_clear_errors() -> None:
    with pytest.raises(TypeError, match="expected a torch.nn.Module, got function"):
        from_torch(lambda x: x, inputs(1))
    with pytest.raises(ValueError, match=r"leading batch axis.*got shape \(\)"):
        from_torch(build("small_cnn"), torch.tensor(1.0))
    with pytest.raises(TypeError, match="example_input has dtype torch.int64.*has no nn.Embedding"):
        from_torch(build("small_cnn"), torch.zeros((1, *SHAPE), dtype=torch.int64))
    with pytest.raises(ValueError, match=r"could not be applied to one example of shape \(3, 9, 9\)"):
        from_torch(build("small_cnn"), torch.zeros((1, 3, 9, 9)))


def test_an_unsupported_op_names_the_op_and_the_layer() -> None:
    class Pooled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 3)
            self.pool = nn.FractionalMaxPool2d(2, output_size=(3, 3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.flatten(self.pool(self.conv(x)), 1)

    with pytest.raises(NotImplementedError,
                       match=r"op aten::fractional_max_pool2d in layer 'pool' \(FractionalMaxPool2d\)"):
        from_torch(Pooled().eval(), inputs(1))


def test_a_missing_torch_names_the_pip_install() -> None:
    code = textwrap.dedent("""
        import sys
        sys.modules["torch"] = None  # as if torch were not installed
        from xai_core.adapters import from_torch
        try:
            from_torch(object(), None)
        except ImportError as e:
            print(e)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "pip install torch==2.13.0 'xai-core[torch]'" in out


def test_the_torchax_import_shim_is_still_needed() -> None:
    """Fails once torchax imports beside this torch without help: then delete
    adapters/_torchax.py and import torchax directly."""
    _torchax.load()
    assert _torchax.MISSING, ("torchax now imports without the shim; remove "
                              "xai_core/adapters/_torchax.py and import torchax directly.")
    assert all("name" in op.lower() for op in _torchax.MISSING), _torchax.MISSING


def test_no_probability_warning_for_converted_models() -> None:
    m = from_torch(build("functional"), inputs(1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m.logits(jnp.ones(SHAPE))
