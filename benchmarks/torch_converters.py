"""torch -> JAX converters compared on a ResNet-18: torchax against our own lowering of torch.export.

    python -m benchmarks.torch_converters            # 224x224x3, IG with 64 steps
    python -m benchmarks.torch_converters --steps 16 --size 112

A. ``torchax.extract_jax`` (imported through ``xai_core.adapters._torchax``, the torch 2.13 shim).
B. ``torch.export`` + ``run_decompositions()`` (core ATen), interpreted node by node with the small
   table :data:`LOWERINGS`; an op outside it raises NotImplementedError naming the op and its layer.

Both get the same random weights (``torch.manual_seed(0)``, eval mode), one float32 image, jax
defaults, ``torch.set_num_threads(2)``. Measured: conversion time, first trace (``jax.make_jaxpr``)
time and jaxpr size, logits and input gradient of logit 0 against torch, and jitted IG (zero
baseline, all steps in one vmapped batch): compile time (lower + compile) and median of 3 calls
(wall and process CPU), A, B and torch autograd on the same batch interleaved in rotated order.
Writes the numbers to benchmarks/results/torch_converters-cpu2.json (``--out``; the committed file is
from a 2-core CPU shared with other work, load average 2.3-3.5). About 2.5 min on 2 CPU cores; torch's
2-thread timing degrades badly when other processes share those cores (OpenMP), so note the load.
"""

from __future__ import annotations

import argparse
import json
import operator
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.models import torch_resnet18

Fn = Callable[[Any, jax.Array], jax.Array]  # f(params, x_batch) -> logits
aten = torch.ops.aten


# --- models ------------------------------------------------------------------------------------

class FunctionalCNN(nn.Module):
    """Functional ops between layers: F.relu, a residual add, torch.flatten, torch.softmax."""

    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 16 * 16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.conv1(x))
        h = h + F.relu(self.conv2(h))
        return torch.softmax(self.fc(torch.flatten(h, 1)), dim=-1)


# --- candidate B: lowering of torch.export graphs (core ATen after run_decompositions) -----------

def _conv(x: jax.Array, w: jax.Array, b: jax.Array | None, stride: list[int], padding: list[int],
          dilation: list[int], transposed: bool, output_padding: list[int], groups: int) -> jax.Array:
    if transposed or x.ndim != 4:
        raise NotImplementedError("aten.convolution: only 2-d, non-transposed convolutions are lowered")
    y = jax.lax.conv_general_dilated(x, w, stride, [(p, p) for p in padding], rhs_dilation=dilation,
                                     dimension_numbers=("NCHW", "OIHW", "NCHW"), feature_group_count=groups)
    return y if b is None else y + b.reshape(1, -1, 1, 1)


def _batch_norm(x: jax.Array, w: jax.Array | None, b: jax.Array | None, mean: jax.Array,
                var: jax.Array, momentum: float, eps: float) -> tuple[jax.Array, None, None]:
    shape = (1, -1) + (1,) * (x.ndim - 2)
    y = (x - mean.reshape(shape)) * jax.lax.rsqrt(var.reshape(shape) + eps)
    y = y if w is None else y * w.reshape(shape)
    return (y if b is None else y + b.reshape(shape)), None, None  # (out, save_mean, save_invstd)


def _max_pool2d(x: jax.Array, kernel: list[int], stride: list[int] | None = None,
                padding: list[int] | int = 0, dilation: list[int] | int = 1,
                ceil_mode: bool = False) -> tuple[jax.Array, None]:
    pad, dil = ([v] * 2 if isinstance(v, int) else v for v in (padding, dilation))
    if ceil_mode:
        raise NotImplementedError("aten.max_pool2d_with_indices with ceil_mode=True is not lowered")
    y = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 1, *kernel), (1, 1, *(stride or kernel)),
                              [(0, 0), (0, 0)] + [(p, p) for p in pad], window_dilation=(1, 1, *dil))
    return y, None  # the indices are not lowered; _getitem refuses them


def _getitem(seq: Any, i: int) -> Any:
    if seq[i] is None:
        raise NotImplementedError(f"output {i} of a multi-output op (indices or saved statistics)")
    return seq[i]


#: aten op -> JAX function with the op's signature. Exactly what ResNet-18 and FunctionalCNN need.
LOWERINGS: dict[Any, Callable[..., Any]] = {
    aten.convolution.default: _conv,
    aten._native_batch_norm_legit_no_training.default: _batch_norm,
    aten.max_pool2d_with_indices.default: _max_pool2d,
    operator.getitem: _getitem,
    aten.relu.default: jax.nn.relu,
    aten.add.Tensor: lambda a, b, alpha=1: a + b if alpha == 1 else a + alpha * b,
    aten.mean.dim: lambda x, dims, keepdim=False, dtype=None: jnp.mean(x, tuple(dims), keepdims=keepdim),
    aten.view.default: jnp.reshape,
    aten.permute.default: jnp.transpose,
    aten.addmm.default: lambda c, a, b, beta=1, alpha=1: beta * c + alpha * (a @ b),
    aten._softmax.default: lambda x, dim, half_to_float: jax.nn.softmax(x, axis=dim),
}


def aten_ops(ep: torch.export.ExportedProgram) -> list[str]:
    return sorted({str(n.target) for n in ep.graph.nodes if n.op == "call_function"})


def _layer(node: torch.fx.Node) -> str:
    """Where a node comes from, from the innermost entry of its ``nn_module_stack``."""
    path, kind = ([("", "?")] + list((node.meta.get("nn_module_stack") or {}).values()))[-1]
    kind = kind.rsplit(".", 1)[-1]
    return f"in layer {path!r} ({kind})" if path else f"in the forward of the top module ({kind})"


def export_to_jax(module: nn.Module, example: torch.Tensor) -> tuple[dict[str, jax.Array], Fn]:
    """(params keyed as in ``state_dict``, f(params, x)) for ``module``; shapes are fixed by ``example``."""
    ep = torch.export.export(module.eval(), (example,)).run_decompositions()
    missing = [f"{n.target} {_layer(n)}" for n in ep.graph.nodes if n.op == "call_function"
               and n.target not in LOWERINGS]
    if missing:
        raise NotImplementedError("no JAX lowering for: " + "; ".join(dict.fromkeys(missing)))
    params = {k: jnp.asarray(v.detach().numpy()) for k, v in ep.state_dict.items()}
    constants = {k: jnp.asarray(v.detach().numpy()) for k, v in ep.constants.items()}
    kinds = torch.export.graph_signature.InputKind
    specs = {s.arg.name: s for s in ep.graph_signature.input_specs}
    if [s.kind for s in specs.values()].count(kinds.USER_INPUT) != 1:
        raise NotImplementedError("only modules with one tensor input are lowered")
    nodes = list(ep.graph.nodes)

    def f(params: dict[str, jax.Array], x: jax.Array) -> Any:
        env: dict[torch.fx.Node, Any] = {}
        for node in nodes:
            if node.op == "placeholder":  # the image, a parameter or buffer, or a lifted constant
                spec = specs[node.name]
                env[node] = x if spec.kind == kinds.USER_INPUT else (
                    params[spec.target] if spec.target in params else constants[spec.target])
            elif node.op == "call_function":
                args, kwargs = torch.fx.node.map_arg((node.args, node.kwargs), env.__getitem__)
                env[node] = LOWERINGS[node.target](*args, **kwargs)
            elif node.op == "output":
                out = torch.fx.node.map_arg(node.args[0], env.__getitem__)
                return out[0] if len(out) == 1 else out
            else:
                raise NotImplementedError(f"fx node kind {node.op} ({node.name})")
        raise ValueError("graph without output")

    return params, f


# --- measurements ------------------------------------------------------------------------------

def count_eqns(jaxpr: Any) -> int:
    """Equations in a jaxpr, nested jaxprs (pjit, custom_jvp) included."""
    total = 0
    for eqn in jaxpr.eqns:
        total += 1
        for p in eqn.params.values():
            for sub in p if isinstance(p, (tuple, list)) else [p]:
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    total += count_eqns(inner)
    return total


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    out = jax.block_until_ready(fn())
    return out, time.perf_counter() - start


def diff(a: Any, b: Any) -> dict[str, float]:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    err = float(np.max(np.abs(a - b)))
    return {"max_abs": err, "max_rel": err / float(np.max(np.abs(b)))}


def ig_program(f: Fn, params: Any, t: int, steps: int) -> Callable[[jax.Array], jax.Array]:
    alphas = (jnp.arange(steps, dtype=jnp.float32) + 0.5) / steps  # midpoint rule
    grad = jax.grad(lambda xi: f(params, xi[None])[0, t])
    return jax.jit(lambda x: jnp.mean(jax.vmap(grad)(alphas[:, None, None, None] * x[None]), 0) * x)


def torch_ig(model: nn.Module, x: torch.Tensor, t: int, steps: int) -> torch.Tensor:
    alphas = (torch.arange(steps, dtype=torch.float32) + 0.5) / steps
    path = (alphas[:, None, None, None] * x[None]).requires_grad_(True)
    model(path)[:, t].sum().backward()
    return path.grad.mean(0) * x


def check_candidate(p: Any, f: Fn, x: jax.Array, logits: np.ndarray, grad: np.ndarray) -> dict[str, Any]:
    """First trace and its size, then logits and d logit0 / d x against torch's."""
    jaxpr, trace_s = timed(lambda: jax.make_jaxpr(f)(p, x))
    return {"trace_s": trace_s, "jaxpr_eqns": len(jaxpr.jaxpr.eqns), "jaxpr_eqns_nested": count_eqns(jaxpr.jaxpr),
            "logits": diff(jax.jit(f)(p, x), logits),
            "grad_logit0": diff(jax.jit(jax.grad(lambda xx: f(p, xx)[0, 0]))(x), grad)}


def time_interleaved(runs: dict[str, Callable[[], Any]], reps: int = 3) -> tuple[dict[str, Any], dict[str, Any]]:
    """One untimed warm-up round, then ``reps`` rounds in rotated order, so that each runs first and
    after each other once (a call can slow the next, e.g. thread pools still spinning). Wall, CPU s."""
    order, times, outs = list(runs), {k: [] for k in runs}, {}
    for rep in range(reps + 1):
        for name in order[rep % len(order):] + order[:rep % len(order)]:
            cpu = sum(os.times()[:2])
            outs[name], s = timed(runs[name])
            times[name].append((s, sum(os.times()[:2]) - cpu))
        print(f"round {rep}: " + ", ".join(f"{k} {v[-1][0]:.2f} s" for k, v in times.items()), flush=True)
    stats = {k: {"ig_first_run_s": v[0][0], "ig_runs_wall_cpu_s": v[1:],
                 "ig_median_s": statistics.median(w for w, _ in v[1:]),
                 "ig_median_cpu_s": statistics.median(c for _, c in v[1:])} for k, v in times.items()}
    return stats, outs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--out", default="benchmarks/results/torch_converters-cpu2.json")
    args = parser.parse_args()
    torch.set_num_threads(2)
    res: dict[str, Any] = {"size": args.size, "steps": args.steps, "jax_device": jax.devices()[0].device_kind,
                           "versions": {"torch": torch.__version__, "jax": jax.__version__}}
    model = torch_resnet18()
    xt = torch.randn(1, 3, args.size, args.size, generator=torch.Generator().manual_seed(1))
    ep = torch.export.export(model, (xt,))
    res["aten_ops_export"], res["aten_ops_decomposed"] = aten_ops(ep), aten_ops(ep.run_decompositions())

    from xai_core.adapters import _torchax
    torchax, res["A_import_s"] = timed(_torchax.load)
    (pa, fa_raw), conv_a = timed(lambda: torchax.extract_jax(model))
    (pb, fb), conv_b = timed(lambda: export_to_jax(model, xt))
    fa: Fn = lambda p, x: fa_raw(p, (x,))  # noqa: E731
    cands = {"A": (pa, fa), "B": (pb, fb)}

    small, xs = FunctionalCNN().eval(), torch.randn(1, 3, 16, 16)  # coverage: functional ops, softmax
    (sa, sfa), (sb, sfb) = torchax.extract_jax(small), export_to_jax(small, xs)
    res["functional_cnn_probs"] = {"A": diff(sfa(sa, (jnp.asarray(xs.numpy()),)), small(xs).detach()),
                                   "B": diff(sfb(sb, jnp.asarray(xs.numpy())), small(xs).detach())}

    x = jnp.asarray(xt.numpy())
    logits = model(xt).detach().numpy()
    xg = xt.clone().requires_grad_(True)
    model(xg)[0, 0].backward()
    t = int(np.argmax(logits[0]))  # IG target: the top class
    for name, conv_s in (("A", conv_a), ("B", conv_b)):
        res[name] = {"convert_s": conv_s, **check_candidate(*cands[name], x, logits, xg.grad.numpy())}
    progs = {}
    for name, (p, f) in cands.items():  # compile both before timing either
        progs[name], res[name]["ig_compile_s"] = timed(lambda: ig_program(f, p, t, args.steps).lower(x[0]).compile())
        print(f"{name}: IG-{args.steps} compiled in {res[name]['ig_compile_s']:.1f} s", flush=True)

    stats, outs = time_interleaved({"A": lambda: progs["A"](x[0]), "B": lambda: progs["B"](x[0]),
                                    "torch": lambda: torch_ig(model, xt[0], t, args.steps)})
    for name, st in stats.items():
        res.setdefault(name, {}).update(st)
    for name in ("A", "B"):
        res[name]["ig_vs_torch"] = diff(outs[name], outs["torch"].detach().numpy())
    res["ig_A_vs_B"] = diff(outs["A"], outs["B"])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))
    print_table(res)
    print(f"wrote {args.out}")


def print_table(res: dict[str, Any]) -> None:
    print(f"\nResNet-18, {res['size']}x{res['size']}x3, IG {res['steps']} steps, {res['jax_device']}, "
          f"{res['versions']}; aten ops: {len(res['aten_ops_export'])} from export, "
          f"{len(res['aten_ops_decomposed'])} after run_decompositions (getitem included)")
    fmt = lambda v: f"{v['max_abs']:.1e} / {v['max_rel']:.1e}" if isinstance(v, dict) else (  # noqa: E731
        f"{v:.2f}" if isinstance(v, float) else str(v))
    rows = ["convert_s", "trace_s", "jaxpr_eqns", "jaxpr_eqns_nested", "logits", "grad_logit0",
            "ig_compile_s", "ig_first_run_s", "ig_median_s", "ig_median_cpu_s", "ig_vs_torch"]
    print(f"{'(diffs: max abs / max rel)':26}{'A torchax':>22}{'B export':>22}{'torch':>10}")
    for key in rows:
        print(f"{key:26}" + "".join(f"{fmt(res[c][key]) if key in res[c] else '':>{w}}"
                                    for c, w in (("A", 22), ("B", 22), ("torch", 10))))
    print(f"{'functional_cnn_probs':26}{fmt(res['functional_cnn_probs']['A']):>22}"
          f"{fmt(res['functional_cnn_probs']['B']):>22}\n{'ig A vs B':26}{fmt(res['ig_A_vs_B']):>22}")


if __name__ == "__main__":
    main()
