"""xai-core: attribution methods as pure JAX transforms of a score function.

>>> import jax.numpy as jnp, xai_core as xc
>>> f = lambda x: jnp.sum(jnp.tanh(x))
>>> xc.attribute(f, jnp.ones(3), method="ig").shape
(3,)

Importing this package loads only jax, numpy and pillow; framework adapters live in
``xai_core.adapters`` and import their framework lazily.

This module is the public face; the house behind it, by purpose (each part imports only the
parts below it, ``tests/test_house.py``): ``graph`` and ``viz`` (jaxpr tools, pictures) under
``core`` (inputs, checks, chunking, XLA defaults) under ``rules`` and ``adapters`` under
``attribution`` (gradients and paths, smoothing, occlusion, expectations, the model-agnostic
methods) under ``inside`` (CAMs, layer methods, feature visualization) under ``registry`` under
``metrics`` (and evaluate), ``robust`` (attacks) and ``influence`` (TracIn) under this face; the
applications ``demo``, ``callbacks``, ``batch`` and ``cli`` sit on top of it.
"""

from pathlib import Path as _Path

# In a source checkout the adapters sit beside this folder (`adapters/`, which an installed
# wheel ships inside it as `xai_core.adapters`, pyproject's package-dir); so that the checkout
# imports them too (`python -m xai_core.demo` from the repository root), look there as well.
_checkout = _Path(__file__).resolve().parent.parent
if not (_Path(__file__).parent / "adapters").is_dir() and (_checkout / "adapters" / "__init__.py").is_file():
    __path__.append(str(_checkout))  # noqa: F821 - every package has __path__
del _Path, _checkout

from xai_core.core.xla import apply_cpu_defaults  # noqa: E402

XLA_DEFAULTS = apply_cpu_defaults()
"""What ``import xai_core`` did to ``XLA_FLAGS`` (see :mod:`xai_core.core.xla`): ``"set"``,
``"user"``, ``"opted out"``, ``"unknown jaxlib"`` or ``"too late"``."""

from xai_core.core.chunking import DEFAULT_BATCH_SIZE  # noqa: E402
from xai_core.core.inputs import fixed  # noqa: E402
from xai_core.attribution.expectations import deeplift_shap, gradient_shap  # noqa: E402
from xai_core.attribution.gradients import (  # noqa: E402
    RULES,
    completeness_gap,
    gradient,
    gradient_x_input,
    integrated_gradients,
    path_rule,
)
from xai_core.attribution.occlusion import occlusion  # noqa: E402
from xai_core.attribution.owen import owen  # noqa: E402
from xai_core.attribution.paths import blur_ig, guided_ig  # noqa: E402
from xai_core.attribution.rise import rise  # noqa: E402
from xai_core.attribution.shapley import feature_ablation, shapley, shapley_sampling  # noqa: E402
from xai_core.attribution.surrogates import kernel_shap, lime  # noqa: E402
from xai_core.attribution import segments  # noqa: E402
from xai_core.attribution.smoothing import smoothgrad  # noqa: E402
from xai_core.attribution.tokens import token_scores  # noqa: E402
from xai_core.attribution.xrai import xrai, xrai_regions  # noqa: E402
from xai_core.rules import deconvnet, deeplift, guided_backprop, lrp  # noqa: E402
from xai_core.inside import cam, concepts, featureviz, layer  # noqa: E402
from xai_core.registry import attribute, methods, register  # noqa: E402
from xai_core import influence, lm, metrics, robust, viz  # noqa: E402
from xai_core.metrics.evaluation import evaluate  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "RULES",
    "attribute",
    "blur_ig",
    "cam",
    "completeness_gap",
    "concepts",
    "deconvnet",
    "evaluate",
    "deeplift",
    "deeplift_shap",
    "feature_ablation",
    "featureviz",
    "fixed",
    "gradient",
    "gradient_shap",
    "gradient_x_input",
    "guided_backprop",
    "guided_ig",
    "influence",
    "integrated_gradients",
    "kernel_shap",
    "layer",
    "lime",
    "lm",
    "lrp",
    "methods",
    "metrics",
    "occlusion",
    "owen",
    "path_rule",
    "register",
    "rise",
    "robust",
    "segments",
    "shapley",
    "shapley_sampling",
    "smoothgrad",
    "token_scores",
    "viz",
    "xrai",
    "xrai_regions",
]
