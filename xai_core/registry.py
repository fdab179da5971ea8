"""One name per method: ``attribute(score_fn, x, method=...)`` and ``methods()``.

Adding a method is one ``register`` line at the bottom of this file (see CONTRIBUTING.md).
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax

from xai_core import rules
from xai_core.attribution import expectations, gradients, occlusion, owen, paths, rise, shapley, smoothing, surrogates, xrai
from xai_core.core.checks import ScoreFn
from xai_core.core.chunking import DEFAULT_BATCH_SIZE


@dataclass(frozen=True)
class Method:
    """A registered method: ``build(score_fn, **options) -> attribution fn``."""

    name: str
    build: Callable[..., Callable[..., jax.Array]]
    needs_key: bool
    summary: str


_METHODS: dict[str, Method] = {}


def register(
    name: str,
    build: Callable[..., Callable[..., jax.Array]],
    *,
    summary: str,
    needs_key: bool = False,
    aliases: tuple[str, ...] = (),
) -> None:
    """Make ``build`` callable as ``attribute(score_fn, x, method=name, **options)``.

    ``build(score_fn, **options)`` returns the attribution function; with ``needs_key`` it is
    called as ``fn(x, key=key)``.
    """
    method = Method(name, build, needs_key, summary)
    for label in (name, *aliases):
        if label in _METHODS:
            raise ValueError(f"method name {label!r} is already registered")
        _METHODS[label] = method


def methods() -> tuple[str, ...]:
    """Every name (and alias) ``attribute`` accepts, sorted."""
    return tuple(sorted(_METHODS))


def get_method(name: str) -> Method:
    """The registered method called ``name``; unknown names list the valid ones and the closest."""
    if name not in _METHODS:
        close = difflib.get_close_matches(str(name), list(_METHODS), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown method {name!r}; valid methods: {', '.join(methods())}.{hint}")
    return _METHODS[name]


def _build(method: Method, score_fn: ScoreFn, options: dict[str, Any]) -> Callable[..., jax.Array]:
    accepted = [p for p in inspect.signature(method.build).parameters if p != "score_fn"]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        hints = [difflib.get_close_matches(u, accepted, n=1) for u in unknown]
        hint = "".join(f" Did you mean {h[0]!r} for {u!r}?" for u, h in zip(unknown, hints) if h)
        raise TypeError(
            f"method {method.name!r} got unknown option(s) {', '.join(map(repr, unknown))}; "
            f"it accepts: {', '.join(accepted)}.{hint}"
        )
    return method.build(score_fn, **options)


def attribute(score_fn: ScoreFn, x: jax.Array, method: str = "ig", key: Any = None, **options: Any) -> jax.Array:
    """Attribute ``score_fn`` at ``x`` with the method called ``method`` (see ``methods()``).

    ``options`` go to the method (e.g. ``steps=128`` for IG). ``key`` is a ``jax.random`` key,
    required by sampling methods (smoothgrad, vargrad, ...) and ignored by deterministic ones.
    Works under ``jax.jit`` and ``jax.vmap``, also with a traced class target in ``score_fn``.

    >>> import jax.numpy as jnp, xai_core as xc
    >>> xc.attribute(lambda x: jnp.sum(x ** 2), jnp.ones(2), method="gradient")
    Array([2., 2.], dtype=float32)
    """
    spec = get_method(method)
    fn = _build(spec, score_fn, options)
    if not spec.needs_key:
        return fn(x)
    if key is None:
        raise ValueError(
            f"method {method!r} samples noise and needs an explicit PRNG key: "
            "xc.attribute(..., key=jax.random.key(0)); the same key gives the same result."
        )
    return fn(x, key=key)


def _noise_method(kind: str) -> Callable[..., Callable[..., jax.Array]]:
    """``smoothgrad`` of a registered deterministic base method, as a registry entry."""

    def build(
        score_fn: ScoreFn,
        base: str = "gradient",
        base_options: dict[str, Any] | None = None,
        samples: int = 50,
        sigma: float = 0.15,
        relative: bool = True,
        batch_size: int | str | None = DEFAULT_BATCH_SIZE,
    ) -> Callable[..., jax.Array]:
        inner = get_method(base)
        if inner.needs_key:
            raise ValueError(f"{kind}: base method {base!r} samples noise itself; choose a deterministic base.")
        base_fn = _build(inner, score_fn, dict(base_options or {}))
        return smoothing.smoothgrad(base_fn, samples, sigma, kind, relative=relative, batch_size=batch_size)

    return build


register("gradient", gradients.gradient, summary="vanilla gradient (saliency)", aliases=("saliency",))
register("gradient_x_input", gradients.gradient_x_input, summary="gradient times input", aliases=("input_x_gradient",))
register("integrated_gradients", gradients.integrated_gradients, summary="integrated gradients", aliases=("ig",))
register("guided_ig", paths.guided_ig, summary="IG along a path that moves low-gradient features first")
register("blur_ig", paths.blur_ig, summary="IG along the path from a blurred image to the image")
register("xrai", xrai.xrai, summary="XRAI: IG shared out over greedily ranked image regions")
register("occlusion", occlusion.occlusion, summary="score drop per occluded window")
register("smoothgrad", _noise_method("mean"), summary="mean over noisy inputs", needs_key=True)
register("squaregrad", _noise_method("square"), summary="mean square over noisy inputs", needs_key=True)
register("vargrad", _noise_method("var"), summary="variance over noisy inputs", needs_key=True)
register("guided_backprop", rules.guided_backprop, summary="gradient with guided ReLUs (x > 0 and g > 0)")
register("deconvnet", rules.deconvnet, summary="gradient with deconvnet ReLUs (g > 0)", aliases=("deconvolution",))
register("deeplift", rules.deeplift, summary="DeepLift, rescale rule (sums to f(x) - f(x0))")
register("deeplift_shap", expectations.deeplift_shap, summary="DeepLift averaged over a baseline set")
register("gradient_shap", expectations.gradient_shap, summary="expected gradients over a baseline set", needs_key=True,
         aliases=("expected_gradients",))
register("lrp", rules.lrp, summary="layer-wise relevance propagation with a composite of rules")
register("feature_ablation", shapley.feature_ablation, summary="score drop per feature group switched off")
register("shapley", shapley.shapley, summary="exact Shapley values over all 2^K coalitions")
register("shapley_sampling", shapley.shapley_sampling, summary="Shapley values from antithetic feature orders",
         needs_key=True)
register("kernel_shap", surrogates.kernel_shap, summary="Kernel SHAP: Shapley-kernel weighted regression", needs_key=True)
register("owen", owen.owen, summary="Owen values over a hierarchy of halves (shap's Partition)")
register("lime", surrogates.lime, summary="LIME: kernel-weighted ridge on random coalitions", needs_key=True)
register("rise", rise.rise, summary="RISE: score-weighted mean of random smooth masks", needs_key=True)
