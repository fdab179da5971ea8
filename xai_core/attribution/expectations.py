"""SHAP-style expectations over a set of baselines: DeepLiftShap and GradientShap.

Lundberg & Lee, "A Unified Approach to Interpreting Model Predictions", NeurIPS 2017
(DeepSHAP); Erion et al., "Improving performance of deep learning models with axiomatic
attribution priors and expected gradients", Nature Machine Intelligence 2021 (expected
gradients). Both average over baselines ``b_j`` drawn from a background set, given as one
array with a leading axis (``baselines.shape == (n, *x.shape)``; a pytree of such arrays for
pytree inputs). Evaluations are chunked (``batch_size``) like every multi-evaluation method.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from xai_core.core.checks import ScoreFn, check_batch_size, check_finite, check_positive_int
from xai_core.core.chunking import DEFAULT_BATCH_SIZE, accumulation_dtype, chunked_sum, resolve_batch_size
from xai_core.attribution.gradients import _grad_over
from xai_core.core.inputs import Inputs, split_inputs
from xai_core.rules.deeplift import multipliers


def _background(inputs: Inputs, baselines: Any, method: str) -> list[jax.Array]:
    """The baseline set of every attributed leaf, each of shape ``(n, *leaf.shape)``."""
    if baselines is None:
        raise ValueError(f"{method}: needs a set of baselines, e.g. baselines=jnp.zeros((1, *x.shape)) "
                         "or a sample of training inputs stacked on a leading axis.")
    sets = [jnp.asarray(b) for b in inputs.per_leaf(baselines, "baselines", method)]
    counts = set()
    for b, a in zip(sets, inputs.leaves):
        if b.shape[1:] != a.shape or b.ndim != a.ndim + 1:
            raise ValueError(f"{method}: baselines must have shape (n, *x.shape) = (n, {', '.join(map(str, a.shape))}), "
                             f"got {tuple(b.shape)}; stack the baselines on a new leading axis.")
        check_finite(b, "baselines", method)
        counts.add(b.shape[0])
    if len(counts) != 1 or 0 in counts:
        raise ValueError(f"{method}: every input needs the same number (>= 1) of baselines, got {sorted(counts)}.")
    return [b.astype(a.dtype) for b, a in zip(sets, inputs.leaves)]


def deeplift_shap(score_fn: ScoreFn, baselines: Any = None,
                  batch_size: int | str | None = DEFAULT_BATCH_SIZE) -> Callable[[Any], Any]:
    """DeepLiftShap: DeepLift's attribution averaged over a baseline set,
    ``a = mean_j (x - b_j) * m(x, b_j)``, so ``sum(a) = f(x) - mean_j f(b_j)``.

    Lundberg & Lee 2017; DeepLift's rules as in :func:`xai_core.deeplift`. Equal to Captum's
    ``DeepLiftShap`` where its DeepLift agrees with ours (no max-pooling, ``nn.Module``
    nonlinearities). ``batch_size`` baselines are evaluated at once (``"auto"``: picked from
    the input size; ``None``: all at once).

    >>> import jax, jax.numpy as jnp, xai_core as xc
    >>> f = lambda x: jnp.sum(jax.nn.relu(x))
    >>> xc.deeplift_shap(f, baselines=jnp.array([[0.0, 0.0], [1.0, -1.0]]))(jnp.array([2.0, 1.0]))
    Array([1.5, 1. ], dtype=float32)
    """
    batch_size = check_batch_size(batch_size, "deeplift_shap")
    run = multipliers(score_fn, "deeplift_shap")

    def attribution(x: Any) -> Any:
        inputs = split_inputs(x, "deeplift_shap")
        xs, sets = inputs.leaves, _background(inputs, baselines, "deeplift_shap")
        n = sets[0].shape[0]
        acc = accumulation_dtype(jnp.result_type(*xs))

        def term(j: jax.Array) -> list[jax.Array]:
            x0s = [b[j] for b in sets]
            return [((a - b) * m).astype(acc) for a, b, m in zip(xs, x0s, run(inputs, xs, x0s))]

        total = chunked_sum(term, n, resolve_batch_size(batch_size, xs))
        return inputs.result([(t / n).astype(a.dtype) for a, t in zip(xs, total)])

    return attribution


def gradient_shap(score_fn: ScoreFn, baselines: Any = None, samples: int = 50, stdev: float = 0.0,
                  batch_size: int | str | None = DEFAULT_BATCH_SIZE) -> Callable[..., Any]:
    """GradientShap (expected gradients): ``a = mean_k grad f(p_k) * (x~_k - b_k)`` with
    ``p_k = b_k + alpha_k (x~_k - b_k)``, ``b_k`` drawn from the baseline set, ``alpha_k ~ U(0, 1)``
    and ``x~_k = x + stdev * z_k``, ``z_k ~ N(0, 1)``.

    Erion et al. 2021; Captum's ``GradientShap`` (same formula, its ``stdevs`` is ``stdev``).
    Its expectation is ``f(x) - mean_j f(b_j)`` summed (completeness in expectation). Call the
    result as ``fn(x, key=key)``, or give the draws yourself as
    ``fn(x, draws={"baseline": idx, "alpha": alpha, "noise": z})`` with ``idx`` (int) and
    ``alpha`` of shape ``(samples,)`` and, if ``stdev > 0``, ``z`` of shape ``(samples, *x.shape)``
    (one array per input for pytree inputs), e.g. to compare with Captum on the same draws.

    >>> import jax, jax.numpy as jnp, xai_core as xc
    >>> fn = xc.gradient_shap(lambda x: jnp.sum(3.0 * x), baselines=jnp.zeros((2, 2)), samples=4)
    >>> fn(jnp.array([1.0, 2.0]), key=jax.random.key(0))  # linear: exactly 3 * (x - 0)
    Array([3., 6.], dtype=float32)
    """
    samples = check_positive_int(samples, "samples", "gradient_shap")
    batch_size = check_batch_size(batch_size, "gradient_shap")
    if not isinstance(stdev, (int, float)) or not stdev >= 0:
        raise ValueError(f"gradient_shap: stdev must be a number >= 0, got {stdev!r}.")
    grad = _grad_over(score_fn, "gradient_shap")

    def attribution(x: Any, *, key: Any = None, draws: Mapping[str, Any] | None = None) -> Any:
        if (key is None) == (draws is None):
            raise ValueError("gradient_shap samples baselines and path points and needs an explicit PRNG "
                             "key: call fn(x, key=jax.random.key(0)) (or xc.attribute(..., key=key)); or "
                             "pass draws={'baseline': ..., 'alpha': ...} instead (not both).")
        inputs = split_inputs(x, "gradient_shap")
        xs, sets = inputs.leaves, _background(inputs, baselines, "gradient_shap")
        index, alpha, noise = _draws(key, draws, samples, sets[0].shape[0], xs)
        acc = accumulation_dtype(jnp.result_type(*xs))

        def term(k: jax.Array) -> list[jax.Array]:
            noisy = [a + (stdev * z[k]).astype(a.dtype) for a, z in zip(xs, noise)]
            deltas = [xn - b[index[k]] for xn, b in zip(noisy, sets)]
            path = [b[index[k]] + alpha[k].astype(d.dtype) * d for b, d in zip(sets, deltas)]
            return [(g * d).astype(acc) for g, d in zip(grad(inputs, path), deltas)]

        total = chunked_sum(term, samples, resolve_batch_size(batch_size, xs))
        return inputs.result([(t / samples).astype(a.dtype) for a, t in zip(xs, total)])

    return attribution


def _draws(key: Any, draws: Mapping[str, Any] | None, samples: int, n: int,
           xs: list[jax.Array]) -> tuple[jax.Array, jax.Array, list[jax.Array]]:
    """Baseline indices, path points and standard-normal noise, drawn from ``key`` or given."""
    if draws is None:
        k_index, k_alpha, k_noise = jax.random.split(key, 3)
        noise_keys = jax.random.split(k_noise, len(xs))
        return (jax.random.randint(k_index, (samples,), 0, n), jax.random.uniform(k_alpha, (samples,)),
                [jax.random.normal(k, (samples, *a.shape), a.dtype) for k, a in zip(noise_keys, xs)])
    unknown = set(draws) - {"baseline", "alpha", "noise"}
    if unknown or not {"baseline", "alpha"} <= set(draws):
        raise ValueError("gradient_shap: draws must have the keys 'baseline' and 'alpha' (and optionally "
                         f"'noise'), got {sorted(draws)}.")
    index, alpha = jnp.asarray(draws["baseline"]), jnp.asarray(draws["alpha"])
    if index.shape != (samples,) or alpha.shape != (samples,):
        raise ValueError(f"gradient_shap: draws['baseline'] and draws['alpha'] must have shape (samples,) = "
                         f"({samples},), got {index.shape} and {alpha.shape}.")
    z = draws.get("noise")
    zs = [jnp.zeros((samples, *a.shape), a.dtype) for a in xs] if z is None else [
        jnp.asarray(v) for v in (z if isinstance(z, (list, tuple)) else [z])]
    if len(zs) != len(xs) or any(v.shape != (samples, *a.shape) for v, a in zip(zs, xs)):
        raise ValueError("gradient_shap: draws['noise'] must hold one array of shape (samples, *x.shape) "
                         "per attributed input.")
    return index, alpha, zs
