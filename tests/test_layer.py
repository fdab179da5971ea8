"""Layer and neuron attributions (xc.layer) and Captum's Layer* / Neuron* / LayerGradCam /
GuidedGradCam on the same torch weights: a plain CNN and a layer inside a residual block."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_core as xc

torch = pytest.importorskip("torch")
captum_attr = pytest.importorskip("captum.attr")

import torch_models  # noqa: E402
from lrp_refs import Logits  # noqa: E402
from rule_models import CNN, build, images  # noqa: E402

from xai_core.adapters import from_torch  # noqa: E402


def rel(ours: object, theirs: object) -> float:
    ours = np.asarray(ours, np.float64)
    theirs = theirs.detach().numpy() if hasattr(theirs, "detach") else np.asarray(theirs)
    return float(np.abs(ours - theirs).max() / np.abs(theirs).max())


def module(net: torch.nn.Module, name: str) -> torch.nn.Module:
    return dict(net.named_modules())[name]


CASES = {"cnn conv2": (lambda: build(CNN), "3", 16), "resnet layer1.1.conv2": (lambda: torch_models.build("resnetish").double(), "layer1.1.conv2", 16)}



@pytest.mark.parametrize("case", sorted(CASES))
def test_layer_and_neuron_methods_equal_captum(case: str, x64: None) -> None:
    make, name, size = CASES[case]
    net = make()
    ref = Logits(net)
    lay = module(net, name)
    xs, x0 = images(2, size), images(1, size, seed=5) * 0.3
    targets = [1, 3]
    m = from_torch(net, xs[:1])
    X, X0 = jnp.asarray(xs.numpy()), jnp.asarray(x0.numpy()[0])
    T = jnp.array(targets)

    def ours(fn):
        return np.asarray(jax.vmap(fn)(X, T))

    err = {}
    err["activation"] = rel(jax.vmap(xc.layer.activation(m, name))(X), captum_attr.LayerActivation(ref, lay).attribute(xs))
    err["gradient_x_activation"] = rel(ours(xc.layer.gradient_x_activation(m, name)),
                                       captum_attr.LayerGradientXActivation(ref, lay).attribute(xs, target=targets))
    err["integrated_gradients"] = rel(
        ours(xc.layer.integrated_gradients(m, name, baseline=X0, steps=16, rule="gauss_legendre")),
        captum_attr.LayerIntegratedGradients(ref, lay).attribute(xs, baselines=x0, target=targets, n_steps=16))
    err["conductance"] = rel(ours(xc.layer.conductance(m, name, baseline=X0, steps=16)),
                             captum_attr.LayerConductance(ref, lay).attribute(xs, baselines=x0, target=targets, n_steps=16))
    neuron = (2, 3, 4)
    err["neuron_gradient"] = rel(jax.vmap(xc.layer.neuron_gradient(m, name, neuron))(X),
                                 captum_attr.NeuronGradient(ref, lay).attribute(xs, neuron_selector=neuron))
    err["neuron_integrated_gradients"] = rel(
        jax.vmap(xc.layer.neuron_integrated_gradients(m, name, neuron, baseline=X0, steps=16, rule="gauss_legendre"))(X),
        captum_attr.NeuronIntegratedGradients(ref, lay).attribute(xs, neuron_selector=neuron, baselines=x0, n_steps=16))
    gc = captum_attr.LayerGradCam(ref, lay).attribute(xs, target=targets, relu_attributions=True)[:, 0]
    err["grad_cam"] = rel(ours(xc.cam.grad_cam(m, name, upsample=False)), gc)
    if case.startswith("cnn"):  # Captum's LayerDeepLift on the plain CNN (a skip connection changes the convention)
        err["deeplift"] = rel(ours(xc.layer.deeplift(m, name, baseline=X0)),
                              captum_attr.LayerDeepLift(ref, lay).attribute(xs, baselines=x0, target=targets))
    print(f"\n{case} vs Captum: " + ", ".join(f"{k} {v:.1e}" for k, v in err.items()))
    assert max(err.values()) < 1e-4


def test_layer_ig_sums_to_the_score_difference_and_conductance_converges(x64: None) -> None:
    net = build(CNN)
    x, x0 = images(1), images(1, seed=5) * 0.3
    m = from_torch(net, x)
    X, X0 = jnp.asarray(x.numpy()[0]), jnp.asarray(x0.numpy()[0])
    change = float(m.logits(X)[2] - m.logits(X0)[2])
    gaps = [abs(float(xc.layer.integrated_gradients(m, "3", baseline=X0, steps=n)(X, 2).sum()) - change)
            for n in (16, 256)]  # a piecewise-linear rest of the model: the quadrature error shrinks with the steps
    assert gaps[1] < 1e-2 * abs(change) and gaps[1] < gaps[0]
    dl = xc.layer.deeplift(m, "3", baseline=X0)(X, 2)
    assert abs(float(dl.sum()) - change) < 1e-9 * abs(change)
    cond = xc.layer.conductance(m, "3", baseline=X0, steps=256)(X, 2)
    assert abs(float(cond.sum()) - change) < 1e-2 * abs(change)
