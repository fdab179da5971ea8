"""Reference CAM maps from pytorch-grad-cam 1.5.7 (PyPI ``grad-cam``) and Captum, for
cross-checks (helpers only, no tests). Formulas and quirks: ``CAM_CONVENTIONS.md``.

Conventions shared by every helper:

* ``model`` returns logits (wrap a model with a ``logits`` method in ``lrp_refs.Logits``);
  ``targets`` is one class index per example (``ClassifierOutputTarget``: the score is the
  raw logit ``model(x)[n, targets[n]]``, never a softmax); a single int is used for all.
* ``layer_module`` is an ``nn.Module`` of ``model``; both libraries take its forward
  *output* (grad-cam: a forward hook that saves the output and a tensor hook on it for the
  gradient; Captum: ``attribute_to_layer_input=False``). Do not pick a module that is
  called more than once per forward (e.g. the shared ``relu`` of ``torch_models.BasicBlock``):
  grad-cam would take the first call, Ablation-CAM would replace every call.
* The result is float64 numpy with the batch kept; ``model`` should share ``x``'s dtype
  (grad-cam works in float64, but Eigen-, Score- and Ablation-CAM compute in float32
  somewhere, see below).

grad-cam needs ``torchvision`` at import time (``torchvision.transforms`` Compose, Normalize,
ToTensor; ``torchvision.transforms.functional.resize``; ``import torchvision``), none of it on
the CAM paths used here. ``import_gradcam`` puts a stub there only for the duration of
``import pytorch_grad_cam`` and removes it afterwards (as ``lrp_refs.import_zennit``), so
other code does not see a fake torchvision.
"""

from __future__ import annotations

import sys
import types
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from reference_imports import import_with_stub, require

__all__ = [
    "GRADCAM_METHODS",
    "captum_guided_gradcam",
    "captum_layer_gradcam",
    "gradcam_full",
    "gradcam_raw",
    "gradcam_weights",
    "import_gradcam",
    "require_gradcam",
]

#: method name -> grad-cam class name.
GRADCAM_METHODS = {
    "gradcam": "GradCAM",
    "hirescam": "HiResCAM",
    "gradcam++": "GradCAMPlusPlus",
    "xgradcam": "XGradCAM",
    "layercam": "LayerCAM",
    "eigencam": "EigenCAM",
    "scorecam": "ScoreCAM",
    "ablationcam": "AblationCAM",
}
#: methods whose map is ``sum_k w[n, k] * A[n, k]`` (``get_cam_weights`` is defined).
_WEIGHTED = ("gradcam", "gradcam++", "xgradcam", "scorecam", "ablationcam")
_GRADIENT_FREE = ("eigencam", "scorecam", "ablationcam")

_TV_NAMES = ("torchvision", "torchvision.transforms", "torchvision.transforms.functional")


# ---------------------------------------------------------------------------------------
# grad-cam import


def _torchvision_stub() -> dict[str, types.ModuleType]:
    tv = types.ModuleType("torchvision")
    transforms = types.ModuleType("torchvision.transforms")
    functional = types.ModuleType("torchvision.transforms.functional")
    ops = types.ModuleType("torchvision.ops")

    def _unavailable(name: str):
        def fail(*args, **kwargs):
            raise RuntimeError(f"torchvision.{name} is a test stub (tests/cam_refs.py): not available")

        fail.__name__ = name.rsplit(".", 1)[-1]
        return fail

    for name in ("Compose", "Normalize", "ToTensor"):  # used by grad-cam's preprocess_image only
        setattr(transforms, name, _unavailable(f"transforms.{name}"))
    functional.resize = _unavailable("transforms.functional.resize")  # SESS only
    ops.box_iou = _unavailable("ops.box_iou")  # FasterRCNNBoxScoreTarget only
    tv.transforms, transforms.functional, tv.ops = transforms, functional, ops
    return dict(zip(_TV_NAMES, (tv, transforms, functional)))


def import_gradcam() -> types.ModuleType:
    """The ``pytorch_grad_cam`` package (grad-cam 1.5.7), fully imported. Idempotent.

    Raises ImportError when grad-cam is not installed. A real ``torchvision.transforms``
    already in ``sys.modules`` is used as is; otherwise a stub is installed for the import
    only and removed afterwards (the previous ``sys.modules`` entries are restored)."""
    return import_with_stub("pytorch_grad_cam", ("base_cam", "score_cam", "ablation_cam", "utils.image",
                                                 "utils.model_targets", "utils.svd_on_activations", "sess"),
                            _torchvision_stub, "pip install --no-deps grad-cam==1.5.7 opencv-python-headless ttach "
                            "scikit-learn scipy tqdm matplotlib")


def require_gradcam() -> types.ModuleType:
    """``import_gradcam()``, or ``pytest.skip`` when grad-cam is missing (an error in CI)."""
    return require(import_gradcam)


# ---------------------------------------------------------------------------------------
# grad-cam runs


def _target_list(targets: int | Sequence[int], n: int) -> list[int]:
    t = [int(v) for v in np.asarray(targets, dtype=np.int64).reshape(-1)]
    if len(t) == 1:
        t = t * n
    if len(t) != n:
        raise ValueError(f"{len(t)} targets for a batch of {n}")
    return t


class _NoTqdm:
    """Stands in for the ``tqdm`` module inside score_cam/ablation_cam: no progress bars."""

    @staticmethod
    def tqdm(iterable, *args, **kwargs):
        return iterable


def _run(method: str, model: nn.Module, layer_module: nn.Module, x: torch.Tensor, targets,
         batch_size: int | None):
    """Run grad-cam's ``method`` as its ``__call__`` does; returns (full output, raw maps,
    channel weights or None), all as grad-cam computed them (numpy)."""
    if method not in GRADCAM_METHODS:
        raise ValueError(f"method must be one of {sorted(GRADCAM_METHODS)}, not {method!r}")
    gc = import_gradcam()
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cam = getattr(gc, GRADCAM_METHODS[method])(model=model, target_layers=[layer_module])
    if batch_size is not None:  # Score-CAM: 16 by default, Ablation-CAM: 32
        cam.batch_size = int(batch_size)
    raw, weights = [], []
    get_image, get_weights = cam.get_cam_image, cam.get_cam_weights

    def spy_image(*args, **kwargs):
        out = get_image(*args, **kwargs)
        raw.append(np.array(out, copy=True))
        return out

    def spy_weights(*args, **kwargs):
        out = get_weights(*args, **kwargs)
        weights.append(np.array(out, copy=True))
        return out

    cam.get_cam_image = spy_image  # instance attributes shadow the methods
    if method in _WEIGHTED:
        cam.get_cam_weights = spy_weights
    inp = x.detach().clone()
    if method not in _GRADIENT_FREE:
        inp.requires_grad_(True)  # gradients reach the layer even with frozen parameters
    quiet = [sys.modules[f"pytorch_grad_cam.{m}"] for m in ("score_cam", "ablation_cam")]
    saved_tqdm = [m.tqdm for m in quiet]
    try:
        for m in quiet:
            m.tqdm = _NoTqdm
        full = cam(input_tensor=inp, targets=[ClassifierOutputTarget(t) for t in _target_list(targets, x.shape[0])])
    finally:
        for m, t in zip(quiet, saved_tqdm):
            m.tqdm = t
        cam.activations_and_grads.release()
        model.zero_grad(set_to_none=True)
    if len(raw) != 1:
        raise RuntimeError(f"expected one get_cam_image call, got {len(raw)}")
    return np.asarray(full), raw[0], (weights[0] if weights else None)


def gradcam_raw(method: str, model: nn.Module, layer_module: nn.Module, x: torch.Tensor,
                targets: int | Sequence[int], *, relu: bool = False,
                batch_size: int | None = None) -> np.ndarray:
    """grad-cam's map at the layer's resolution, before its ReLU, min-max scaling and resize.

    It is exactly what ``<Method>.get_cam_image`` returns inside grad-cam's own ``__call__``
    (captured by wrapping that method, so hooks, backward pass and forward passes are
    grad-cam's): float64 numpy of shape ``(N, h, w)``, ``(h, w)`` the layer output's. With A
    the layer output ``(N, C, h, w)`` and g = d logit[target] / dA:

    * gradcam, gradcam++, xgradcam, scorecam, ablationcam: ``sum_k w[n,k] A[n,k]`` (see
      ``gradcam_weights``), signed;
    * hirescam: ``sum_k g A``; layercam: ``sum_k relu(g) A``;
    * eigencam: the centred activations projected on the first right-singular vector,
      signed, with numpy's (LAPACK's) arbitrary SVD sign, computed in float32.

    ``relu=True`` applies ``np.maximum(raw, 0)``, which is grad-cam's next step (before
    ``scale_cam_image``). ``batch_size`` sets Score-/Ablation-CAM's forward batch (16 / 32
    by default; for Ablation-CAM on a layer whose minimum is not 0 it changes the result).
    """
    _, raw, _ = _run(method, model, layer_module, x, targets, batch_size)
    raw = raw.astype(np.float64)
    return np.maximum(raw, 0.0) if relu else raw


def gradcam_weights(method: str, model: nn.Module, layer_module: nn.Module, x: torch.Tensor,
                    targets: int | Sequence[int], *, batch_size: int | None = None) -> np.ndarray:
    """The channel weights ``w`` (float64, ``(N, C)``) of a weighted method (gradcam,
    gradcam++, xgradcam, scorecam, ablationcam), as ``get_cam_weights`` returned them in
    grad-cam's ``__call__``; ``gradcam_raw`` is ``sum_k w[:, k, None, None] * A[:, k]``."""
    if method not in _WEIGHTED:
        raise ValueError(f"{method!r} has no channel weights; one of {_WEIGHTED}")
    _, _, weights = _run(method, model, layer_module, x, targets, batch_size)
    return np.asarray(weights, dtype=np.float64)


def gradcam_full(method: str, model: nn.Module, layer_module: nn.Module, x: torch.Tensor,
                 targets: int | Sequence[int], *, batch_size: int | None = None) -> np.ndarray:
    """grad-cam's usual output, float64 ``(N, H, W)`` at the input's size:
    ``minmax(minmax_resize(relu(raw)))``, i.e. per example ``r = relu(raw)``,
    ``r = (r - min r) / (max(r - min r) + 1e-7)``, ``cv2.resize(float32(r), (W, H))``
    (INTER_LINEAR, half-pixel centres), then, with a single layer,
    ``aggregate_multi_layers``' relu (a no-op), mean, and a second ``scale_cam_image``
    (min-max again with 1e-7, no resize). Float32 throughout (``np.float32`` in
    ``scale_cam_image``)."""
    full, _, _ = _run(method, model, layer_module, x, targets, batch_size)
    return full.astype(np.float64)


# ---------------------------------------------------------------------------------------
# Captum


def captum_layer_gradcam(model: nn.Module, layer_module: nn.Module, x: torch.Tensor,
                         targets: int | Sequence[int], relu: bool = True, *,
                         attribute_to_layer_input: bool = False) -> np.ndarray:
    """Captum's ``LayerGradCam(model, layer_module).attribute(x, target, relu_attributions=relu)``
    at the layer's resolution, float64 ``(N, h, w)``: ``sum_k mean_hw(g)[k] A[k]`` with a ReLU
    when ``relu`` (Captum's default is ``relu_attributions=False``). No scaling, no resize."""
    from captum.attr import LayerGradCam

    t = torch.as_tensor(_target_list(targets, x.shape[0]))
    attr = LayerGradCam(model, layer_module).attribute(
        x.detach().clone().requires_grad_(True), target=t, relu_attributions=relu,
        attribute_to_layer_input=attribute_to_layer_input)
    model.zero_grad(set_to_none=True)
    return attr.detach().cpu().numpy().astype(np.float64)[:, 0]


def captum_guided_gradcam(model: nn.Module, layer_module: nn.Module, x: torch.Tensor,
                          targets: int | Sequence[int], *, interpolate_mode: str = "nearest"
                          ) -> np.ndarray:
    """Captum's ``GuidedGradCam(model, layer_module).attribute(x, target)``, float64, ``x``'s
    shape ``(N, C, H, W)``: ``GuidedBackprop(x) * F.interpolate(relu(LayerGradCam), (H, W),
    mode=interpolate_mode)`` (nearest by default; the CAM map, one channel, broadcast over
    the input channels). Guided backprop clamps the gradient after every ``nn.ReLU`` module
    (functional ``F.relu`` is not modified)."""
    from captum.attr import GuidedGradCam

    t = torch.as_tensor(_target_list(targets, x.shape[0]))
    with warnings.catch_warnings():  # "Setting backward hooks on ReLU activations": expected
        warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU", category=UserWarning)
        attr = GuidedGradCam(model, layer_module).attribute(
            x.detach().clone().requires_grad_(True), target=t, interpolate_mode=interpolate_mode)
    model.zero_grad(set_to_none=True)
    return attr.detach().cpu().numpy().astype(np.float64)
