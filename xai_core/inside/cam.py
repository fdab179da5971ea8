"""Class activation maps at any named layer of a model: the CAM family, channel weights and
ranking.

Every method here takes a model (:class:`xai_core.adapters.Model`) and the name of one of
its layers (``m.layers``), and returns ``fn(x, target) -> map`` for ONE example: pure JAX,
jittable, vmappable with traced targets, the weights passed in with the model. With ``A`` the
layer's activation (channels ``k``, positions ``ij``) and ``g = d score / d A``:

- :func:`grad_cam` (Selvaraju et al. 2017): ``relu(sum_k a_k A_k)``, ``a_k = mean_ij g_kij``;
- :func:`hires_cam` (Draelos & Carin 2020): ``relu(sum_k g_k * A_k)``;
- :func:`grad_cam_plus_plus` (Chattopadhay et al. 2018): weights ``sum_ij relu(g) * alpha``,
  ``alpha = g^2 / (2 g^2 + sum_ij(A) g^3 + 1e-6)`` (0 where ``g = 0``);
- :func:`xgrad_cam` (Fu et al. 2020): weights ``sum_ij g * A / (sum_ij A + 1e-7)``;
- :func:`layer_cam` (Jiang et al. 2021): ``relu(sum_k relu(g_k) * A_k)``;
- :func:`eigen_cam` (Muhammad & Yeasin 2020): the activations' projection on their first
  principal direction (no gradient, no target);
- :func:`score_cam` (Wang et al. 2020) and :func:`ablation_cam` (Desai & Ramaswamy 2020):
  weights from one forward pass per channel, all channels in one compiled program, chunked
  (``batch_size``);
- :func:`guided_grad_cam`: guided backpropagation times the upsampled Grad-CAM.

The formulas follow pytorch-grad-cam 1.5.7 (``base_cam.py`` and one file per method), which
also min-max scales each map to [0, 1] and resizes it with OpenCV; we return the map itself,
upsampled to the input with ``jax.image.resize`` (bilinear) or, with ``upsample=False``, at
the layer's resolution. Layouts: the channel axis of the activation is ``channel_axis``
(``"auto"``: the input's, channels-first when the input's first axis is its shortest, as
for torch images); a token layer (``(tokens, features)``, a transformer's) is read as a
``grid=(h, w)`` of patches after dropping the leading extra tokens (a class token).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from xai_core.core.checks import check_batch_size, check_choice
from xai_core.core.chunking import DEFAULT_BATCH_SIZE, resolve_batch_size
from xai_core.rules import guided_backprop

__all__ = ["ablation_cam", "channel_weights", "eigen_cam", "grad_cam", "grad_cam_plus_plus",
           "grad_cam_weights", "guided_grad_cam", "hires_cam", "layer_cam", "rank_channels",
           "resize", "resize_corners", "score_cam", "xgrad_cam"]

CamFn = Callable[..., jax.Array]
EPS_PLUS_PLUS, EPS_XGRAD = 1e-6, 1e-7  # pytorch-grad-cam's stabilizers in Grad-CAM++ and XGrad-CAM


def _channels_first(x: jax.Array, channel_axis: Any) -> bool:
    if channel_axis == "auto":
        return x.ndim == 3 and x.shape[0] < x.shape[-1]
    if channel_axis not in (0, -1):
        raise ValueError(f"cam: channel_axis must be 0, -1 or 'auto', got {channel_axis!r}.")
    return channel_axis == 0


def _grid(a: jax.Array, first: bool, grid: tuple[int, int] | None, layer: str) -> jax.Array:
    """The activation as ``(h, w, channels)``."""
    if grid is not None:
        h, w = grid
        if a.ndim != 2 or a.shape[0] < h * w:
            raise ValueError(f"cam: grid={grid} needs a (tokens, features) layer with at least {h * w} tokens; "
                             f"layer {layer!r} has shape {tuple(a.shape)}.")
        return a[a.shape[0] - h * w:].reshape(h, w, a.shape[1])
    if a.ndim != 3:
        raise ValueError(f"cam: layer {layer!r} has shape {tuple(a.shape)} for one example; a CAM needs a "
                         "(channels, height, width) or (height, width, channels) feature map, or a token "
                         "layer with grid=(h, w).")
    return jnp.moveaxis(a, 0, -1) if first else a


def _spatial(x: jax.Array, first: bool) -> tuple[int, int]:
    return tuple(x.shape[1:3]) if first else tuple(x.shape[:2])  # type: ignore[return-value]


def resize(cam: jax.Array, size: tuple[int, int], method: str = "bilinear") -> jax.Array:
    """``cam`` (``(h, w)``) resized to ``size`` (``jax.image.resize``, no antialiasing; for
    ``"bilinear"`` half-pixel centres, as torch's ``interpolate(mode="bilinear",
    align_corners=False)`` and OpenCV)."""
    return jax.image.resize(cam, size, method, antialias=False)


def resize_corners(a: jax.Array, size: tuple[int, int]) -> jax.Array:
    """``a`` (``(h, w)``) resized bilinearly with the corners aligned (torch's
    ``UpsamplingBilinear2d``, ``align_corners=True``): what pytorch-grad-cam's Score-CAM uses
    for its masks."""
    grids = [jnp.linspace(0.0, n_in - 1.0, n_out) for n_in, n_out in zip(a.shape, size)]
    rows, cols = jnp.meshgrid(*grids, indexing="ij")
    return jax.scipy.ndimage.map_coordinates(a, [rows, cols], order=1).astype(a.dtype)


def _layer(m: Any, layer: str, x: jax.Array, channel_axis: Any,
           grid: tuple[int, int] | None) -> tuple[jax.Array, Callable[[jax.Array], jax.Array], bool]:
    """``(A, logits_of, first)``: the activation as ``(h, w, C)``, the logits from such an
    activation (the rest of the model), and whether the input is channels-first."""
    head, tail = m.split(layer, x)
    a = head(x)
    first = _channels_first(x, channel_axis)

    def to_layer(hwc: jax.Array) -> jax.Array:
        if grid is not None:
            return a.at[a.shape[0] - grid[0] * grid[1]:].set(hwc.reshape(-1, a.shape[1]))
        return jnp.moveaxis(hwc, -1, 0) if first else hwc

    return _grid(a, first, grid, layer), lambda hwc: tail(to_layer(hwc), x), first


def _with_gradient(m: Any, layer: str, x: jax.Array, target: Any, channel_axis: Any,
                   grid: tuple[int, int] | None) -> tuple[jax.Array, jax.Array, bool]:
    """``(A, g, first)``: the activation, ``dS_target / dA`` (both ``(h, w, C)``) and the layout."""
    A, logits_of, first = _layer(m, layer, x, channel_axis, grid)
    return A, jax.grad(lambda a: logits_of(a)[target])(A), first


def _drops(m: Any, layer: str, x: jax.Array, target: Any, channel_axis: Any, grid: tuple[int, int] | None,
           batch_size: Any) -> tuple[jax.Array, jax.Array, jax.Array, bool]:
    """``(A, S, S - S_k, first)``: the score and its drop when each channel ``k`` is zeroed,
    ``batch_size`` channels at a time."""
    A, logits_of, first = _layer(m, layer, x, channel_axis, grid)
    s = logits_of(A)[target]
    drops = _per_channel(lambda k: s - logits_of(A.at[..., k].set(0))[target], A.shape[-1], batch_size, [A])
    return A, s, drops, first


def _finish(cam: jax.Array, x: jax.Array, first: bool, up: bool) -> jax.Array:
    return resize(cam, _spatial(x, first)) if up else cam


def _gradient_cam(name: str, combine: Callable[[jax.Array, jax.Array], jax.Array]) -> Callable[..., CamFn]:
    """A CAM computed from ``A`` and ``g`` (both ``(h, w, C)``) by ``combine``."""

    def build(m: Any, layer: str, *, upsample: bool = True, channel_axis: Any = "auto",
              grid: tuple[int, int] | None = None) -> CamFn:
        def cam(x: jax.Array, target: Any) -> jax.Array:
            A, g, first = _with_gradient(m, layer, x, target, channel_axis, grid)
            return _finish(jax.nn.relu(combine(A, g)), x, first, upsample)

        return cam

    build.__name__ = name
    return build


def grad_cam_weights(A: jax.Array, g: jax.Array) -> jax.Array:
    """Grad-CAM's channel weights ``a_k = mean_ij g_kij``."""
    return jnp.mean(g, axis=(0, 1))


def _plus_plus_weights(A: jax.Array, g: jax.Array) -> jax.Array:
    g2, g3 = g * g, g * g * g
    alpha = g2 / (2 * g2 + jnp.sum(A, axis=(0, 1)) * g3 + EPS_PLUS_PLUS)
    return jnp.sum(jax.nn.relu(g) * jnp.where(g != 0, alpha, 0), axis=(0, 1))


def _xgrad_weights(A: jax.Array, g: jax.Array) -> jax.Array:
    return jnp.sum(g * A, axis=(0, 1)) / (jnp.sum(A, axis=(0, 1)) + EPS_XGRAD)


hires_cam = _gradient_cam("hires_cam", lambda A, g: jnp.sum(g * A, axis=-1))
grad_cam_plus_plus = _gradient_cam("grad_cam_plus_plus", lambda A, g: A @ _plus_plus_weights(A, g))
xgrad_cam = _gradient_cam("xgrad_cam", lambda A, g: A @ _xgrad_weights(A, g))
layer_cam = _gradient_cam("layer_cam", lambda A, g: jnp.sum(jax.nn.relu(g) * A, axis=-1))

CHANNELS = ("all", "positive", "negative")


def grad_cam(m: Any, layer: str, *, channels: str = "all", top_k: int | None = None, upsample: bool = True,
             channel_axis: Any = "auto", grid: tuple[int, int] | None = None) -> CamFn:
    """Grad-CAM: ``relu(sum_k a_k A_k)`` with ``a_k = mean_ij dS/dA_kij``.

    Selvaraju et al., ICCV 2017. ``channels="positive"`` / ``"negative"`` keeps only the
    channels whose weight has that sign (for ``"negative"`` the map is ``relu(-sum_k a_k A_k)``
    over them: where the evidence against the class lies), ``top_k`` only the ``k`` channels
    with the largest ``|a_k|`` among those; :func:`channel_weights` returns the ``a_k``.

    >>> import jax, jax.numpy as jnp, xai_core as xc
    >>> from xai_core.adapters import Model
    >>> from xai_core.graph import mark
    >>> apply = lambda w, x: mark(jax.nn.relu(x * w), "features").mean(axis=(0, 1)) @ jnp.eye(2)
    >>> m = Model(apply, jnp.array([1.0, -1.0]))
    >>> xc.cam.grad_cam(m, "features", upsample=False)(jnp.ones((2, 2, 2)), 0)
    Array([[0.25, 0.25],
           [0.25, 0.25]], dtype=float32)
    """
    check_choice(channels, CHANNELS, "channels", "grad_cam")

    def cam(x: jax.Array, target: Any) -> jax.Array:
        A, g, first = _with_gradient(m, layer, x, target, channel_axis, grid)
        w = _select(grad_cam_weights(A, g), channels, top_k)
        sign = -1.0 if channels == "negative" else 1.0
        return _finish(jax.nn.relu(sign * (A @ w)), x, first, upsample)

    return cam


def _select(w: jax.Array, channels: str, top_k: int | None) -> jax.Array:
    if channels == "positive":
        w = jnp.where(w > 0, w, 0)
    elif channels == "negative":
        w = jnp.where(w < 0, w, 0)
    if top_k is not None:
        if not isinstance(top_k, int) or not 1 <= top_k <= w.shape[0]:
            raise ValueError(f"grad_cam: top_k must be an int in [1, {w.shape[0]}] (the layer's channels), got {top_k!r}.")
        keep = jnp.abs(w) >= jax.lax.top_k(jnp.abs(w), top_k)[0][-1]
        w = jnp.where(keep, w, 0)
    return w


def channel_weights(m: Any, layer: str, *, channel_axis: Any = "auto", grid: tuple[int, int] | None = None) -> CamFn:
    """``fn(x, target) -> a`` (one weight per channel): Grad-CAM's ``a_k = mean_ij dS/dA_kij``."""

    def weights(x: jax.Array, target: Any) -> jax.Array:
        return grad_cam_weights(*_with_gradient(m, layer, x, target, channel_axis, grid)[:2])

    return weights


def eigen_cam(m: Any, layer: str, *, upsample: bool = True, channel_axis: Any = "auto",
              grid: tuple[int, int] | None = None) -> CamFn:
    """Eigen-CAM: the activations (positions x channels), centred over positions, projected on
    their first right singular vector; no gradient, so ``target`` is ignored.

    Muhammad & Yeasin 2020. The singular vector's sign is not determined by the SVD;
    pytorch-grad-cam keeps LAPACK's, then applies a ReLU. We take the sign whose entries sum
    to a positive number (the channels load positively overall) and return the signed map
    (comparable across libraries up to that sign).
    """

    def cam(x: jax.Array, target: Any = None) -> jax.Array:
        A, _, first = _layer(m, layer, x, channel_axis, grid)
        h, w, c = A.shape
        flat = A.reshape(h * w, c)
        centred = flat - flat.mean(axis=0)
        v = jnp.linalg.svd(centred, full_matrices=False)[2][0]
        v = v * jnp.where(jnp.sum(v) < 0, -1.0, 1.0)  # the sign that loads the channels positively overall
        proj = (centred @ v).reshape(h, w)
        return _finish(proj, x, first, upsample)

    return cam


def _per_channel(values: Callable[[jax.Array], jax.Array], c: int, batch_size: Any, leaves: list[jax.Array]) -> jax.Array:
    """``values(k)`` for every channel ``k``, ``batch_size`` channels at a time."""
    size = resolve_batch_size(batch_size, leaves)
    return jax.lax.map(values, jnp.arange(c), batch_size=size)


def score_cam(m: Any, layer: str, *, batch_size: int | str | None = DEFAULT_BATCH_SIZE, upsample: bool = True,
              channel_axis: Any = "auto", grid: tuple[int, int] | None = None) -> CamFn:
    """Score-CAM: ``relu(sum_k w_k A_k)``, ``w = softmax_k(S(x * M_k))`` with ``M_k`` channel
    ``k`` upsampled to the input (:func:`resize_corners`) and min-max scaled to [0, 1]
    (``(M - min) / (max - min + 1e-8)``): pytorch-grad-cam's convention.

    Wang et al., CVPR workshops 2020. One forward pass per channel, all in one program,
    ``batch_size`` channels at a time."""
    batch_size = check_batch_size(batch_size, "score_cam")

    def cam(x: jax.Array, target: Any) -> jax.Array:
        A, _, first = _layer(m, layer, x, channel_axis, grid)
        size = _spatial(x, first)

        def score(k: jax.Array) -> jax.Array:
            mask = resize_corners(A[..., k], size)
            mask = (mask - jnp.min(mask)) / (jnp.max(mask) - jnp.min(mask) + 1e-8)
            return m.logits(x * (mask[None] if first else mask[..., None]))[target]

        w = jax.nn.softmax(_per_channel(score, A.shape[-1], batch_size, [x]))
        return _finish(jax.nn.relu(A @ w), x, first, upsample)

    return cam


def ablation_cam(m: Any, layer: str, *, batch_size: int | str | None = DEFAULT_BATCH_SIZE, upsample: bool = True,
                 channel_axis: Any = "auto", grid: tuple[int, int] | None = None) -> CamFn:
    """Ablation-CAM: ``relu(sum_k w_k A_k)``, ``w_k = (S - S_k) / S`` with ``S_k`` the score
    when channel ``k`` of the layer is zeroed.

    Desai & Ramaswamy, WACV 2020. One forward pass of the rest of the model per channel, in
    one program, ``batch_size`` at a time; :func:`rank_channels` returns ``S - S_k``."""
    batch_size = check_batch_size(batch_size, "ablation_cam")

    def cam(x: jax.Array, target: Any) -> jax.Array:
        A, s, drops, first = _drops(m, layer, x, target, channel_axis, grid, batch_size)
        return _finish(jax.nn.relu(A @ (drops / s)), x, first, upsample)

    return cam


def rank_channels(m: Any, layer: str, *, batch_size: int | str | None = DEFAULT_BATCH_SIZE,
                  channel_axis: Any = "auto", grid: tuple[int, int] | None = None) -> CamFn:
    """``fn(x, target) -> drop``: the score drop when each channel of ``layer`` is zeroed
    (``S - S_k``, one program over every channel); ``jnp.argsort(-drop)`` ranks the channels
    by how much the class score relies on them, a number per channel instead of a picture."""
    batch_size = check_batch_size(batch_size, "rank_channels")

    def drops(x: jax.Array, target: Any) -> jax.Array:
        return _drops(m, layer, x, target, channel_axis, grid, batch_size)[2]

    return drops


def guided_grad_cam(m: Any, layer: str, *, interpolation: str = "bilinear", channel_axis: Any = "auto") -> CamFn:
    """Guided Grad-CAM: guided backpropagation (:func:`xai_core.guided_backprop`) times the
    Grad-CAM map upsampled to the input, broadcast over the input's channels.

    Selvaraju et al. 2017. ``interpolation`` is ``"bilinear"`` (every CAM's :func:`resize`)
    or ``"nearest"`` (Captum's ``GuidedGradCam``; equal to it for whole-number factors)."""
    check_choice(interpolation, ("bilinear", "nearest"), "interpolation", "guided_grad_cam")
    gc = grad_cam(m, layer, upsample=False, channel_axis=channel_axis)

    def cam(x: jax.Array, target: Any) -> jax.Array:
        first = _channels_first(x, channel_axis)
        heat = resize(gc(x, target), _spatial(x, first), interpolation)
        return guided_backprop(m.score(target))(x) * (heat[None] if first else heat[..., None])

    return cam
