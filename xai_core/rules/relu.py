"""ReLU rules: guided backpropagation and deconvnet.

Both keep the ordinary backward pass everywhere except at ReLUs, found in the traced program
however they were written (``jax.nn.relu``, ``nn.ReLU`` or ``F.relu`` through ``from_torch``,
Keras / Flax activations, an inline ``jnp.maximum(x, 0)``), where the upstream gradient ``g``
at the ReLU's output becomes, at its input ``x``:

- guided backprop (Springenberg et al., "Striving for Simplicity: The All Convolutional Net",
  ICLR 2015 workshop): ``(x > 0) * max(g, 0)``, the gradient's mask and the deconvnet's;
- deconvnet (Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks", ECCV
  2014): ``max(g, 0)``, ignoring the forward mask.

Captum's ``GuidedBackprop`` / ``Deconvolution`` do the same for ``nn.ReLU`` modules only: a
model written with ``F.relu`` gets the plain gradient there (tested in
``tests/test_rules_relu.py``). Max-pooling keeps its gradient (routing to the maximum), as in
Captum.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.extend.core import JaxprEqn, Literal

from xai_core.core.checks import ScoreFn
from xai_core.graph.interpreter import _call_name
from xai_core.rules.engine import BackwardRule, modified_gradient

NEEDS = "ReLU (jax.nn.relu, nn.ReLU / F.relu, or max(x, 0))"


def _is_relu(eqn: JaxprEqn) -> bool:
    if eqn.primitive.name == "custom_jvp_call":
        return _call_name(eqn) == "relu" and len(eqn.invars) == 1
    if eqn.primitive.name == "max":
        return any(isinstance(v, Literal) and jnp.ndim(v.val) == 0 and v.val == 0 for v in eqn.invars)
    return False


def _relu_rule(backward: Callable[[jax.Array, jax.Array], jax.Array]) -> BackwardRule:
    """A rule that computes each ReLU as ``max(x, 0)`` with ``backward(x, g)`` as its VJP."""

    @jax.custom_vjp
    def relu(x: jax.Array) -> jax.Array:
        return jnp.maximum(x, 0)

    def forward(x: jax.Array) -> tuple[jax.Array, jax.Array]:
        return jnp.maximum(x, 0), x

    def vjp(x: jax.Array, g: jax.Array) -> tuple[jax.Array]:
        return (backward(x, g).astype(x.dtype),)

    relu.defvjp(forward, vjp)

    def rule(eqn: JaxprEqn, *invals: Any) -> Any:
        if not _is_relu(eqn):
            return None
        x = invals[0] if eqn.primitive.name == "custom_jvp_call" else next(
            a for v, a in zip(eqn.invars, invals) if not isinstance(v, Literal))
        return relu(x)

    rule.claims = _is_relu  # type: ignore[attr-defined]  # for the engine's reach check
    return rule


def _guided(x: jax.Array, g: jax.Array) -> jax.Array:
    return jnp.where(x > 0, jnp.maximum(g, 0), 0)


def _deconv(x: jax.Array, g: jax.Array) -> jax.Array:
    return jnp.maximum(g, 0)


def guided_backprop(score_fn: ScoreFn) -> Callable[[Any], Any]:
    """Guided backpropagation: the gradient with ``(x > 0) * max(g, 0)`` at every ReLU.

    Springenberg et al. 2015. Equal to Captum's ``GuidedBackprop`` on models whose ReLUs are
    ``nn.ReLU`` modules, and to it on every way of writing the same model (``F.relu``, a
    module used twice), which Captum is not. A program without a ReLU raises an error.

    >>> import jax, jax.numpy as jnp, xai_core as xc
    >>> f = lambda x: -jnp.sum(jax.nn.relu(x))
    >>> xc.guided_backprop(f)(jnp.array([1.0, -1.0]))  # negative upstream: nothing passes
    Array([0., 0.], dtype=float32)
    """
    rules = _relu_rule(_guided)
    return modified_gradient(score_fn, {"custom_jvp_call": rules, "max": rules}, "guided_backprop", NEEDS)


def deconvnet(score_fn: ScoreFn) -> Callable[[Any], Any]:
    """Deconvnet: the gradient with ``max(g, 0)`` at every ReLU (the forward mask ignored).

    Zeiler & Fergus 2014; equal to Captum's ``Deconvolution`` on ``nn.ReLU`` models.

    >>> import jax, jax.numpy as jnp, xai_core as xc
    >>> f = lambda x: jnp.sum(jax.nn.relu(x))
    >>> xc.deconvnet(f)(jnp.array([1.0, -1.0]))  # the forward mask is ignored
    Array([1., 1.], dtype=float32)
    """
    rules = _relu_rule(_deconv)
    return modified_gradient(score_fn, {"custom_jvp_call": rules, "max": rules}, "deconvnet", NEEDS)
