"""Numbers that judge attribution maps (DESIGN lesson 4: pictures persuade, numbers decide), and
:func:`~xai_core.metrics.evaluation.evaluate` with its report. The metrics import the core and the
graph tools (evaluate also the registry and the methods); the public face and applications import them.

Every metric is a pure JAX function of ONE example, so it runs under ``jax.jit`` and batches
with ``jax.vmap`` (a traced target goes in the score function: ``m.score(t)``); the ones that
evaluate the model many times do it in one compiled program, ``batch_size`` evaluations at a
time. Each docstring gives the paper, the formula and whether higher or lower is better.

- faithfulness: :func:`deletion`, :func:`insertion` (and their curves), :func:`pixel_flipping`,
  :func:`region_perturbation` with :func:`aopc`, :func:`irof`, :func:`road`,
  :func:`faithfulness_correlation`, :func:`mufidelity`, :func:`infidelity`;
- robustness: :func:`sensitivity_max`, :func:`avg_sensitivity`, :func:`local_lipschitz`;
- localization (masks): :func:`localization`, :func:`relevance_mass`, :func:`pointing_game`,
  :func:`relevance_rank`, :func:`top_k_intersection`, :func:`mask_auc`, :func:`uniform_share`;
- complexity: :func:`sparseness`, :func:`complexity`, :func:`effective_complexity`;
- randomization: :func:`model_randomization`, :func:`random_logit`, with the similarities of
  :mod:`xai_core.metrics.similarity`.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from xai_core.metrics import localization, uniform_share
    >>> mask = jnp.zeros((4, 4), bool).at[:2, :2].set(True)
    >>> float(localization(jnp.ones((4, 4, 3)), mask)), float(uniform_share(mask))
    (0.25, 0.25)
"""

from xai_core.metrics import similarity
from xai_core.metrics._common import auc, grid_segments, pearson, rankdata, spearman
from xai_core.metrics.complexity import complexity, effective_complexity, sparseness
from xai_core.metrics.faithfulness import (
    aopc, curve, deletion, deletion_curve, insertion, insertion_curve, irof, pixel_flipping, region_perturbation,
)
from xai_core.metrics.fidelity import faithfulness_correlation, infidelity, mufidelity, removal_correlation
from xai_core.metrics.localization import (
    localization, mask_auc, pointing_game, relevance_mass, relevance_rank, top_k_intersection, uniform_share,
)
from xai_core.metrics.randomization import model_randomization, param_layers, random_logit, randomize
from xai_core.metrics.road import impute, road
from xai_core.metrics.robustness import avg_sensitivity, local_lipschitz, sensitivity_max

__all__ = [
    "aopc", "auc", "avg_sensitivity", "complexity", "curve", "deletion", "deletion_curve", "effective_complexity",
    "faithfulness_correlation", "grid_segments", "impute", "infidelity", "insertion", "insertion_curve", "irof",
    "local_lipschitz", "localization", "mask_auc", "model_randomization", "mufidelity", "param_layers", "pearson",
    "pixel_flipping", "pointing_game", "random_logit", "randomize", "rankdata", "region_perturbation",
    "relevance_mass", "relevance_rank", "removal_correlation", "road", "sensitivity_max", "similarity", "sparseness",
    "spearman", "top_k_intersection", "uniform_share",
]
