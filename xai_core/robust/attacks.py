"""Gradient attacks: FGSM and PGD (L-infinity and L2 balls), as Captum's ``captum.robust`` computes them.

Each takes a function of ONE example (logits, or a score or loss: ``loss=``) and returns a
perturbation ``attack(x, target, key=None) -> x'``: pure JAX, so it runs under ``jax.jit`` and
batches with ``jax.vmap`` over examples, targets (traced) and keys. PGD's steps are one
``lax.scan``; the gradients run through :func:`xai_core.graph.fast_kernels`, as the attribution
methods' do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from xai_core.core.checks import check_choice, check_positive_int
from xai_core.core.inputs import Inputs, split_inputs
from xai_core.graph import fast_kernels
from xai_core.robust._common import (
    ZERO_GRADIENT, Perturbation, check_bounds, check_strength, clamp, l2_norm, leaf_size, loss_of, masks,
    per_leaf_start,
)

__all__ = ["NORMS", "fgsm", "pgd", "random_point"]

NORMS = ("linf", "l2")
"""The balls of :func:`pgd` and :func:`random_point` (Captum's ``"Linf"`` and ``"L2"``, any case)."""

DIRECTIONS = ("sign", "normalized")


def _gradient(value: Callable[[Any, Any], jax.Array], inputs: Inputs, target: Any
              ) -> Callable[[list[jax.Array]], list[jax.Array]]:
    """``leaves -> d loss / d leaves`` for one example and target."""
    return fast_kernels(jax.grad(lambda leaves: value(inputs.score_input(leaves), target)))


def _sign_step(leaves: list[jax.Array], grads: list[jax.Array], alpha: Any, ms: list[Any],
               threshold: float) -> list[jax.Array]:
    """Captum's FGSM step: ``x + alpha * sign(g) * mask`` where ``|g| > threshold``, else ``x``."""
    out = []
    for a, g, m in zip(leaves, grads, ms):
        step = jnp.asarray(alpha, a.dtype) * jnp.sign(g).astype(a.dtype)
        out.append(jnp.where(jnp.abs(g) > threshold, a + (step if m is None else step * m), a))
    return out


def _norm(norm: str, method: str) -> str:
    return check_choice(str(norm).lower(), NORMS, "norm", method)


def fgsm(
    fn: Callable[[Any], Any],
    epsilon: float,
    *,
    loss: str | Callable[[Any, Any], Any] = "cross_entropy",
    targeted: bool = False,
    bounds: tuple[Any, Any] | None = None,
    mask: Any = None,
    threshold: float = ZERO_GRADIENT,
) -> Perturbation:
    """Fast gradient sign method: one step of ``epsilon`` along the sign of the loss's gradient.

    Goodfellow et al., "Explaining and Harnessing Adversarial Examples", ICLR 2015
    (arXiv:1412.6572), as Captum's ``captum.robust.FGSM`` computes it::

        x' = clip(x + epsilon * sign(grad_x L(x, y)) * mask)      untargeted: y, the true class
        x' = clip(x - epsilon * sign(grad_x L(x, t)) * mask)      targeted: t, the class to reach

    where components with ``|grad| <= threshold`` (Captum's ``zero_thresh``, 1e-6) do not move and
    ``clip`` applies ``bounds`` last. ``L`` is ``loss`` (:data:`~xai_core.robust.LOSSES`), by default
    the cross-entropy of the logits ``fn(x)``: Captum's default ``-log(output[y])`` on a model that
    ends in a softmax. ``x`` may be a pytree (fixed inputs stay as they are).

    Args:
      fn: the model's logits for ONE example (``m.logits``), or a score / loss (``loss=``).
      epsilon: the step, ``>= 0`` (may be traced).
      loss: a name of :data:`~xai_core.robust.LOSSES` or ``loss(fn(x), target) -> scalar``.
      targeted: step down the loss of ``target`` instead of up.
      bounds: ``(low, high)`` of the input values (e.g. ``(0.0, 1.0)``), or ``None``.
      mask: 1 where the input may change, 0 where not (broadcastable to ``x``; ``None``: all).
      threshold: gradients of at most this size count as zero.

    Returns:
      ``attack(x, target=None, key=None) -> x'`` (``key`` is not used: FGSM draws nothing).

    >>> import jax.numpy as jnp, xai_core as xc
    >>> logits = lambda x: jnp.stack([0.0, x @ jnp.array([1.0, -2.0])])
    >>> xc.robust.fgsm(logits, 0.1)(jnp.array([1.0, 1.0]), 0)  # raise the loss of class 0
    Array([1.1, 0.9], dtype=float32)
    """
    method = "fgsm"
    epsilon = check_strength(epsilon, "epsilon", method)
    value = loss_of(fn, loss, method)
    bounds = check_bounds(bounds, method)
    sign = -1.0 if targeted else 1.0

    def attack(x: Any, target: Any = None, key: Any = None) -> Any:
        inputs = split_inputs(x, method)
        grads = _gradient(value, inputs, target)(inputs.leaves)
        stepped = _sign_step(inputs.leaves, grads, sign * epsilon, masks(inputs, mask, method), threshold)
        return inputs.noisy(clamp(inputs, stepped, bounds, method))

    return attack


def _draw(key: jax.Array, a: jax.Array, radius: Any, norm: str) -> jax.Array:
    """One leaf's uniform point of the ball (Captum's ``PGD._random_point``, one example)."""
    r = jnp.asarray(radius, a.dtype)
    if norm == "linf":
        return jax.random.uniform(key, a.shape, a.dtype) * r * 2 - r  # Captum: rand * radius * 2 - radius
    k_dir, k_len = jax.random.split(key)
    u = jax.random.normal(k_dir, a.shape, a.dtype)
    unit = u / jnp.maximum(l2_norm(u), 1e-12)  # torch.nn.functional.normalize's eps
    length = jax.random.uniform(k_len, (), a.dtype) ** (1.0 / leaf_size(a)) * r
    return length * unit


def random_point(key: jax.Array, x: Any, radius: float, norm: str = "linf") -> Any:
    """Offsets ``d`` of a uniformly random point ``x + d`` of the ball of ``radius`` around ``x``.

    As Captum's PGD draws its random start: L-infinity, ``d ~ U(-radius, radius)`` per element;
    L2, a direction ``u / |u|`` with ``u ~ N(0, I)`` times a length ``radius * U(0, 1) ** (1 / n)``
    for ``n`` elements (uniform in the ball's volume). Each input of a pytree ``x`` gets its own
    ball, as each tensor of Captum's tuples does; fixed inputs get ``None``. :func:`pgd` with
    ``random_start=True`` starts from ``clip(x + d * mask)`` with this ``d`` drawn from its ``key``;
    pass ``start=d`` to start from given offsets (another library's draw, replayed).

    >>> import jax, jax.numpy as jnp, xai_core as xc
    >>> d = xc.robust.random_point(jax.random.key(0), jnp.zeros(100), 0.5, norm="l2")
    >>> bool(jnp.linalg.norm(d) <= 0.5)
    True
    """
    method = "random_point"
    norm = _norm(norm, method)
    radius = check_strength(radius, "radius", method)
    inputs = split_inputs(x, method)
    keys = jax.random.split(key, len(inputs.leaves))
    return inputs.result([_draw(k, a, radius, norm) for k, a in zip(keys, inputs.leaves)])


def _project(center: jax.Array, y: jax.Array, radius: Any, norm: str) -> jax.Array:
    """``y`` back into the ball around ``center``: L-infinity by clipping the difference, L2 by
    ``torch.renorm``'s rule (a difference longer than ``radius`` scaled by ``radius / (|d| + 1e-7)``)."""
    d = y - center
    r = jnp.asarray(radius, y.dtype)
    if norm == "linf":
        return center + jnp.clip(d, -r, r)
    n = l2_norm(d)
    return center + d * jnp.where(n > r, r / (n + jnp.asarray(1e-7, y.dtype)), jnp.ones((), y.dtype))


def pgd(
    fn: Callable[[Any], Any],
    radius: float,
    step_size: float,
    steps: int,
    *,
    norm: str = "linf",
    loss: str | Callable[[Any, Any], Any] = "cross_entropy",
    targeted: bool = False,
    random_start: bool = False,
    bounds: tuple[Any, Any] | None = None,
    mask: Any = None,
    direction: str = "sign",
    threshold: float = ZERO_GRADIENT,
) -> Perturbation:
    """Projected gradient descent: ``steps`` FGSM steps, each projected back into the ball.

    Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks", ICLR 2018
    (arXiv:1706.06083), as Captum's ``captum.robust.PGD`` computes it::

        x_0 = clip(x + d * mask)   with d = random_point(key, x, radius, norm), or x_0 = x
        x_{k+1} = clip(P(x_k +/- step_size * sign(grad L(x_k)) * mask))

    ``+`` untargeted, ``-`` targeted, components with ``|grad| <= threshold`` unmoved (Captum's
    FGSM step, whose own bounds are off); ``P`` projects onto the ball of ``radius`` around ``x``
    (L-infinity: clip the difference; L2: ``torch.renorm``'s rescaling, per input of a pytree as
    per tensor of Captum's tuples), then ``clip`` applies ``bounds``. Captum steps along the sign in
    both balls; ``direction="normalized"`` steps ``step_size * g / |g|_2`` instead (the L2 ball's
    steepest ascent, as most L2 attacks do). The steps are one ``lax.scan``.

    Args:
      fn: the model's logits for ONE example (``m.logits``), or a score / loss (``loss=``).
      radius: the ball's radius ``>= 0`` (Captum's ``radius``; may be traced).
      step_size: each step's size ``>= 0`` (may be traced).
      steps: the number of steps ``>= 1`` (Captum's ``step_num``).
      norm: ``"linf"`` or ``"l2"`` (:data:`NORMS`).
      loss, targeted, bounds, mask, threshold: as in :func:`fgsm`.
      random_start: start from a random point of the ball (needs ``key``).
      direction: ``"sign"`` (Captum's) or ``"normalized"``.

    Returns:
      ``attack(x, target=None, key=None, start=None) -> x'``; ``start`` (offsets of ``x``'s
      structure) replaces the random draw, e.g. to replay another library's random start.

    >>> import jax, jax.numpy as jnp, xai_core as xc
    >>> logits = lambda x: jnp.stack([0.0, x @ jnp.array([1.0, -2.0])])
    >>> attack = xc.robust.pgd(logits, radius=0.3, step_size=0.1, steps=5, random_start=True)
    >>> x_adv = attack(jnp.array([1.0, 1.0]), 0, key=jax.random.key(0))
    >>> [round(v, 4) for v in x_adv.tolist()]  # to the ball's corner, away from class 0
    [1.3, 0.7]
    """
    method = "pgd"
    radius = check_strength(radius, "radius", method)
    step_size = check_strength(step_size, "step_size", method)
    steps = check_positive_int(steps, "steps", method)
    norm = _norm(norm, method)
    direction = check_choice(direction, DIRECTIONS, "direction", method)
    value = loss_of(fn, loss, method)
    bounds = check_bounds(bounds, method)
    sign = -1.0 if targeted else 1.0

    def attack(x: Any, target: Any = None, key: Any = None, start: Any = None) -> Any:
        inputs = split_inputs(x, method)
        centers, ms = inputs.leaves, masks(inputs, mask, method)
        if start is not None or random_start:
            if start is None and key is None:
                raise ValueError("pgd: random_start=True needs a jax.random key: attack(x, target, key=key) "
                                 "(or give the offsets: start=...).")
            offsets = per_leaf_start(inputs, start, method) if start is not None else [
                _draw(k, a, radius, norm) for k, a in zip(jax.random.split(key, len(centers)), centers)]
            current = clamp(inputs, [a + (d if m is None else d * m) for a, d, m in zip(centers, offsets, ms)],
                            bounds, method)
        else:
            current = centers
        grad = _gradient(value, inputs, target)

        def one_step(leaves: list[jax.Array], _: None) -> tuple[list[jax.Array], None]:
            grads = grad(leaves)
            if direction == "sign":
                moved = _sign_step(leaves, grads, sign * step_size, ms, threshold)
            else:
                moved = []
                for a, g, m in zip(leaves, grads, ms):
                    n = l2_norm(g)
                    d = jnp.asarray(sign * step_size, a.dtype) * g / jnp.where(n > 0, n, 1)
                    moved.append(a + (d if m is None else d * m))
            projected = [_project(c, y, radius, norm) for c, y in zip(centers, moved)]
            return clamp(inputs, projected, bounds, method), None

        final, _ = jax.lax.scan(one_step, current, None, length=steps)
        return inputs.noisy(final)

    return attack
