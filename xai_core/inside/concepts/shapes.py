"""Concept sets for the shapes data (:func:`xai_core.data.make_shapes`): "striped" (gratings)
and "round" (discs), and random sets of shapes images, ``(n, size, size, 3)`` in [0, 1].

Example:
    >>> import jax
    >>> concepts, randoms = shapes_concepts(jax.random.key(0), n=4, size=32, randoms=3)
    >>> sorted(concepts), concepts["striped"].shape, len(randoms), randoms[0].shape
    (['round', 'striped'], (4, 32, 32, 3), 3, (4, 32, 32, 3))
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from xai_core.data import make_shapes

__all__ = ["discs", "shapes_concepts", "stripes"]


def _colours(key: jax.Array, n: int) -> tuple[jax.Array, jax.Array]:
    """Two colours per image, at least 0.5 apart in RGB (resampled on a ring around the first)."""
    k1, k2 = jax.random.split(key)
    first = jax.random.uniform(k1, (n, 3), minval=0.1, maxval=0.9)
    direction = jax.random.normal(k2, (n, 3))
    second = jnp.clip(first - 0.6 * direction / jnp.linalg.norm(direction, axis=1, keepdims=True), 0.0, 1.0)
    return first, second


def stripes(key: jax.Array, n: int, size: int = 64) -> jax.Array:
    """``n`` images of straight stripes: random angle, period (4 to 12 pixels at 64 x 64),
    phase and two colours; ``(n, size, size, 3)``."""
    k_col, k_angle, k_period, k_phase = jax.random.split(key, 4)
    a, b = _colours(k_col, n)
    angle = jax.random.uniform(k_angle, (n, 1, 1), maxval=jnp.pi)
    period = jax.random.uniform(k_period, (n, 1, 1), minval=size / 16, maxval=size / 5.3)
    phase = jax.random.uniform(k_phase, (n, 1, 1), maxval=2 * jnp.pi)
    y, x = jnp.meshgrid(jnp.arange(size) + 0.5, jnp.arange(size) + 0.5, indexing="ij")
    wave = jnp.sin(2 * jnp.pi * (x * jnp.cos(angle) + y * jnp.sin(angle)) / period + phase)
    on = (wave > 0)[..., None]
    return jnp.where(on, a[:, None, None], b[:, None, None]).astype(jnp.float32)


def discs(key: jax.Array, n: int, size: int = 64) -> jax.Array:
    """``n`` images of one filled disc (radius ``size / 8`` to ``size / 3``, fully inside) on a
    plain background of another colour; ``(n, size, size, 3)``."""
    k_col, k_r, k_c = jax.random.split(key, 3)
    a, b = _colours(k_col, n)
    r = jax.random.uniform(k_r, (n, 1, 1), minval=size / 8, maxval=size / 3)
    c = r[..., None] + jax.random.uniform(k_c, (n, 1, 1, 2)) * (size - 2 * r[..., None])
    y, x = jnp.meshgrid(jnp.arange(size) + 0.5, jnp.arange(size) + 0.5, indexing="ij")
    inside = ((x - c[..., 0]) ** 2 + (y - c[..., 1]) ** 2 <= r**2)[..., None]
    return jnp.where(inside, a[:, None, None], b[:, None, None]).astype(jnp.float32)


def shapes_concepts(key: jax.Array, n: int = 20, size: int = 64,
                    randoms: int = 10) -> tuple[dict[str, jax.Array], list[jax.Array]]:
    """``(concepts, randoms)``: ``{"striped": stripes, "round": discs}``, ``n`` images each, and
    ``randoms`` sets of ``n`` random shapes images (:func:`xai_core.data.make_shapes`, one
    object of any class on a cluttered background), ready for :func:`xai_core.concepts.tcav`."""
    k_s, k_d, k_r = jax.random.split(key, 3)
    pool = make_shapes(k_r, n * randoms, size).images
    concepts = {"striped": stripes(k_s, n, size), "round": discs(k_d, n, size)}
    return concepts, list(pool.reshape(randoms, n, *pool.shape[1:]))
