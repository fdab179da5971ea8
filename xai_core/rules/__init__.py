"""Rule-based attribution: the score function's program re-run with per-primitive backward rules.
It imports the core and the graph tools; the attribution methods and everything above import it.

Every peer implements these methods by hooking framework modules, so an ``F.relu`` or an
inline op escapes the rule (DESIGN lesson 2). Here the rules attach to operations of the
traced program (the jaxpr), however the model was written: :mod:`xai_core.rules.engine`
re-evaluates the program with the one interpreter of :mod:`xai_core.graph`, and each rule
family replaces the backward pass of the operations it cares about.

Methods: :func:`guided_backprop` and :func:`deconvnet` (:mod:`xai_core.rules.relu`),
:func:`deeplift` (:mod:`xai_core.rules.deeplift`; :func:`xai_core.deeplift_shap` builds on it),
:func:`lrp` with its rules and composites (:mod:`xai_core.rules.lrp`).

Example:
    >>> import jax, jax.numpy as jnp, xai_core as xc
    >>> w = jnp.array([[1.0, -1.0], [-2.0, 1.0]])
    >>> f = lambda x: jnp.sum(jax.nn.relu(x @ w) * jnp.array([1.0, -1.0]))
    >>> xc.guided_backprop(f)(jnp.array([1.0, 0.2]))   # the negative upstream gradient is dropped
    Array([ 1., -2.], dtype=float32)
"""

from xai_core.rules.composites import (
    COMPOSITES,
    Composite,
    epsilon_alpha2_beta1,
    epsilon_gamma_box,
    epsilon_plus_flat,
)
from xai_core.rules.deeplift import deeplift
from xai_core.rules.engine import NoRuleError, modified_gradient
from xai_core.rules.lrp import lrp
from xai_core.rules.lrp_rules import Rule, alpha_beta, epsilon, flat, gamma, wsquare, zbox, zero, zplus
from xai_core.rules.relu import deconvnet, guided_backprop

__all__ = [
    "COMPOSITES", "Composite", "NoRuleError", "Rule", "alpha_beta", "deconvnet", "deeplift", "epsilon",
    "epsilon_alpha2_beta1", "epsilon_gamma_box", "epsilon_plus_flat", "flat", "gamma", "lrp", "wsquare",
    "zbox", "zero", "zplus", "guided_backprop", "modified_gradient"]
