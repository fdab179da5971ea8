"""Rule methods against the plain gradient and against Captum, on the same torch weights.

    python -m benchmarks.rules            # ResNet-18, two 224x224 images, about 3 minutes on 2 cores
    python -m benchmarks.rules --quick    # the small ResNet (32 channels, 64x64): a smoke run

A rule method costs one modified backward pass, so its bar is the plain gradient's time
(xai-core's ``gradient``: one forward, one backward): DeepLift adds the forward pass at the
baseline, LRP-epsilon the rule's transposed operations. Rows, each the median of ``--repeats``
calls after a warm-up, ``jax.jit(jax.vmap(...))`` over the images through ``from_torch`` with
xai-core's defaults:

- ``gradient``, ``deeplift`` (zero baseline), ``lrp`` (``xc.rules.epsilon(1e-9)`` on every
  operation, Captum's epsilon);
- Captum's ``DeepLift`` and ``LRP`` (its default: ``EpsilonRule`` on every layer) on a copy of
  the network with one ReLU module per use (Captum's DeepLift refuses a module used twice;
  the weights are the same), everything in one batch.

DeepLift is checked against Captum's (largest difference relative to Captum's largest value).
Captum's LRP is not a reference here: it copies relevance to both branches of the inline
residual adds (``tests/LRP_CONVENTIONS.md``); our LRP is cross-checked against Zennit in
``tests/test_rules_lrp.py``. Writes ``results/rules-<machine>.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def per_use_relus(net: Any) -> Any:
    """A copy of a ``benchmarks.models`` ResNet whose blocks use a ReLU module per use."""
    import types

    from torch import nn

    from benchmarks.models import BasicBlock

    def forward(self: Any, x: Any) -> Any:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu_out(out + identity)

    twin = copy.deepcopy(net)
    for m in twin.modules():
        if isinstance(m, BasicBlock):
            m.relu, m.relu_out = nn.ReLU(), nn.ReLU()
            m.forward = types.MethodType(forward, m)
    return twin


def run(quick: bool, repeats: int) -> dict[str, Any]:
    import jax
    import jax.numpy as jnp
    import torch
    from captum.attr import LRP, DeepLift

    import xai_core as xc
    from benchmarks.models import torch_resnet18, torch_small_resnet
    from benchmarks.run import cpu_name, jitted, measure, rel_diff, torch_run
    from xai_core.adapters import from_torch

    torch.set_num_threads(os.cpu_count() or 1)
    size, n = (64, 4) if quick else (224, 2)
    net = torch_small_resnet() if quick else torch_resnet18()
    xs_t = torch.randn((n, 3, size, size), generator=torch.Generator().manual_seed(1))
    xs = jnp.asarray(xs_t.numpy())
    with torch.no_grad():
        targets = net(xs_t).argmax(1).tolist()
    ts = jnp.array(targets)
    m = from_torch(net, xs_t[:1])
    eps = xc.rules.epsilon(1e-9)
    ours = {
        "gradient": lambda m, x, t: xc.gradient(m.score(t))(x),
        "deeplift": lambda m, x, t: xc.deeplift(m.score(t))(x),
        "lrp": lambda m, x, t: xc.lrp(m.score(t), xc.rules.Composite(dense=eps, conv=eps, other=eps))(x),
    }
    rows: dict[str, Any] = {}
    for name, fn in ours.items():
        batched = jax.vmap(fn, in_axes=(None, 0, 0))
        rows[name] = measure(lambda b=batched: jitted(b, m, xs, ts), repeats)
    twin = per_use_relus(net)
    rows["captum DeepLift"] = measure(lambda: torch_run(
        lambda: DeepLift(twin).attribute(xs_t, baselines=torch.zeros_like(xs_t[:1]), target=targets)), repeats, True)
    rows["captum LRP"] = measure(lambda: torch_run(lambda: LRP(twin).attribute(xs_t, target=targets)), repeats, True)
    seconds = {k: v["seconds"] for k, v in rows.items()}
    result = {
        "machine": cpu_name(), "cores": os.cpu_count(), "model": "small ResNet" if quick else "ResNet-18",
        "images": n, "size": size, "repeats": repeats, "seconds": seconds,
        "compile": {k: v["compile"] for k, v in rows.items()},
        "deeplift_vs_captum_diff": rel_diff(rows["deeplift"]["out"], rows["captum DeepLift"]["out"]),
        "ratios": {
            "deeplift / gradient": seconds["deeplift"] / seconds["gradient"],
            "lrp / gradient": seconds["lrp"] / seconds["gradient"],
            "captum DeepLift / deeplift": seconds["captum DeepLift"] / seconds["deeplift"],
            "captum LRP / lrp": seconds["captum LRP"] / seconds["lrp"],
        },
    }
    return result


def table(result: dict[str, Any]) -> str:
    s, r = result["seconds"], result["ratios"]
    lines = [f"{result['model']}, {result['images']} x {result['size']}², {result['machine']}, {result['cores']} cores",
             "", "| method | xai-core s | / gradient | Captum s | Captum / xai-core |", "|---|---:|---:|---:|---:|",
             f"| gradient | {s['gradient']:.3f} | 1.00 | - | - |",
             f"| DeepLift | {s['deeplift']:.3f} | {r['deeplift / gradient']:.2f} | {s['captum DeepLift']:.3f} | "
             f"{r['captum DeepLift / deeplift']:.2f} |",
             f"| LRP-epsilon | {s['lrp']:.3f} | {r['lrp / gradient']:.2f} | {s['captum LRP']:.3f} | "
             f"{r['captum LRP / lrp']:.2f} |",
             "", f"DeepLift vs Captum's, largest difference / largest value: {result['deeplift_vs_captum_diff']:.1e}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.rules", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the small ResNet at 64x64: a smoke run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="JSON file (default: results/rules-<machine>.json)")
    args = parser.parse_args(argv)
    result = run(args.quick, args.repeats)
    from benchmarks.run import machine, machine_tag

    out = args.out or RESULTS / f"rules{'-quick' if args.quick else ''}-{machine_tag(machine())}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(table(result))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
