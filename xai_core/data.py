"""Procedural "shapes" data set with ground-truth object masks.

Each image holds exactly one upright object (a circle, square, triangle or cross) of
random size, position and colour, drawn on a textured, cluttered background:
low-frequency colour noise, faint stripes, a few small distractor blobs and line
segments (far smaller than any object) and per-pixel noise. The mask marks exactly the
object's pixels, so attribution maps can be scored against it (see
:func:`xai_core.metrics.localization`).

Everything is generated in JAX from one ``jax.random`` key, vectorized with
``jax.vmap``: the same key gives bit-identical arrays.

Example:
    >>> import jax
    >>> from xai_core.data import CLASSES, make_shapes
    >>> ds = make_shapes(jax.random.key(0), 8, size=32)
    >>> ds.images.shape, ds.labels.shape, ds.masks.shape
    ((8, 32, 32, 3), (8,), (8, 32, 32))
    >>> [CLASSES[int(i)] for i in ds.labels[:4]]  # doctest: +SKIP
    ['triangle', 'circle', 'cross', 'square']
"""

from __future__ import annotations

import itertools
import math
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "cross")

_MAX_DISTRACTORS = 6
_COLOUR_CANDIDATES = 8
_MIN_CONTRAST = 0.5  # Euclidean RGB distance between object and background colour.
_CHUNK = 256  # Images rendered at once (vmapped); small chunks stay in cache.
_NOISE = 0.07  # Grey pixel noise, uniform in [-0.07, 0.07] (standard deviation 0.04).


class Shapes(NamedTuple):
    """A batch of shape images.

    Attributes:
        images: float32 ``(n, size, size, 3)``, values in ``[0, 1]``.
        labels: int32 ``(n,)``, indices into :data:`CLASSES`.
        masks: bool ``(n, size, size)``, True exactly on the object's pixels.
    """

    images: jax.Array
    labels: jax.Array
    masks: jax.Array


def make_shapes(key: jax.Array, n: int, size: int = 64) -> Shapes:
    """Generate ``n`` images of ``size x size`` pixels, one labelled object each.

    Labels are balanced (each class appears ``n // len(CLASSES)`` or one more times)
    in random order. Object radius is drawn from ``[size / 8, size / 4]`` (8-16 px at
    64 x 64, at least 3 px) and the object always lies fully inside the image.

    Args:
        key: a ``jax.random`` key; the same key gives identical arrays.
        n: number of images, ``n >= 1``.
        size: image height and width in pixels, ``size >= 16``.

    Returns:
        :class:`Shapes` with ``images``, ``labels`` and ``masks``.

    Example:
        >>> import jax
        >>> ds = make_shapes(jax.random.key(1), 4, size=16)
        >>> bool(ds.masks.any(axis=(1, 2)).all())
        True
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"make_shapes: n must be an int >= 1, got {n!r}.")
    if isinstance(size, bool) or not isinstance(size, int) or size < 16:
        raise ValueError(f"make_shapes: size must be an int >= 16, got {size!r}.")
    return _make_shapes(key, n, size)


def _layout(size: int) -> dict[str, int]:
    """How many uniform draws each part of one image consumes."""
    return {
        "order": 1,  # Sort key that shuffles the balanced labels.
        "grid": 4 * 4 * 3,  # Low-frequency colour noise, upsampled.
        "stripes": 7,  # Frequency, angle, phase, amplitude, RGB tint.
        "count": 1,  # Number of distractors.
        "distractors": _MAX_DISTRACTORS * 9,  # Kind, x, y, radius, length, angle, RGB.
        "shape": 3,  # Radius, centre x, centre y.
        "colours": _COLOUR_CANDIDATES * 3,  # Candidate object colours.
        "noise": size * size,  # Per-pixel (grey) noise.
    }


@partial(jax.jit, static_argnums=(1, 2))
def _make_shapes(key: jax.Array, n: int, size: int) -> Shapes:
    """Jitted body of :func:`make_shapes` (arguments already validated).

    All randomness comes from ONE ``uniform(key, (n, d))`` draw, sliced per part; this
    keeps compile time low (each random call is a separate threefry kernel on CPU).
    Images are rendered ``_CHUNK`` at a time (vmapped within a chunk); the draws are
    padded to whole chunks and the extra images dropped.
    """
    chunk = min(n, _CHUNK)
    padded = -(-n // chunk) * chunk  # Whole chunks only: one compiled chunk body.
    layout = _layout(size)
    u = jax.random.uniform(key, (padded, sum(layout.values())))
    bounds = list(itertools.accumulate(layout.values()))[:-1]
    draws = dict(zip(layout, jnp.split(u, bounds, axis=1)))
    labels = (jnp.argsort(draws.pop("order")[:n, 0]) % len(CLASSES)).astype(jnp.int32)
    padded_labels = jnp.pad(labels, (0, padded - n))
    images, masks = jax.lax.map(partial(_render, size=size), (draws, padded_labels), batch_size=chunk)
    return Shapes(images=images[:n], labels=labels, masks=masks[:n])


def _pixel_grid(size: int) -> tuple[jax.Array, jax.Array]:
    """Pixel-centre coordinates ``(x, y)``, each ``(size, size)``; x = column."""
    c = jnp.arange(size, dtype=jnp.float32) + 0.5
    y, x = jnp.meshgrid(c, c, indexing="ij")
    return x, y


def _object_masks(x: jax.Array, y: jax.Array, radius: jax.Array) -> jax.Array:
    """Masks of every class, ``(len(CLASSES), H, W)``, for coordinates centred on the object.

    All fit in the box ``|x|, |y| <= r`` (y grows downwards): a circle of radius r; a
    square of half-side 0.8 r; an upright equilateral triangle of circumradius r
    (inradius r / 2); a plus-shaped cross of two bars, half-length r, half-width 0.3 r.
    """
    circle = x**2 + y**2 <= radius**2
    square = jnp.maximum(jnp.abs(x), jnp.abs(y)) <= 0.8 * radius
    half_root3 = math.sqrt(3.0) / 2.0
    triangle = (y <= radius / 2) & (half_root3 * jnp.abs(x) - y / 2 <= radius / 2)
    width = 0.3 * radius
    bars = ((jnp.abs(x) <= radius) & (jnp.abs(y) <= width)) | ((jnp.abs(y) <= radius) & (jnp.abs(x) <= width))
    return jnp.stack([circle, square, triangle, bars])


def _background(grid: jax.Array, stripes: jax.Array, size: int) -> jax.Array:
    """Low-frequency colour noise plus faint tinted stripes, ``(size, size, 3)``.

    The noise is a random 4 x 4 grid of colours (values 0.2-0.8) upsampled bilinearly;
    the stripes a plane wave ``sin(k . p + phase)``, written as ``sin(u + v)`` with u
    along x and v along y, so only 2 * size sines are evaluated.
    """
    up = jnp.asarray(_upsampling_matrix(size, 4))
    base = jnp.einsum("hi,wj,ijc->hwc", up, up, 0.2 + 0.6 * grid.reshape(4, 4, 3))
    c = jnp.arange(size, dtype=jnp.float32) + 0.5
    k = 2 * jnp.pi * (3.0 + 5.0 * stripes[0]) / size  # 3-8 cycles per image.
    angle, phase = jnp.pi * stripes[1], 2 * jnp.pi * stripes[2]
    u, v = k * jnp.cos(angle) * c + phase, k * jnp.sin(angle) * c
    wave = jnp.sin(v)[:, None] * jnp.cos(u)[None, :] + jnp.cos(v)[:, None] * jnp.sin(u)[None, :]
    amp, tint = 0.03 + 0.09 * stripes[3], 0.5 + 0.5 * stripes[4:7]
    return base + amp * wave[..., None] * tint


def _upsampling_matrix(size: int, n: int) -> np.ndarray:
    """``(size, n)`` weights of linear interpolation (clamped at the edges) from n to size samples."""
    centres = (np.arange(size) + 0.5) * n / size - 0.5
    return np.stack([np.interp(centres, np.arange(n), row) for row in np.eye(n)], axis=1).astype(np.float32)


def _distractor(p: jax.Array, x: jax.Array, y: jax.Array, size: int) -> jax.Array:
    """Mask of one small distractor: the pixels within a half-width of a segment.

    Half the time a blob (zero length, radius 1-2.5 px at 64 px), else a thin line
    (half-width 0.6 px, 4-10 px long at 64 px). ``p`` holds uniform draws: kind, x, y,
    radius, length, angle.
    """
    scale = size / 64.0
    is_blob = p[0] < 0.5
    length = jnp.where(is_blob, 0.0, scale * (4.0 + 6.0 * p[4]))
    half_width = jnp.where(is_blob, 1.0 + (max(2.5 * scale, 1.5) - 1.0) * p[3], 0.6)
    angle = 2 * jnp.pi * p[5]
    d = length * jnp.array([jnp.cos(angle), jnp.sin(angle)])
    dx, dy = x - size * p[1], y - size * p[2]
    t = jnp.clip((dx * d[0] + dy * d[1]) / jnp.maximum(d @ d, 1e-6), 0.0, 1.0)
    return (dx - t * d[0]) ** 2 + (dy - t * d[1]) ** 2 <= half_width**2


def _paint_distractors(image: jax.Array, params: jax.Array, count: jax.Array) -> jax.Array:
    """Paint the first ``count`` distractors (rows of ``params``, last on top) onto ``image``."""
    size = image.shape[0]
    x, y = _pixel_grid(size)

    def paint(image: jax.Array, layer: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, None]:
        p, i = layer
        mask = _distractor(p, x, y, size) & (i < count)
        return jnp.where(mask[..., None], p[6:9], image), None

    layers = (params.reshape(_MAX_DISTRACTORS, 9), jnp.arange(_MAX_DISTRACTORS))
    return jax.lax.scan(paint, image, layers)[0]


def _contrasting_colour(candidates: jax.Array, background: jax.Array) -> jax.Array:
    """The first candidate at least ``_MIN_CONTRAST`` from ``background`` (RGB distance).

    Rejection sampling over a fixed number of uniform candidates (vectorizable); if
    none is far enough, the farthest candidate is used.
    """
    dist = jnp.linalg.norm(candidates - background, axis=-1)
    ok = dist >= _MIN_CONTRAST
    return candidates[jnp.where(ok.any(), jnp.argmax(ok), jnp.argmax(dist))]


def _render(args: tuple[dict[str, jax.Array], jax.Array], *, size: int) -> tuple[jax.Array, jax.Array]:
    """One image ``(size, size, 3)`` in ``[0, 1]`` and its object mask ``(size, size)``.

    ``args`` is ``(draws, label)``: this image's uniform draws (see :func:`_layout`)
    and its class index.
    """
    draws, label = args
    image = _background(draws["grid"], draws["stripes"], size)
    count = 2 + jnp.floor(draws["count"][0] * (_MAX_DISTRACTORS - 1))  # 2 to 6.
    image = _paint_distractors(image, draws["distractors"], count)

    r_min, r_max = max(size / 8.0, 3.0), size / 4.0
    radius = r_min + (r_max - r_min) * draws["shape"][0]
    lo, hi = radius + 1.0, size - 1.0 - radius
    centre = lo + (hi - lo) * draws["shape"][1:3]
    x, y = _pixel_grid(size)
    mask = _object_masks(x - centre[0], y - centre[1], radius)[label]

    local = jnp.sum(image * mask[..., None], axis=(0, 1)) / jnp.maximum(mask.sum(), 1)
    colour = _contrasting_colour(draws["colours"].reshape(_COLOUR_CANDIDATES, 3), local)
    image = jnp.where(mask[..., None], colour, image)
    noise = _NOISE * (2.0 * draws["noise"].reshape(size, size, 1) - 1.0)
    return jnp.clip(image + noise, 0.0, 1.0).astype(jnp.float32), mask
