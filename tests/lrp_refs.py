"""Reference LRP maps from Zennit 0.5.1 and Captum, for cross-checks (helpers only, no tests).

Conventions (details and formulas in ``LRP_CONVENTIONS.md``):

* Every helper starts the backward pass from ``R_out = onehot(target) * logit`` (Captum's
  convention; Zennit is given that as ``attr_output``), so a conservative rule gives
  ``sum(R_in) == logit[target]``. Pass ``output="onehot"`` to the Zennit helpers to start
  from the bare one-hot instead (Zennit's own default when ``attr_output`` is a one-hot).
* The returned array is the input relevance, float64 numpy, same shape as ``x`` (batch kept).
* ``model`` must be in eval mode and share ``x``'s dtype; it is restored afterwards
  (Zennit canonizers and Captum rules are undone).

Zennit needs ``torchvision.models.resnet`` at import time; ``import_zennit`` puts a stub
there only for the duration of ``import zennit`` and removes it afterwards, so that other
code (``find_spec("torchvision")``, ``importorskip``) does not see a fake torchvision.
"""

from __future__ import annotations

import copy
import types
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from reference_imports import import_with_stub, require

__all__ = [
    "Logits",
    "block_canonizer",
    "exact_merge_batchnorm",
    "captum_lrp",
    "import_zennit",
    "require_zennit",
    "zennit_composite",
    "zennit_rule",
]

_TV_NAMES = ("torchvision", "torchvision.models", "torchvision.models.resnet")


# ---------------------------------------------------------------------------------------
# zennit import


def _torchvision_stub() -> dict[str, types.ModuleType]:
    tv = types.ModuleType("torchvision")
    models = types.ModuleType("torchvision.models")
    resnet = types.ModuleType("torchvision.models.resnet")

    class BasicBlock(nn.Module):  # stand-ins: only used by zennit's isinstance checks
        """Stub of torchvision's BasicBlock (attributes conv1, bn1, relu, conv2, bn2, downsample)."""

    class Bottleneck(nn.Module):
        """Stub of torchvision's Bottleneck (adds conv3, bn3)."""

    for cls in (BasicBlock, Bottleneck):
        cls.__module__ = "torchvision.models.resnet"
    resnet.BasicBlock, resnet.Bottleneck = BasicBlock, Bottleneck
    tv.models, models.resnet = models, resnet
    return dict(zip(_TV_NAMES, (tv, models, resnet)))


def import_zennit() -> types.ModuleType:
    """The ``zennit`` package (with its submodules imported). Idempotent.

    Raises ImportError when zennit is not installed. A real torchvision already in
    ``sys.modules`` is used as is; otherwise a stub is installed for the import only.
    """
    return import_with_stub("zennit", ("attribution", "canonizers", "composites", "core", "layer", "rules", "types",
                                       "torchvision"), _torchvision_stub, "pip install --no-deps zennit==0.5.1")


def require_zennit() -> types.ModuleType:
    """``import_zennit()``, or ``pytest.skip`` when zennit is missing (an error in CI)."""
    return require(import_zennit)


# ---------------------------------------------------------------------------------------
# shared plumbing


class Logits(nn.Module):
    """Wrap ``net`` so that ``forward`` is ``net.logits`` when it has one (the repo's torch
    models do: their forward ends in a softmax), else ``net`` itself. Zennit / Captum /
    grad-cam hooks see ``net``'s submodules through this wrapper; every cross-check uses it."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.logits(x) if hasattr(self.net, "logits") else self.net(x)


def _targets(target: int | Sequence[int] | torch.Tensor, n: int) -> torch.Tensor:
    t = torch.as_tensor(target, dtype=torch.long).reshape(-1)
    if t.numel() == 1:
        t = t.expand(n)
    if t.numel() != n:
        raise ValueError(f"{t.numel()} targets for a batch of {n}")
    return t


def _onehot_fn(t: torch.Tensor, output: str):
    if output not in ("logit", "onehot"):
        raise ValueError(f"output must be 'logit' or 'onehot', not {output!r}")

    def attr_output(out: torch.Tensor) -> torch.Tensor:
        onehot = torch.zeros_like(out)
        onehot[torch.arange(out.shape[0]), t] = 1.0
        return (onehot * out).detach() if output == "logit" else onehot

    return attr_output


def _as_box(value: Any, x: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(np.asarray(value), dtype=x.dtype)


def _zennit_attribute(model: nn.Module, x: torch.Tensor, target, composite, output: str) -> np.ndarray:
    zennit = import_zennit()
    t = _targets(target, x.shape[0])
    inp = x.detach().clone().requires_grad_(True)
    with zennit.attribution.Gradient(model=model, composite=composite) as attributor:
        _, relevance = attributor(inp, _onehot_fn(t, output))
    return relevance.detach().cpu().numpy().astype(np.float64)


def _default_canonizers(canonizers):
    zennit = import_zennit()
    return [zennit.canonizers.SequentialMergeBatchNorm()] if canonizers is None else list(canonizers)


def exact_merge_batchnorm():
    """``SequentialMergeBatchNorm`` whose emptied BatchNorm is an exact identity.

    Zennit 0.5.1 leaves a merged BatchNorm at mean 0, var 1, so it still computes
    ``x / sqrt(1 + eps)`` (a 5e-6 relative change per merged BatchNorm with eps=1e-5, seen in
    the logits and hence in R_out); this one sets var to ``1 - eps``. Otherwise identical."""
    zennit = import_zennit()

    class ExactSequentialMergeBatchNorm(zennit.canonizers.SequentialMergeBatchNorm):
        @staticmethod
        def merge_batch_norm(modules, batch_norm):
            zennit.canonizers.MergeBatchNorm.merge_batch_norm(modules, batch_norm)
            batch_norm.running_var.data = torch.full_like(batch_norm.running_var.data, 1.0 - batch_norm.eps)

    return ExactSequentialMergeBatchNorm()


def block_canonizer(*block_types: type):
    """A zennit canonizer that rewrites ``out + identity`` in residual blocks of the given
    classes into zennit's ``Sum`` module (relevance split in proportion, ``Norm`` rule),
    using zennit's BasicBlock forward. The block needs torchvision's attribute names
    ``conv1, bn1, relu, conv2, bn2, downsample`` (as ``tests/torch_models.BasicBlock`` and
    ``benchmarks/models.BasicBlock``). Use with ``SequentialMergeBatchNorm()`` first:
    ``canonizers=[SequentialMergeBatchNorm(), block_canonizer(BasicBlock)]``."""
    zennit = import_zennit()
    fwd = zennit.torchvision.ResNetBasicBlockCanonizer.forward

    def attribute_map(name, module):
        if isinstance(module, block_types):
            return {"forward": fwd.__get__(module), "canonizer_sum": zennit.layer.Sum()}
        return None

    return zennit.canonizers.AttributeCanonizer(attribute_map)


# ---------------------------------------------------------------------------------------
# zennit composites


def zennit_composite(
    model: nn.Module,
    x: torch.Tensor,
    target: int | Sequence[int],
    name: str,
    *,
    canonizers: Sequence[Any] | None = None,
    output: str = "logit",
    **kwargs: Any,
) -> np.ndarray:
    """Input relevance of Zennit's composite ``name``.

    name: ``epsilon_plus_flat`` | ``epsilon_gamma_box`` (needs ``low``, ``high``: float,
    array or tensor broadcastable to ``x``) | ``epsilon_alpha2_beta1`` (also ``epsilon_plus``,
    ``epsilon_alpha2_beta1_flat``). kwargs go to the composite: ``epsilon`` (1e-6),
    ``stabilizer`` (1e-6), ``gamma`` (0.25), ``zero_params``, ``layer_map``, ``first_map``.
    canonizers default ``[SequentialMergeBatchNorm()]``; pass ``[]`` for none.
    """
    zennit = import_zennit()
    comps = zennit.composites
    classes = {
        "epsilon_plus_flat": comps.EpsilonPlusFlat,
        "epsilon_gamma_box": comps.EpsilonGammaBox,
        "epsilon_alpha2_beta1": comps.EpsilonAlpha2Beta1,
        "epsilon_plus": comps.EpsilonPlus,
        "epsilon_alpha2_beta1_flat": comps.EpsilonAlpha2Beta1Flat,
    }
    if name not in classes:
        raise ValueError(f"unknown composite {name!r}; one of {sorted(classes)}")
    if name == "epsilon_gamma_box":
        if "low" not in kwargs or "high" not in kwargs:
            raise TypeError("epsilon_gamma_box needs low= and high=")
        kwargs["low"], kwargs["high"] = _as_box(kwargs["low"], x), _as_box(kwargs["high"], x)
    composite = classes[name](canonizers=_default_canonizers(canonizers), **kwargs)
    return _zennit_attribute(model, x, target, composite, output)


# ---------------------------------------------------------------------------------------
# one zennit rule everywhere


def _zennit_rule_hook(rule: str, params: dict[str, Any], x: torch.Tensor):
    r = import_zennit().rules
    p = dict(params)
    if rule == "epsilon":
        return r.Epsilon(**p)
    if rule == "gamma":
        return r.Gamma(**p)
    if rule in ("zplus", "alpha1_beta0"):
        return r.ZPlus(**p)
    if rule in ("alpha_beta", "alpha2_beta1"):
        p.setdefault("alpha", 2.0)
        p.setdefault("beta", 1.0)
        return r.AlphaBeta(**p)
    if rule == "zbox":
        return r.ZBox(low=_as_box(p.pop("low"), x), high=_as_box(p.pop("high"), x), **p)
    if rule == "flat":
        return r.Flat(**p)
    if rule == "wsquare":
        return r.WSquare(**p)
    raise ValueError(f"unknown zennit rule {rule!r}")


def zennit_rule(
    model: nn.Module,
    x: torch.Tensor,
    target: int | Sequence[int],
    rule: str,
    *,
    canonizers: Sequence[Any] | None = None,
    activations: str = "pass",
    norm_stabilizer: float | None = None,
    output: str = "logit",
    **params: Any,
) -> np.ndarray:
    """Input relevance with one Zennit rule on every Linear/Conv layer (``zennit.types.Linear``:
    nn.Linear, Conv1-3d, ConvTranspose1-3d).

    rule: ``epsilon`` (epsilon=1e-6, zero_params) | ``gamma`` (gamma=0.25, stabilizer=1e-6) |
    ``zplus`` | ``alpha_beta`` (alpha=2, beta=1) | ``zbox`` (low, high required) | ``flat`` |
    ``wsquare``; every rule but epsilon takes ``stabilizer`` (1e-6) and ``zero_params``.

    Other layers follow the built-in composites (``layer_map_base``): activations ``Pass``
    (relevance passed through unchanged), AvgPool/AdaptiveAvgPool and ``zennit.layer.Sum``
    ``Norm`` (stabilizer ``norm_stabilizer``, default: the rule's ``stabilizer`` or 1e-6),
    BatchNorm ``Pass``; MaxPool, Flatten, functional ops: plain
    gradient. ``activations="gradient"`` drops only the activations' Pass hooks (as a bare
    ``LayerMapComposite([(Linear, rule)])`` would): the ReLU mask then zeroes relevance at
    negative pre-activations. Same result under Epsilon/ZPlus/Gamma/AlphaBeta above a ReLU (they give
    R = 0 where a = 0); loses relevance under Flat/WSquare/ZBox, which give R != 0 there.
    BatchNorm is merged into the preceding Linear/Conv by ``SequentialMergeBatchNorm``.
    """
    zennit = import_zennit()
    hook = _zennit_rule_hook(rule, params, x)
    if activations not in ("pass", "gradient"):
        raise ValueError("activations must be 'pass' or 'gradient'")
    if norm_stabilizer is None:
        norm_stabilizer = params.get("stabilizer", 1e-6)
    base = zennit.composites.layer_map_base(norm_stabilizer)
    if activations == "gradient":
        base = [(types_, h) for types_, h in base if types_ is not zennit.types.Activation]
    layer_map = base + [(zennit.types.Linear, hook)]
    composite = zennit.composites.LayerMapComposite(layer_map=layer_map, canonizers=_default_canonizers(canonizers))
    return _zennit_attribute(model, x, target, composite, output)


# ---------------------------------------------------------------------------------------
# captum


def _captum_rule(rule: str, params: dict[str, Any]):
    from captum.attr._utils import lrp_rules as cr

    if rule == "epsilon":
        return cr.EpsilonRule(**params)
    if rule == "gamma":
        return cr.GammaRule(**params)
    if rule in ("alpha1_beta0", "zplus"):
        return cr.Alpha1_Beta0_Rule(**params)
    if rule == "identity":
        return cr.IdentityRule(**params)
    raise ValueError(f"unknown captum rule {rule!r}")


def _fold_batchnorm(model: nn.Module) -> None:
    """Fold each BatchNorm that directly follows a Linear/Conv leaf (zennit's leaf order) into it;
    the BatchNorm becomes an exact identity (mean 0, var 1 - eps, weight 1, bias 0)."""
    leaves = [m for m in model.modules() if not list(m.children())]
    for prev, bn in zip(leaves, leaves[1:]):
        if isinstance(bn, nn.modules.batchnorm._BatchNorm) and isinstance(prev, (nn.Linear, nn.Conv2d)):
            with torch.no_grad():
                scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                bias = prev.bias if prev.bias is not None else torch.zeros_like(bn.running_mean)
                shape = (-1,) + (1,) * (prev.weight.ndim - 1)
                prev.weight.mul_(scale.reshape(shape))
                prev.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias)
                bn.running_mean.zero_()
                bn.running_var.fill_(1.0 - bn.eps)
                bn.weight.fill_(1.0)
                bn.bias.zero_()
            bn._lrp_merged = True


def captum_lrp(
    model: nn.Module,
    x: torch.Tensor,
    target: int | Sequence[int],
    rule: str = "epsilon",
    *,
    merge_batchnorm: bool = False,
    flatten_rule: str | None = "epsilon",
    **params: Any,
) -> np.ndarray:
    """Captum ``LRP(model).attribute(x, target)`` with ``rule`` on every nn.Linear/nn.Conv2d.

    rule: ``epsilon`` (epsilon=1e-9) | ``gamma`` (gamma=0.25, set_bias_to_zero=False) |
    ``alpha1_beta0`` (alias ``zplus``; set_bias_to_zero=False) | ``identity``. Other layers get
    Captum's defaults (EpsilonRule(1e-9) on MaxPool1-3d, AvgPool2d, AdaptiveAvgPool2d,
    BatchNorm2d; ReLU/Tanh/Dropout pass relevance through). Captum raises TypeError on any
    other leaf module type; ``flatten_rule`` sets a rule on nn.Flatten (EpsilonRule(1e-9):
    ``R * a / (a + 1e-9 sign a)``, i.e. identity up to 1e-9/|a|); ``None`` leaves it to raise.
    ``merge_batchnorm=True`` folds each BatchNorm following a Linear/Conv2d into it (on a copy)
    and gives the BatchNorm IdentityRule, to match Zennit's SequentialMergeBatchNorm.
    Captum returns normalised relevance times the target logit, so sum == logit when conserved.
    """
    from captum.attr import LRP
    from captum.attr._utils import lrp_rules as cr

    if merge_batchnorm:
        model = copy.deepcopy(model)
        _fold_batchnorm(model)
    t = _targets(target, x.shape[0])
    leaves = [m for m in model.modules() if not list(m.children())]
    had_rule = {id(m) for m in leaves if hasattr(m, "rule")}
    for m in leaves:
        if id(m) in had_rule:
            continue
        if type(m) in (nn.Linear, nn.Conv2d):
            m.rule = _captum_rule(rule, params)
        elif isinstance(m, nn.Flatten) and flatten_rule is not None:
            m.rule = _captum_rule(flatten_rule, {})
        elif getattr(m, "_lrp_merged", False):
            m.rule = cr.IdentityRule()
    inp = x.detach().clone().requires_grad_(True)
    try:
        relevance = LRP(model).attribute(inp, target=t.tolist())
    finally:
        # Captum deletes every leaf's .rule after a run, but not when it raises (it leaves
        # ``rule = None`` on ReLUs, which breaks the next run): remove what is new.
        for m in leaves:
            if id(m) not in had_rule and hasattr(m, "rule"):
                del m.rule
    return relevance.detach().cpu().numpy().astype(np.float64)
