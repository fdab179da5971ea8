"""Adversarial robustness (``xc.robust``): gradient attacks, the smallest perturbation that changes a
prediction, and a metric over perturbations, as Captum's ``captum.robust``. It imports the core and
the graph tools; the public face imports it.

Every function takes the model as a function of ONE example (its logits, ``m.logits``; or a score
or a loss, ``loss=``) and returns a function: pure JAX, so it runs under ``jax.jit`` and batches
with ``jax.vmap`` over examples, traced targets and keys. A *perturbation* is
``p(x, target, key) -> x'`` (the attacks return one; a noise or a transform is one written by hand).

- :func:`fgsm`, :func:`pgd` (L-infinity and L2 balls, random start, targeted or not, input
  bounds, masks), :func:`random_point` (PGD's random start);
- :func:`min_perturbation`: the smallest strength of a perturbation that changes the prediction,
  by a linear scan or Captum's bisection (``MinParamPerturbation``);
- :func:`compare_attacks` and :func:`summary`: a metric on the input and over each perturbation's
  draws, mean / min / max (``AttackComparator``).

Example:
    >>> import jax, jax.numpy as jnp, xai_core as xc
    >>> logits = lambda x: jnp.stack([0.0, x @ jnp.array([1.0, -2.0])])
    >>> xs, ts = jnp.array([[1.0, 0.2], [0.5, 0.4]]), jnp.array([1, 0])
    >>> attack = xc.robust.pgd(logits, radius=0.3, step_size=0.1, steps=5, bounds=(0.0, 1.0))
    >>> x_adv = jax.jit(jax.vmap(attack))(xs, ts)
    >>> jax.vmap(lambda x: jnp.argmax(logits(x)))(x_adv).tolist()  # both predictions changed
    [0, 1]
"""

from xai_core.robust._common import LOSSES, ZERO_GRADIENT, Perturbation
from xai_core.robust.attacks import NORMS, fgsm, pgd, random_point
from xai_core.robust.compare import ORIGINAL, accuracy, compare_attacks, summary
from xai_core.robust.search import MODES, MinPerturbation, bisection_plan, min_perturbation, strength_grid

__all__ = ["LOSSES", "MODES", "NORMS", "ORIGINAL", "ZERO_GRADIENT", "MinPerturbation", "Perturbation", "accuracy",
           "bisection_plan", "compare_attacks", "fgsm", "min_perturbation", "pgd", "random_point", "strength_grid",
           "summary"]
