"""Layer and neuron attributions (Captum's names), as transforms of a model and a layer name.

``m`` is a :class:`xai_core.adapters.Model` and ``layer`` one of ``m.layers``; ``A(x)`` is the
layer's output for one example and ``S_t`` the rest of the model's score for class ``t`` as a
function of it (``m.split``: a skip connection past the layer reads the real ``x``).

- :func:`activation`: ``A(x)`` (Captum's ``LayerActivation``);
- :func:`gradient_x_activation`: ``A * dS_t/dA`` (``LayerGradientXActivation``);
- :func:`integrated_gradients`: IG in the layer's space, from ``A(x0)`` to ``A(x)``
  (``LayerIntegratedGradients``): sums to ``S_t(A(x)) - S_t(A(x0))``;
- :func:`conductance`: ``sum_k dS_t/dA(x_k) * (A(x_{k+1}) - A(x_k))`` along the input path
  ``x_k = x0 + alpha_k (x - x0)`` (Dhamdhere et al. 2018, ``LayerConductance``);
- :func:`deeplift`: DeepLift's multipliers of the rest of the model at the layer, times
  ``A(x) - A(x0)`` (``LayerDeepLift``);
- :func:`neuron_gradient`, :func:`neuron_integrated_gradients`: the gradient / IG of one unit
  ``A(x)[neuron]`` with respect to the input (``NeuronGradient``, ``NeuronIntegratedGradients``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from xai_core.attribution import gradients
from xai_core.core.checks import check_baseline, check_batch_size, check_choice, check_positive_int
from xai_core.core.chunking import DEFAULT_BATCH_SIZE, accumulation_dtype, chunked_sum, resolve_batch_size
from xai_core.rules import deeplift as _deeplift

__all__ = ["activation", "conductance", "deeplift", "gradient_x_activation", "integrated_gradients",
           "neuron_gradient", "neuron_integrated_gradients"]

LayerFn = Callable[..., Any]


def _parts(m: Any, layer: str, x: jax.Array) -> tuple[Callable[[jax.Array], jax.Array], Callable[[jax.Array], jax.Array]]:
    head, tail = m.split(layer, x)
    return head, lambda a: tail(a, x)


def _baseline(x: jax.Array, baseline: Any, method: str) -> jax.Array:
    return jnp.zeros_like(x) if baseline is None else check_baseline(baseline, x, method)


def activation(m: Any, layer: str) -> LayerFn:
    """``fn(x) -> A(x)``: the layer's output for one example."""
    return lambda x: _parts(m, layer, x)[0](x)


def gradient_x_activation(m: Any, layer: str) -> LayerFn:
    """``fn(x, t) -> A * dS_t/dA`` at the layer (Captum's ``LayerGradientXActivation``)."""

    def attribution(x: jax.Array, target: Any) -> jax.Array:
        head, rest = _parts(m, layer, x)
        a = head(x)
        return a * jax.grad(lambda a: rest(a)[target])(a)

    return attribution


def integrated_gradients(m: Any, layer: str, baseline: Any = None, steps: int = 64, rule: str = "trapezoid",
                         batch_size: int | str | None = DEFAULT_BATCH_SIZE) -> LayerFn:
    """``fn(x, t)``: IG of ``S_t`` in the layer's space, from ``A(x0)`` to ``A(x)``.

    Captum's ``LayerIntegratedGradients`` (it interpolates the layer's activations); the same
    ``rule`` / ``steps`` as :func:`xai_core.integrated_gradients`, whose completeness it keeps:
    ``sum = S_t(A(x)) - S_t(A(x0))``."""

    def attribution(x: jax.Array, target: Any) -> jax.Array:
        head, rest = _parts(m, layer, x)
        a0 = head(_baseline(x, baseline, "layer.integrated_gradients"))
        ig = gradients.integrated_gradients(lambda a: rest(a)[target], a0, steps, rule, batch_size)
        return ig(head(x))

    return attribution


def conductance(m: Any, layer: str, baseline: Any = None, steps: int = 64, rule: str = "gauss_legendre",
                batch_size: int | str | None = DEFAULT_BATCH_SIZE) -> LayerFn:
    """``fn(x, t)``: layer conductance ``sum_k dS_t/dA(x_k) * (A(x_{k+1}) - A(x_k))`` over the
    ``steps + 1`` points ``alpha_k`` of ``rule`` (Captum's ``LayerConductance``, same points).

    Dhamdhere, Sundararajan & Yan, "How Important Is a Neuron?", 2018. Sums to
    ``f(x) - f(x0)`` as the steps grow."""
    check_choice(rule, gradients.RULES, "rule", "layer.conductance")
    steps = check_positive_int(steps, "steps", "layer.conductance")
    batch_size = check_batch_size(batch_size, "layer.conductance")
    alphas = gradients.path_rule(rule, steps + 1)[0]

    def attribution(x: jax.Array, target: Any) -> jax.Array:
        head, tail = m.split(layer, x)
        x0 = _baseline(x, baseline, "layer.conductance")
        acc = accumulation_dtype(x.dtype)
        al = jnp.asarray(alphas, x.dtype)

        def term(k: jax.Array) -> jax.Array:
            xk, xk1 = x0 + al[k] * (x - x0), x0 + al[k + 1] * (x - x0)
            ak = head(xk)
            g = jax.grad(lambda a: tail(a, xk)[target])(ak)
            return (g * (head(xk1) - ak)).astype(acc)

        total = chunked_sum(term, steps, resolve_batch_size(batch_size, [x]))
        return total.astype(x.dtype)

    return attribution


def deeplift(m: Any, layer: str, baseline: Any = None) -> LayerFn:
    """``fn(x, t)``: DeepLift at the layer: the rest of the model's multipliers times
    ``A(x) - A(x0)`` (Captum's ``LayerDeepLift``); sums to ``S_t(A(x)) - S_t(A(x0))``.

    A skip connection past the layer reads the real ``x`` in both terms, where Captum's runs
    the whole network on the input and the baseline: the two agree for layers no skip
    connection passes."""

    def attribution(x: jax.Array, target: Any) -> jax.Array:
        head, rest = _parts(m, layer, x)
        a0 = head(_baseline(x, baseline, "layer.deeplift"))
        return _deeplift(lambda a: rest(a)[target], baseline=a0)(head(x))

    return attribution


def neuron_gradient(m: Any, layer: str, neuron: tuple[int, ...]) -> LayerFn:
    """``fn(x) -> d A(x)[neuron] / dx`` (Captum's ``NeuronGradient``); ``neuron`` indexes one
    example's layer output."""
    return lambda x: gradients.gradient(lambda v: _parts(m, layer, x)[0](v)[neuron])(x)


def neuron_integrated_gradients(m: Any, layer: str, neuron: tuple[int, ...], baseline: Any = None, steps: int = 64,
                                rule: str = "trapezoid", batch_size: int | str | None = DEFAULT_BATCH_SIZE) -> LayerFn:
    """``fn(x)``: integrated gradients of the unit ``A(x)[neuron]`` with respect to the input
    (Captum's ``NeuronIntegratedGradients``)."""

    def attribution(x: jax.Array) -> jax.Array:
        head = _parts(m, layer, x)[0]
        return gradients.integrated_gradients(lambda v: head(v)[neuron], baseline, steps, rule, batch_size)(x)

    return attribution
