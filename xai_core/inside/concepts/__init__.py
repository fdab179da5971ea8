"""Concept-based explanations (``xc.concepts``): TCAV, Testing with Concept Activation Vectors.
It imports the core and the shapes data; the public face imports it.

Kim et al., "Interpretability Beyond Feature Attribution: Quantitative Testing with Concept
Activation Vectors (TCAV)", ICML 2018; computed as Captum's ``captum.concept.TCAV``. A concept is
a name and a batch of examples; at each named layer (``m.layers``) a linear classifier separates
the concept's activations from each random set's, its normal ``v`` is the concept activation
vector (CAV), and for an input ``x`` the directional derivative ``dS_target/dA(x) . v`` says
whether moving the layer towards the concept raises the class score.

- :func:`tcav`: ``fn(inputs, target) -> TCAVResult`` (scores ``sign_count`` and ``magnitude``
  per concept and random set, p-values against random-vs-random CAVs);
- :func:`train_cavs` and :class:`CAVs`: the CAVs alone (every layer and pair in one program);
- :func:`directional_derivatives`: the pure core for ONE example (jit, vmap);
- :func:`ttest_ind`: Student's t-test (scipy's default) in numpy;
- :func:`shapes_concepts`: "striped" and "round" concept sets and random sets for the shapes data.

Example:
    >>> import jax, jax.numpy as jnp, numpy as np, xai_core as xc
    >>> from xai_core.adapters import Model
    >>> from xai_core.graph import mark
    >>> m = Model(lambda w, x: mark(jnp.tanh(x), "h") @ w, jnp.eye(3)[:, :2])
    >>> rng = np.random.default_rng(0)
    >>> concepts = {"up": rng.normal(size=(8, 3)) + [3.0, 0, 0], "down": rng.normal(size=(8, 3)) - [3.0, 0, 0]}
    >>> randoms = [rng.normal(size=(8, 3)) for _ in range(5)]
    >>> fn = xc.concepts.tcav(m, ["h"], concepts, randoms, key=jax.random.key(0))  # trains the CAVs
    >>> result = fn(jnp.zeros((4, 3)), target=0)  # class 0 reads unit 0 of "h"
    >>> [(r["concept"], r["sign_count"]) for r in result.to_rows()]
    [('up', 1.0), ('down', 0.0)]
"""

from xai_core.inside.concepts.cavs import CAVs, pairs
from xai_core.inside.concepts.result import SCORES, TCAVResult
from xai_core.inside.concepts.shapes import discs, shapes_concepts, stripes
from xai_core.inside.concepts.stats import ttest_ind
from xai_core.inside.concepts.tcav import TCAV, directional_derivatives, tcav, train_cavs

__all__ = ["CAVs", "SCORES", "TCAV", "TCAVResult", "directional_derivatives", "discs", "pairs", "shapes_concepts",
           "stripes", "tcav", "train_cavs", "ttest_ind"]
