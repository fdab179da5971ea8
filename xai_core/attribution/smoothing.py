"""Noise averaging over ANY attribution function: SmoothGrad, SquareGrad, VarGrad.

``smoothgrad`` is a transform of an attribution function (like ``optax.chain`` is of
optimizers): ``smoothgrad(integrated_gradients(f))`` is SmoothGrad over IG.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from xai_core.core.checks import check_batch_size, check_choice, check_positive_int
from xai_core.core.chunking import DEFAULT_BATCH_SIZE, accumulation_dtype, chunked_sum, resolve_batch_size
from xai_core.core.inputs import split_inputs

KINDS = ("mean", "square", "var")

KeyedAttributionFn = Callable[..., jax.Array]


def smoothgrad(
    attribution_fn: Callable[[jax.Array], jax.Array],
    samples: int = 50,
    sigma: float = 0.15,
    kind: str = "mean",
    *,
    relative: bool = True,
    batch_size: int | str | None = DEFAULT_BATCH_SIZE,
) -> KeyedAttributionFn:
    """Average an attribution over noisy copies of the input: ``E_eps[g(a(x + eps))]``.

    Smilkov et al., "SmoothGrad: removing noise by adding noise", 2017 (arXiv:1706.03825);
    SquareGrad and VarGrad from Hooker et al. / Adebayo et al. 2018. With ``eps ~ N(0, s^2)``:

    - ``kind="mean"``: ``mean_i a(x + eps_i)`` (SmoothGrad);
    - ``kind="square"``: ``mean_i a(x + eps_i)^2`` (SquareGrad);
    - ``kind="var"``: ``mean_i a_i^2 - (mean_i a_i)^2`` (VarGrad), computed shifted by the
      noise-free ``a(x)`` for accuracy and clipped at 0 against rounding (one extra evaluation).

    The noise std is ``s = sigma * (max(x) - min(x))`` when ``relative=True`` (the default, as
    in the paper: a fraction of the input's value range), else ``s = sigma``.

    The returned function is called as ``fn(x, key=key)`` with an explicit ``jax.random`` key;
    the same key gives the same result, whatever ``batch_size`` is (one noise draw per sample,
    from ``jax.random.split(key, samples)``). Or pass the draws yourself as
    ``fn(x, noise=z)`` with ``z`` of shape ``(samples, *x.shape)`` from ``N(0, 1)``
    (``eps_i = s * z[i]``), e.g. to compare with another library on the same draws.

    ``x`` may be a pytree of inputs (:mod:`xai_core.core.inputs`): each attributed input gets its
    own noise (scaled by its own range when ``relative``; ``noise=`` then holds one array of
    draws per input), inputs marked ``xc.fixed`` get none, and the result has ``x``'s structure.

    >>> import jax, jax.numpy as jnp, xai_core as xc
    >>> f = lambda x: jnp.sum(jnp.sin(x))
    >>> sg = xc.smoothgrad(xc.gradient(f), samples=8, sigma=0.1)
    >>> sg(jnp.ones(3), key=jax.random.key(0)).shape
    (3,)
    """
    samples = check_positive_int(samples, "samples", "smoothgrad")
    check_choice(kind, KINDS, "kind", "smoothgrad")
    batch_size = check_batch_size(batch_size, "smoothgrad")
    if not callable(attribution_fn):
        raise TypeError(
            "smoothgrad takes an attribution function (e.g. xc.gradient(score_fn)), got "
            f"{type(attribution_fn).__name__}."
        )
    if not isinstance(sigma, (int, float)) or not sigma >= 0:
        raise ValueError(f"smoothgrad: sigma must be a number >= 0, got {sigma!r}.")

    def attribution(x: Any, *, key: Any = None, noise: Any = None) -> Any:
        if (key is None) == (noise is None):
            raise ValueError(
                "smoothgrad samples noise and needs an explicit PRNG key: call fn(x, key=jax.random.key(0)) "
                "(or xc.attribute(..., key=key)); the same key gives the same result. To supply the "
                "standard-normal draws yourself pass noise=z instead (not both)."
            )
        inputs = split_inputs(x, "smoothgrad")
        xs = inputs.leaves
        scales = [sigma * (jnp.max(a) - jnp.min(a)) if relative else jnp.asarray(sigma, a.dtype) for a in xs]
        if noise is not None:
            draws = [jnp.asarray(z) for z in inputs.per_leaf(noise, "noise", "smoothgrad")]
            for z, a in zip(draws, xs):
                if z.shape != (samples, *a.shape):
                    raise ValueError(f"smoothgrad: noise must have shape (samples, *x.shape) = "
                                     f"{(samples, *a.shape)}, got {z.shape}.")

            def draw(i: jax.Array) -> list[jax.Array]:
                return [z[i].astype(a.dtype) for z, a in zip(draws, xs)]
        else:
            keys = jax.random.split(key, samples)

            def draw(i: jax.Array) -> list[jax.Array]:  # one key per sample; split per input
                ks = [keys[i]] if len(xs) == 1 else list(jax.random.split(keys[i], len(xs)))
                return [jax.random.normal(k, a.shape, a.dtype) for k, a in zip(ks, xs)]
        acc = accumulation_dtype(jnp.result_type(*xs))

        def leaves_of(result: Any) -> list[jax.Array]:
            return [a.astype(acc) for a in inputs.per_leaf(result, "the attribution", "smoothgrad")]

        shift = leaves_of(attribution_fn(x)) if kind == "var" else None

        def term(i: jax.Array) -> Any:
            noisy = [a + (s * z).astype(a.dtype) for a, s, z in zip(xs, scales, draw(i))]
            values = leaves_of(attribution_fn(inputs.noisy(noisy)))
            if kind == "mean":
                return values
            if kind == "square":
                return [v * v for v in values]
            ds = [v - s for v, s in zip(values, shift)]
            return ds, [d * d for d in ds]

        total = chunked_sum(term, samples, resolve_batch_size(batch_size, xs))
        if kind == "var":
            first, second = total
            result = [jnp.maximum(m2 / samples - (m1 / samples) ** 2, 0) for m1, m2 in zip(first, second)]
        else:
            result = [t / samples for t in total]
        return inputs.result([r.astype(a.dtype) for r, a in zip(result, xs)])

    return attribution
