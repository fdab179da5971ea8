"""Composites: which LRP rule each affine operation of a program gets.

As in Zennit (``zennit/composites.py``), a composite assigns rules by operation type and
position, but on the traced program's operations rather than on framework classes, so one
composite gives the same map on a torch, Keras and Flax model:

- ``dense``: a ``dot_general`` with a weight; ``conv``: a ``conv_general_dilated``;
- ``first``: the first of the kinds in ``first_of`` in program order (Zennit: the first
  matching module in registration order, the same for sequential models);
- ``other``: operations without a weight (sums, average pools, entrywise scales, products
  with an attention weight) and residual adds, Zennit's ``Norm`` (epsilon = ``stabilizer``);
- ``layers``: ``(pattern, rule)`` pairs matched (``fnmatch``) against the layer mark that
  follows the operation (a torch module name, a Keras layer name, a Flax path); the first
  match wins over every type rule.

Zennit's three composites with their defaults: :func:`epsilon_plus_flat`,
:func:`epsilon_gamma_box` and :func:`epsilon_alpha2_beta1`.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from xai_core.core.checks import check_choice
from xai_core.rules.lrp_rules import RULES, Rule, alpha_beta, epsilon, flat, gamma, zbox, zplus


@dataclass(frozen=True)
class Composite:
    """Rules by operation kind (``dense``, ``conv``, ``other``), for the first weighted
    operation (``first``, of a kind in ``first_of``) and by layer-mark pattern (``layers``)."""

    dense: Rule
    conv: Rule
    first: Rule | None = None
    first_of: tuple[str, ...] = ("dense", "conv")
    other: Rule = epsilon(1e-6)
    layers: tuple[tuple[str, Rule], ...] = ()

    def rule_for(self, kind: str, first: bool, layer: str | None) -> Rule:
        """The rule of an operation of ``kind`` (``dense``, ``conv`` or ``other``)."""
        for pattern, rule in self.layers:
            if layer is not None and fnmatch.fnmatchcase(layer, pattern):
                return rule
        if first and self.first is not None and kind in self.first_of:
            return self.first
        return {"dense": self.dense, "conv": self.conv}.get(kind, self.other)

    def with_layers(self, layers: Mapping[str, Rule]) -> Composite:
        """This composite with ``layers`` (pattern -> rule) taking precedence."""
        for pattern, rule in layers.items():
            if not isinstance(rule, Rule):
                raise TypeError(f"lrp: layers[{pattern!r}] must be a rule (e.g. xc.rules.epsilon(0.25)), "
                                f"got {type(rule).__name__}.")
        return Composite(self.dense, self.conv, self.first, self.first_of, self.other,
                         tuple(layers.items()) + self.layers)


def uniform(rule: Rule, stabilizer: float = 1e-6) -> Composite:
    """``rule`` for every dense and convolution; for the rest ``rule`` too if it is epsilon or
    LRP-0 (so ``"zero"`` is LRP-0 throughout), else ``epsilon(stabilizer)``."""
    return Composite(dense=rule, conv=rule, other=rule if rule.name in ("epsilon", "zero") else epsilon(stabilizer))


def epsilon_plus_flat(epsilon_: float = 1e-6, stabilizer: float = 1e-6) -> Composite:
    """Zennit's ``EpsilonPlusFlat``: first dense or conv flat, convolutions z+, dense epsilon."""
    return Composite(dense=epsilon(epsilon_), conv=zplus(stabilizer), first=flat(stabilizer), other=epsilon(stabilizer))


def epsilon_gamma_box(low: Any, high: Any, epsilon_: float = 1e-6, gamma_: float = 0.25,
                      stabilizer: float = 1e-6) -> Composite:
    """Zennit's ``EpsilonGammaBox``: first convolution z^B(low, high), convolutions gamma, dense epsilon."""
    return Composite(dense=epsilon(epsilon_), conv=gamma(gamma_, stabilizer), first=zbox(low, high, stabilizer),
                     first_of=("conv",), other=epsilon(stabilizer))


def epsilon_alpha2_beta1(epsilon_: float = 1e-6, stabilizer: float = 1e-6) -> Composite:
    """Zennit's ``EpsilonAlpha2Beta1``: convolutions alpha2-beta1, dense epsilon, no first-layer rule."""
    return Composite(dense=epsilon(epsilon_), conv=alpha_beta(2.0, 1.0, stabilizer), other=epsilon(stabilizer))


COMPOSITES = ("epsilon_plus_flat", "epsilon_gamma_box", "epsilon_alpha2_beta1")


def resolve(composite: Any, low: Any = None, high: Any = None) -> Composite:
    """A :class:`Composite` from a composite, a rule, or the name of either."""
    if isinstance(composite, Composite):
        return composite
    if isinstance(composite, Rule):
        return uniform(composite)
    builders: dict[str, Callable[[], Composite]] = {
        "epsilon_plus_flat": epsilon_plus_flat, "epsilon_alpha2_beta1": epsilon_alpha2_beta1,
        "epsilon_gamma_box": lambda: epsilon_gamma_box(low, high), "zbox": lambda: uniform(zbox(low, high)),
        **{name: (lambda make=make: uniform(make())) for name, make in RULES.items()},
    }
    check_choice(str(composite), tuple(builders), "composite", "lrp")
    if composite in ("epsilon_gamma_box", "zbox") and (low is None or high is None):
        raise ValueError(f"lrp: composite {composite!r} needs the input's bounds for the box rule: "
                         "lrp(..., low=0.0, high=1.0) (or your preprocessing's normalized bounds).")
    return builders[composite]()
