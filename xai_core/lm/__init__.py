"""Generative language models: which prompt tokens caused each generated token. Imports the
registry (methods by name), the adapters' text model and the pictures; ``xai_core`` imports it
as ``xc.lm``.

- :func:`attribute`: ``token_attr`` (output x prompt), ``seq_attr`` and the output scores, by a
  gradient method on the embeddings or a perturbation method over tokens, words or spans,
  for one prompt or a padded batch (:mod:`xai_core.lm.attribute`).
- :func:`generate`: greedy decoding in JAX; the teacher-forced scores
  (:mod:`xai_core.lm.sequences`).
- :mod:`xai_core.lm.retrieval`: a task whose evidence is known, and a small decoder trained on it.
- :class:`LMAttributionResult`: the result, with ``to_html``, ``save`` and ``to_json``.
"""

from xai_core.lm.attribute import attribute
from xai_core.lm.result import LMAttributionResult
from xai_core.lm.sequences import SCORES, generate

__all__ = ["LMAttributionResult", "SCORES", "attribute", "generate"]
