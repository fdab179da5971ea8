"""Numbers that judge attribution maps (DESIGN lesson 4: pictures persuade, numbers decide).

Each metric takes ONE example (no batch axis) and is a pure JAX function, so it runs
under ``jax.jit`` and batches with ``jax.vmap``.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from xai_core.metrics import localization, uniform_share
    >>> mask = jnp.zeros((4, 4), bool).at[:2, :2].set(True)
    >>> float(localization(jnp.ones((4, 4, 3)), mask)), float(uniform_share(mask))
    (0.25, 0.25)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def localization(attribution: jax.Array, mask: jax.Array, *, channel_axis: int | None = -1) -> jax.Array:
    """Share of the positive attribution mass that falls inside the object mask.

    ``p = max(sum_c a, 0)``; ``localization = sum(p * mask) / sum(p)``, a scalar in
    ``[0, 1]``. Negative evidence is ignored (it argues against the class, so it says
    nothing about where the class evidence is). A map with no positive mass scores 0.
    Compare with :func:`uniform_share`, the score of a map spread evenly.

    Args:
        attribution: ``(H, W, C)``, or ``(H, W)`` with ``channel_axis=None``.
        mask: ``(H, W)``, bool or 0/1, True on the object's pixels.
        channel_axis: axis of ``attribution`` summed over; None when there is none.

    Returns:
        A float scalar. Batch with ``jax.vmap(localization)(attributions, masks)``.

    Example:
        >>> import jax.numpy as jnp
        >>> mask = jnp.eye(3, dtype=bool)
        >>> float(localization(jnp.eye(3), mask, channel_axis=None))
        1.0
    """
    a = jnp.asarray(attribution)
    if channel_axis is not None:
        a = a.sum(axis=channel_axis)
    mask = jnp.asarray(mask)
    if a.shape != mask.shape or a.ndim != 2:
        raise ValueError(
            f"localization: attribution {jnp.shape(attribution)} with channel_axis={channel_axis} "
            f"reduces to {a.shape}, which must equal the (H, W) mask shape {mask.shape}. Pass one "
            "example (vmap for batches) and channel_axis=None for an (H, W) map."
        )
    a = a.astype(jnp.promote_types(a.dtype, jnp.float32))
    positive = jnp.maximum(a, 0)
    total = positive.sum()
    inside = jnp.sum(positive * mask.astype(a.dtype))
    return jnp.where(total > 0, inside / jnp.where(total > 0, total, 1), 0.0)


def uniform_share(mask: jax.Array) -> jax.Array:
    """Localization of a uniform map: the mask's area fraction, ``mean(mask)``.

    A method beats chance only if its :func:`localization` exceeds this.

    Example:
        >>> import jax.numpy as jnp
        >>> float(uniform_share(jnp.array([[True, False], [False, False]])))
        0.25
    """
    return jnp.mean(jnp.asarray(mask).astype(jnp.float32))
