"""Framework adapters: a model from PyTorch, Keras or Flax -> :class:`Model`. They import the graph
tools and the core (never a method); the metrics, the demo and the applications import them.

Every adapter returns the same framework-free :class:`Model`: a pure JAX function of
ONE example that returns logits (the model cut before its final softmax /
log_softmax / sigmoid), with ``m.logits(x)``, ``m.score(target)`` and ``m.params``.

Importing this package imports no framework; each ``from_*`` loads its framework on
first use, and a missing one raises an ``ImportError`` that names the ``pip install``.

Example:
    >>> from xai_core.adapters import Model, from_flax  # flax is not imported yet
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._base import OUTPUTS, Model, ProbabilityOutputWarning
from ._text import TextModel

if TYPE_CHECKING:  # pragma: no cover
    from .flax import from_flax
    from .keras import from_keras
    from .torch import from_torch

__all__ = ["Model", "OUTPUTS", "ProbabilityOutputWarning", "TextModel", "from_flax", "from_keras", "from_torch"]

# Adapter functions, loaded lazily: name -> submodule of this package.
_LAZY = {"from_flax": ".flax", "from_keras": ".keras", "from_torch": ".torch"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
