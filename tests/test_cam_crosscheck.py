"""Every CAM against pytorch-grad-cam 1.5.7 on the same torch weights, layer and target, at the
layer's resolution before its min-max scaling and OpenCV resize (``tests/cam_refs.py``), the
resize against grad-cam's own separately, and guided Grad-CAM against Captum's."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_core as xc

torch = pytest.importorskip("torch")

import torch_models  # noqa: E402
from lrp_refs import Logits  # noqa: E402
from cam_refs import captum_guided_gradcam, gradcam_full, gradcam_raw, require_gradcam  # noqa: E402

from xai_core.adapters import from_torch  # noqa: E402

OURS = {"gradcam": "grad_cam", "hirescam": "hires_cam", "gradcam++": "grad_cam_plus_plus", "xgradcam": "xgrad_cam",
        "layercam": "layer_cam", "eigencam": "eigen_cam", "scorecam": "score_cam", "ablationcam": "ablation_cam"}


class CNN(torch.nn.Sequential):
    def __init__(self) -> None:
        super().__init__(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 16, 3, padding=1),
                         torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 5))


def models() -> dict[str, tuple[torch.nn.Module, torch.nn.Module, str]]:
    torch.manual_seed(0)
    cnn = CNN().eval()
    res = torch_models.build("resnetish")
    return {"cnn relu": (cnn, cnn[3], "3"), "resnet block": (res, res.layer2[0], "layer2.0")}



def rel(ours: np.ndarray, theirs: np.ndarray) -> float:
    return float(np.abs(ours - theirs).max() / np.abs(theirs).max())


@pytest.mark.parametrize("case", ["cnn relu", "resnet block"])
def test_every_cam_equals_grad_cam_at_the_layer_resolution(case: str) -> None:
    require_gradcam()
    net, module, layer = models()[case]
    xs = torch_models.inputs(2, seed=3)
    targets = [1, 3]
    m = from_torch(net, xs[:1])
    X, T = jnp.asarray(xs.numpy()), jnp.array(targets)
    err = {}
    for theirs_name, ours_name in OURS.items():
        ours = np.asarray(jax.jit(jax.vmap(getattr(xc.cam, ours_name)(m, layer, upsample=False)))(X, T))
        if theirs_name == "eigencam":  # signed, no ReLU; the SVD's sign is arbitrary: compare up to it
            theirs = gradcam_raw(theirs_name, Logits(net), module, xs, targets)
            theirs = theirs * np.sign((theirs * ours).sum(axis=(1, 2), keepdims=True))
        else:
            theirs = gradcam_raw(theirs_name, Logits(net), module, xs, targets, relu=True)
        err[theirs_name] = rel(ours, theirs)
    print(f"\n{case} vs grad-cam: " + ", ".join(f"{k} {v:.1e}" for k, v in err.items()))
    assert max(err.values()) < 1e-4


def test_upsampling_equals_grad_cams_resize_of_the_same_map() -> None:
    require_gradcam()
    net, module, layer = models()["resnet block"]
    xs = torch_models.inputs(2, seed=3)
    m = from_torch(net, xs[:1])
    targets = net.logits(xs).argmax(1).tolist()  # the predicted classes: maps with something in them
    raw = jax.vmap(xc.cam.grad_cam(m, layer, upsample=False))(jnp.asarray(xs.numpy()), jnp.array(targets))

    def scale(r: jax.Array) -> jax.Array:  # grad-cam's min-max scaling, around its resize
        r = r - r.min(axis=(1, 2), keepdims=True)
        return r / (r.max(axis=(1, 2), keepdims=True) + 1e-7)

    ours = np.asarray(scale(jax.vmap(lambda c: xc.cam.resize(c, (16, 16)))(scale(raw))))
    theirs = gradcam_full("gradcam", Logits(net), module, xs, targets)
    print(f"\nresize vs grad-cam's OpenCV resize: {rel(ours, theirs):.1e} (maps up to {theirs.max():.2f})")
    assert (theirs.max(axis=(1, 2)) > 0.5).all()
    assert rel(ours, theirs) < 1e-4


def test_guided_grad_cam_equals_captums() -> None:
    pytest.importorskip("captum")
    net, module, layer = models()["cnn relu"]
    xs = torch_models.inputs(2, seed=3)
    m = from_torch(net, xs[:1])
    ours = np.asarray(jax.vmap(xc.cam.guided_grad_cam(m, "2", interpolation="nearest"))(
        jnp.asarray(xs.numpy()), jnp.array([1, 3])))
    theirs = captum_guided_gradcam(net, net[2], xs, [1, 3])
    print(f"\nguided_grad_cam vs Captum GuidedGradCam: {rel(ours, theirs):.1e}")
    assert rel(ours, theirs) < 1e-4
