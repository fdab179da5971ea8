"""Feature visualization: an input that maximizes a channel, a neuron or a class logit.

Olah, Mordvintsev & Schubert, "Feature Visualization", Distill 2017 (and Lucid). Gradient
ascent (``optax.adam``) on an image parameterized by a scaled Fourier spectrum with
decorrelated colours (Lucid's ``fft_image`` and ``to_valid_rgb``; ``parameterization="pixel"``
for plain pixels), squashed to [0, 1] by a sigmoid, under random jitter and scaling each step
(transformation robustness) and an optional total-variation penalty. The whole ascent is one
compiled ``lax.scan``; :func:`optimize` over many objectives at once (``jax.vmap``) is one
program too, e.g. every channel of a layer: :func:`channels`.

An objective is ``f(x) -> scalar`` of ONE input image: :func:`channel`, :func:`neuron`,
:func:`logit` build them from a model (:class:`xai_core.adapters.Model`) and a layer.

Example:
    >>> import jax, jax.numpy as jnp, xai_core as xc
    >>> f = lambda x: jnp.mean(x[..., 0]) - jnp.mean(x[..., 1])  # "red, not green"
    >>> img = xc.featureviz.optimize(f, (8, 8, 3), key=jax.random.key(0), steps=64, parameterization="pixel")
    >>> bool(img[..., 0].mean() > 0.9 and img[..., 1].mean() < 0.1)
    True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from xai_core.core.checks import check_choice, check_positive_int

__all__ = ["channel", "channels", "logit", "neuron", "optimize"]

Objective = Callable[[jax.Array], jax.Array]

#: Lucid's square root of the colour correlation of ImageNet images (``color_correlation_svd_sqrt``).
COLOR_CORRELATION = np.array([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], np.float32)


def channel(m: Any, layer: str, k: int, *, channel_axis: int = -1) -> Objective:
    """The mean activation of channel ``k`` of ``layer`` (axis ``channel_axis`` of one
    example's layer output: -1 for Keras / Flax, 0 for torch)."""
    return lambda x: jnp.mean(jnp.take(m.split(layer, x)[0](x), k, axis=channel_axis))


def neuron(m: Any, layer: str, index: tuple[int, ...]) -> Objective:
    """One unit ``A(x)[index]`` of ``layer``."""
    return lambda x: m.split(layer, x)[0](x)[index]


def logit(m: Any, target: int) -> Objective:
    """The class logit ``m.logits(x)[target]`` (class-specific image generation)."""
    return lambda x: m.logits(x)[target]


def _fourier_scale(h: int, w: int, decay: float) -> np.ndarray:
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    return (1.0 / np.maximum(np.sqrt(fx * fx + fy * fy), 1.0 / max(h, w)) ** decay).astype(np.float32)


def _image(params: jax.Array, shape: tuple[int, int, int], parameterization: str, decay: float) -> jax.Array:
    """``(H, W, C)`` in [0, 1] from the parameters."""
    h, w, c = shape
    if parameterization == "pixel":
        raw = params
    else:
        spectrum = (params[0] + 1j * params[1]) * _fourier_scale(h, w, decay)[None]
        raw = jnp.moveaxis(jnp.fft.irfft2(spectrum, s=(h, w)), 0, -1) * 4.0
        if c == 3:
            raw = raw @ (COLOR_CORRELATION / np.max(np.linalg.norm(COLOR_CORRELATION, axis=0))).T
    return jax.nn.sigmoid(raw)


def _init(key: jax.Array, shape: tuple[int, int, int], parameterization: str) -> jax.Array:
    h, w, c = shape
    if parameterization == "pixel":
        return 0.01 * jax.random.normal(key, shape)
    return 0.01 * jax.random.normal(key, (2, c, h, w // 2 + 1))


def _transform(img: jax.Array, key: jax.Array, jitter: int, scale: tuple[float, float]) -> jax.Array:
    """Random jitter (a roll of up to ``jitter`` pixels) and random scaling about the centre."""
    k1, k2 = jax.random.split(key)
    if jitter:
        dy, dx = jax.random.randint(k1, (2,), -jitter, jitter + 1)
        img = jnp.roll(img, (dy, dx), axis=(0, 1))
    if scale != (1.0, 1.0):
        s = jax.random.uniform(k2, (), minval=scale[0], maxval=scale[1])
        h, w = img.shape[:2]
        shift = jnp.array([h, w]) * (1 - s) / 2
        img = jax.image.scale_and_translate(img, img.shape, (0, 1), jnp.array([s, s]), shift, "linear")
    return img


def _tv(img: jax.Array) -> jax.Array:
    return jnp.mean(jnp.abs(img[1:] - img[:-1])) + jnp.mean(jnp.abs(img[:, 1:] - img[:, :-1]))


def optimize(objective: Objective, shape: tuple[int, int, int], *, key: jax.Array, steps: int = 256,
             learning_rate: float = 0.05, parameterization: str = "fourier", decay: float = 1.0, jitter: int = 0,
             scale: tuple[float, float] = (1.0, 1.0), tv: float = 0.0, channels_first: bool = False,
             history: bool = False) -> Any:
    """An image (``shape`` = ``(H, W, C)``, values in [0, 1]) that maximizes ``objective``.

    Each of ``steps`` Adam steps (``optax.adam(learning_rate)``) maximizes
    ``objective(T(image)) - tv * TV(image)``, ``T`` a random roll of up to ``jitter`` pixels
    and a random zoom in ``scale``. ``parameterization`` is ``"fourier"`` (spectrum scaled by
    ``1 / f^decay``, decorrelated colours for 3 channels) or ``"pixel"``. With
    ``channels_first`` the objective receives ``(C, H, W)`` (torch models); the result is
    ``(H, W, C)`` either way. ``history=True`` also returns the objective at every step.
    """
    import optax  # a dependency of xai-core, imported here so that `import xai_core` stays light

    check_choice(parameterization, ("fourier", "pixel"), "parameterization", "featureviz.optimize")
    steps = check_positive_int(steps, "steps", "featureviz.optimize")
    shape = tuple(int(d) for d in shape)
    if len(shape) != 3:
        raise ValueError(f"featureviz.optimize: shape must be (H, W, C), got {shape}.")
    init_key, step_key = jax.random.split(key)
    params = _init(init_key, shape, parameterization)
    opt = optax.adam(learning_rate)

    def loss(p: jax.Array, k: jax.Array) -> tuple[jax.Array, jax.Array]:
        img = _image(p, shape, parameterization, decay)
        seen = _transform(img, k, jitter, scale)
        value = objective(jnp.moveaxis(seen, -1, 0) if channels_first else seen)
        return -(value - tv * _tv(img)), value

    def step(carry: tuple[jax.Array, Any], k: jax.Array) -> tuple[tuple[jax.Array, Any], jax.Array]:
        p, state = carry
        (_, value), g = jax.value_and_grad(loss, has_aux=True)(p, k)
        updates, state = opt.update(g, state, p)
        return (optax.apply_updates(p, updates), state), value

    (params, _), values = jax.lax.scan(step, (params, opt.init(params)), jax.random.split(step_key, steps))
    img = _image(params, shape, parameterization, decay)
    return (img, values) if history else img


def channels(m: Any, layer: str, ks: Any, shape: tuple[int, int, int], *, key: jax.Array,
             channel_axis: int = -1, **options: Any) -> jax.Array:
    """One image per channel in ``ks`` of ``layer`` (``(len(ks), H, W, C)``), all optimized in
    one vmapped program; ``options`` go to :func:`optimize`."""
    ks = jnp.asarray(ks)

    def one(k: jax.Array, key: jax.Array) -> jax.Array:
        return optimize(channel(m, layer, k, channel_axis=channel_axis), shape, key=key, **options)

    return jax.vmap(one)(ks, jax.random.split(key, ks.shape[0]))
