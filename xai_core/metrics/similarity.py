"""How alike are two maps? The similarity measures of the randomization sanity checks (Adebayo et
al., "Sanity Checks for Saliency Maps", NeurIPS 2018): Spearman rank correlation with and
without absolute values, SSIM and the correlation of HOG features. Each takes two arrays of
one shape and returns a scalar; 1 means the same map.

Example:
    >>> import jax.numpy as jnp
    >>> from xai_core.metrics import similarity
    >>> a = jnp.arange(64.0).reshape(8, 8)
    >>> [round(float(similarity.SIMILARITIES[name](a, a)), 4) for name in ("spearman", "ssim", "hog")]
    [1.0, 1.0, 1.0]
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from xai_core.metrics._common import as_float, pearson, spearman


def spearman_abs(a: jax.Array, b: jax.Array) -> jax.Array:
    """Spearman rank correlation of ``|a|`` and ``|b|`` (the sanity-check paper's "absolute
    value" variant: evidence for and against count alike)."""
    return spearman(jnp.abs(a), jnp.abs(b))


def ssim(a: jax.Array, b: jax.Array, *, window: int = 7, data_range: float | None = None) -> jax.Array:
    """Mean structural similarity (Wang et al., "Image Quality Assessment: From Error Visibility
    to Structural Similarity", IEEE TIP 2004) over every ``window``-wide box window (on every axis)
    that fits, with sample covariances: scikit-image's ``structural_similarity`` with its
    defaults (``K1=0.01``, ``K2=0.03``). ``data_range`` defaults to the span of both maps, as
    Quantus's ``ssim`` chooses it. Quantus applies it to *flattened* maps (a 1-d SSIM); pass
    ``(H, W)`` maps for the image SSIM of the paper.

    >>> import jax.numpy as jnp
    >>> round(float(ssim(jnp.eye(8), jnp.eye(8))), 6)
    1.0
    """
    a, b = as_float(a), as_float(b)
    if a.shape != b.shape or min(a.shape, default=0) < window:
        raise ValueError(f"ssim: the maps must share a shape at least {window} wide on every axis "
                         f"(window=), got {a.shape} and {b.shape}.")
    if data_range is None:
        data_range = jnp.maximum(a.max(), b.max()) - jnp.minimum(a.min(), b.min())
    shape, n = (window,) * a.ndim, window ** a.ndim

    def mean(v: jax.Array) -> jax.Array:
        return jax.lax.reduce_window(v, 0.0, jax.lax.add, shape, (1,) * a.ndim, "VALID") / n

    ma, mb = mean(a), mean(b)
    correction = n / (n - 1)
    va, vb = correction * (mean(a * a) - ma * ma), correction * (mean(b * b) - mb * mb)
    cov = correction * (mean(a * b) - ma * mb)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = (2 * ma * mb + c1) * (2 * cov + c2) / ((ma * ma + mb * mb + c1) * (va + vb + c2))
    return s.mean()


def hog(image: jax.Array, *, cell: int = 8, bins: int = 9) -> jax.Array:
    """Histogram of oriented gradients (Dalal & Triggs, CVPR 2005) of an ``(H, W)`` map: centred
    differences, unsigned orientations in ``bins`` bins over ``[0, 180)`` degrees, each cell of
    ``cell`` x ``cell`` pixels a magnitude-weighted histogram, each 2 x 2 block of cells
    L2-normalised; the blocks' histograms concatenated. (No "L2-Hys" clipping, unlike
    scikit-image's default.)"""
    image = as_float(image)
    if image.ndim != 2 or min(image.shape) < 2 * cell:
        raise ValueError(f"hog: needs an (H, W) map at least 2 cells ({2 * cell} px) wide, got {image.shape}.")
    gy = jnp.zeros_like(image).at[1:-1].set(image[2:] - image[:-2])
    gx = jnp.zeros_like(image).at[:, 1:-1].set(image[:, 2:] - image[:, :-2])
    magnitude = jnp.hypot(gx, gy)
    angle = jnp.mod(jnp.degrees(jnp.arctan2(gy, gx)), 180.0)
    index = jnp.minimum((angle / (180.0 / bins)).astype(jnp.int32), bins - 1)
    rows, cols = image.shape[0] // cell, image.shape[1] // cell
    magnitude, index = magnitude[: rows * cell, : cols * cell], index[: rows * cell, : cols * cell]
    onehot = jax.nn.one_hot(index, bins, dtype=magnitude.dtype) * magnitude[..., None]
    cells = onehot.reshape(rows, cell, cols, cell, bins).sum(axis=(1, 3))
    blocks = jnp.concatenate([cells[:-1, :-1], cells[1:, :-1], cells[:-1, 1:], cells[1:, 1:]], axis=-1)
    norms = jnp.sqrt(jnp.sum(blocks * blocks, axis=-1, keepdims=True) + 1e-10)
    return (blocks / norms).ravel()


def hog_similarity(a: jax.Array, b: jax.Array, *, cell: int | None = None) -> jax.Array:
    """Pearson correlation of the :func:`hog` features of two ``(H, W)`` maps (Adebayo et al.
    2018's HOG similarity); ``cell`` defaults to an eighth of the shorter side (at least 2 px)."""
    if cell is None:
        cell = max(2, min(jnp.shape(a)) // 8)
    return pearson(hog(a, cell=cell), hog(b, cell=cell))


def hog_distance(a: jax.Array, b: jax.Array, *, cell: int | None = None) -> jax.Array:
    """Root-mean-square over blocks of the Euclidean distance of two maps' :func:`hog` features
    (each block has unit norm, so 0 to 2; 0: the same structure, lower is more similar)."""
    if cell is None:
        cell = max(2, min(jnp.shape(a)) // 8)
    fa, fb = hog(a, cell=cell), hog(b, cell=cell)
    return jnp.sqrt(jnp.sum((fa - fb) ** 2) / max(1, math.ceil(fa.size / 36)))


SIMILARITIES = {"spearman": spearman, "spearman_abs": spearman_abs, "ssim": ssim, "hog": hog_similarity,
                "pearson": pearson}
"""Similarity measures by name, each ``(a, b) -> scalar`` with 1 for equal maps."""
