"""Robustness: how much does an explanation change when the input barely does? **Lower is better.**

Each metric takes the attribution *function* (``x -> map``, e.g. ``xc.gradient(score_fn)`` or
``lambda x: xc.attribute(score_fn, x, method="ig")``), re-explains ``samples`` perturbed
copies of ``x`` in one compiled program (``batch_size`` explanations at a time) and reduces.

Example:
    >>> import jax, jax.numpy as jnp, xai_core as xc
    >>> from xai_core.metrics import sensitivity_max
    >>> explain = xc.gradient(lambda x: jnp.sum(x ** 2))   # a = 2x: changes by 2 * delta
    >>> s = sensitivity_max(explain, jnp.ones(4), key=jax.random.key(0), radius=0.1, samples=8)
    >>> bool(0 < s <= 2 * 0.1 * 2)                           # |2 delta|_2 <= 2 * 0.1 * sqrt(4)
    True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from xai_core.core.checks import check_choice, check_input, check_positive_int
from xai_core.metrics._common import DEFAULT_BATCH_SIZE, as_float, mapped

Explain = Callable[[jax.Array], Any]
NORMS = ("fro", "inf")


def _norm(a: jax.Array, norm: str) -> jax.Array:
    a = as_float(a).ravel()
    return jnp.sqrt(jnp.sum(a * a)) if norm == "fro" else jnp.max(jnp.abs(a))


def _perturbations(x: jax.Array, key: jax.Array | None, noise: jax.Array | None, samples: int, draw: Callable,
                   metric: str) -> jax.Array:
    if noise is None:
        if key is None:
            raise ValueError(f"{metric}: pass key=jax.random.key(0) to draw the perturbations, or noise= to give them.")
        noise = draw(key, (check_positive_int(samples, "samples", metric), *x.shape))
    noise = jnp.asarray(noise, x.dtype)
    if noise.shape[1:] != x.shape:
        raise ValueError(f"{metric}: noise must be (samples, *{x.shape}), got {tuple(noise.shape)}.")
    return noise


def _explain(explain: Explain, metric: str) -> Callable[[jax.Array], jax.Array]:
    if not callable(explain):
        raise TypeError(f"{metric}: explain must be the attribution function x -> map (e.g. xc.gradient(score_fn)), "
                        f"got {type(explain).__name__}.")
    return lambda x: as_float(explain(x))


def _sensitivities(explain: Explain, x: jax.Array, key: jax.Array | None, radius: float, samples: int,
                   noise: jax.Array | None, relative: bool, norm: str, batch_size: int | str | None,
                   metric: str) -> jax.Array:
    x = check_input(x, metric)
    check_choice(norm, NORMS, "norm", metric)
    fn = _explain(explain, metric)
    noise = _perturbations(x, key, noise, samples, lambda k, s: jax.random.uniform(k, s, x.dtype, -radius, radius),
                           metric)
    a = fn(x)
    changes = mapped(lambda d: _norm(fn(x + d) - a, norm), noise, batch_size, x, metric)
    if relative:
        size = _norm(a, norm)
        changes = changes / jnp.where(size > 0, size, 1)
    return changes


def sensitivity_max(explain: Explain, x: jax.Array, *, key: jax.Array | None = None, radius: float = 0.02,
                    samples: int = 10, noise: jax.Array | None = None, relative: bool = False, norm: str = "fro",
                    batch_size: int | str | None = DEFAULT_BATCH_SIZE) -> jax.Array:
    """Max-sensitivity (Yeh et al., "On the (In)fidelity and Sensitivity of Explanations",
    NeurIPS 2019): ``max_j ||Phi(x + d_j) - Phi(x)||`` over ``d_j ~ U[-radius, radius]``
    elementwise (the L-inf ball, as Captum's default perturbation).

    Yeh et al.'s definition is the plain change (``relative=False``). Captum's
    ``sensitivity_max`` and Quantus's ``MaxSensitivity`` divide by ``||Phi(x)||``
    (``relative=True``; a zero map divides by 1, as Captum).

    Args:
      explain: ``x -> attribution`` for one example.
      key: draws the ``samples`` perturbations, unless ``noise`` gives them, ``(samples, *x.shape)``.
      norm: "fro" (Frobenius / L2 of the flattened difference) or "inf".
    """
    return jnp.max(_sensitivities(explain, x, key, radius, samples, noise, relative, norm, batch_size, "sensitivity_max"))


def avg_sensitivity(explain: Explain, x: jax.Array, *, key: jax.Array | None = None, radius: float = 0.02,
                    samples: int = 10, noise: jax.Array | None = None, relative: bool = False, norm: str = "fro",
                    batch_size: int | str | None = DEFAULT_BATCH_SIZE) -> jax.Array:
    """Average sensitivity (Yeh et al. 2019; Quantus's ``AvgSensitivity`` with ``relative=True``):
    the mean instead of the max of :func:`sensitivity_max`'s changes."""
    return jnp.mean(_sensitivities(explain, x, key, radius, samples, noise, relative, norm, batch_size, "avg_sensitivity"))


def local_lipschitz(explain: Explain, x: jax.Array, *, key: jax.Array | None = None, sigma: float = 0.1,
                    samples: int = 10, noise: jax.Array | None = None,
                    batch_size: int | str | None = DEFAULT_BATCH_SIZE) -> jax.Array:
    """Local Lipschitz estimate (Alvarez-Melis & Jaakkola, "On the Robustness of
    Interpretability Methods", 2018): ``max_j ||Phi(x + d_j) - Phi(x)||_2 / ||d_j||_2`` over
    ``d_j ~ N(0, sigma^2)`` (Quantus's ``LocalLipschitzEstimate`` without its default max
    normalisation of the maps; the paper optimises the ball, here it is sampled)."""
    metric = "local_lipschitz"
    x = check_input(x, metric)
    fn = _explain(explain, metric)
    noise = _perturbations(x, key, noise, samples, lambda k, s: sigma * jax.random.normal(k, s, x.dtype), metric)
    a = fn(x)
    ratios = mapped(lambda d: _norm(fn(x + d) - a, "fro") / jnp.maximum(_norm(d, "fro"), 1e-30),
                    noise, batch_size, x, metric)
    return jnp.max(ratios)
