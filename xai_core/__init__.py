"""xai-core: attribution methods as pure JAX transforms of a score function.

>>> import jax.numpy as jnp, xai_core as xc
>>> f = lambda x: jnp.sum(jnp.tanh(x))
>>> xc.attribute(f, jnp.ones(3), method="ig").shape
(3,)

Importing this package loads only jax, numpy and pillow; framework adapters live in
``xai_core.adapters`` and import their framework lazily.
"""

from pathlib import Path as _Path

# In a source checkout the adapters sit beside this folder (`adapters/`, which an installed
# wheel ships inside it as `xai_core.adapters`, pyproject's package-dir); so that the checkout
# imports them too (`python -m xai_core.demo` from the repository root), look there as well.
_checkout = _Path(__file__).resolve().parent.parent
if not (_Path(__file__).parent / "adapters").is_dir() and (_checkout / "adapters" / "__init__.py").is_file():
    __path__.append(str(_checkout))  # noqa: F821 - every package has __path__
del _Path, _checkout

from xai_core._xla import apply_cpu_defaults  # noqa: E402

XLA_DEFAULTS = apply_cpu_defaults()
"""What ``import xai_core`` did to ``XLA_FLAGS`` (see :mod:`xai_core._xla`): ``"set"``,
``"user"``, ``"opted out"``, ``"unknown jaxlib"`` or ``"too late"``."""

from xai_core._chunking import DEFAULT_BATCH_SIZE  # noqa: E402
from xai_core.gradients import (
    RULES,
    completeness_gap,
    gradient,
    gradient_x_input,
    integrated_gradients,
    path_rule,
)
from xai_core import cam, featureviz, layer, metrics
from xai_core.evaluation import evaluate
from xai_core.inputs import fixed
from xai_core.perturbation import occlusion
from xai_core.registry import attribute, methods, register
from xai_core.rules import deconvnet, deeplift, guided_backprop, lrp
from xai_core.shap import deeplift_shap, gradient_shap
from xai_core.smoothing import smoothgrad
from xai_core.tokens import token_scores

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "RULES",
    "attribute",
    "cam",
    "completeness_gap",
    "deconvnet",
    "evaluate",
    "deeplift",
    "deeplift_shap",
    "featureviz",
    "fixed",
    "gradient",
    "gradient_shap",
    "gradient_x_input",
    "guided_backprop",
    "integrated_gradients",
    "layer",
    "lrp",
    "methods",
    "metrics",
    "occlusion",
    "path_rule",
    "register",
    "smoothgrad",
    "token_scores",
]
