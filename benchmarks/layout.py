"""The whole-program layout pass (``xai_core.graph.layout``) against transposing around each
convolution only, and against Captum, on the torch ResNet-18 through ``from_torch``.

    python -m benchmarks.layout            # two 224x224 images, IG-64 and SmoothGrad-50, ~5 minutes
    python -m benchmarks.layout --quick    # the small ResNet at 64x64: a smoke run

Rows, each the best of ``--repeats`` calls after a compiling one, ``jax.jit(jax.vmap(...))`` over
the images with xai-core's defaults (``batch_size="auto"``):

- ``xai-core``: today's ``fast_kernels`` (every value kept in the layout its convolution wrote);
- ``xai-core, per-conv transposes``: the previous ``fast_kernels`` (each convolution
  transposed to NHWC and back, pooling rules the same), for the difference the pass makes;
- ``captum``: ``IntegratedGradients`` (Gauss-Legendre, like ours) and ``NoiseTunnel(Saliency)``
  at ``internal_batch_size`` / ``nt_samples_batch_size`` of 32 and all at once, the faster kept.

The maps of the two xai-core rows are compared (largest difference relative to the largest
value). Writes ``results/layout-<machine>.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Callable

RESULTS = Path(__file__).resolve().parent / "results"


def _best(call: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    out = call()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        out = call()
        best = min(best, time.perf_counter() - start)
    return best, out


def run(quick: bool, repeats: int) -> dict[str, Any]:
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch
    from captum.attr import IntegratedGradients, NoiseTunnel, Saliency

    import xai_core as xc
    import xai_core.core.chunking as chunking
    import xai_core.attribution.gradients as gradients
    from benchmarks.models import torch_resnet18, torch_small_resnet
    from xai_core.adapters import from_torch
    from xai_core.graph import rewrites

    size = 64 if quick else 224
    net = torch_small_resnet() if quick else torch_resnet18()
    m = from_torch(net, torch.zeros(1, 3, size, size))
    xs = jax.random.uniform(jax.random.key(0), (2, 3, size, size))
    ts = jnp.array([3, 7])
    xs_t, targets = torch.tensor(np.asarray(xs)), [3, 7]
    steps, samples = (8, 8) if quick else (64, 50)
    noise = jax.random.normal(jax.random.key(1), (2, samples, 3, size, size))

    def per_conv(fn: Callable[..., Any]) -> Callable[..., Any]:
        return rewrites._rewritten(fn, {"conv_general_dilated": rewrites._conv_channels_last,
                                        "select_and_scatter_add": rewrites._select_and_scatter_add_dense,
                                        "reduce_window_sum": rewrites._reduce_window_sum_separable})

    workloads = {
        f"IG-{steps}": lambda x, t, z: xc.integrated_gradients(m.score(t), steps=steps, rule="gauss_legendre")(x),
        f"SmoothGrad-{samples}": lambda x, t, z: xc.smoothgrad(xc.gradient(m.score(t)), samples=samples, sigma=0.15,
                                                               relative=False)(x, noise=z),
    }
    result: dict[str, Any] = {"size": size, "images": 2, "quick": quick, "rows": {}}
    for name, fn in workloads.items():
        rows: dict[str, Any] = {}
        maps = {}
        for label, kernels in (("xai-core", rewrites.fast_kernels), ("xai-core, per-conv transposes", per_conv)):
            chunking.fast_kernels = gradients.fast_kernels = kernels
            compiled = jax.jit(jax.vmap(fn))
            seconds, out = _best(lambda: compiled(xs, ts, noise).block_until_ready(), repeats)
            rows[label] = {"seconds": seconds}
            maps[label] = np.asarray(out)
        chunking.fast_kernels = gradients.fast_kernels = rewrites.fast_kernels
        a, b = maps.values()
        rows["xai-core"]["max_rel_diff_vs_per_conv"] = float(np.abs(a - b).max() / np.abs(b).max())
        captum = []
        for batch in (32, None):
            if name.startswith("IG"):
                ig = IntegratedGradients(net)
                call = lambda batch=batch: ig.attribute(xs_t, target=targets, n_steps=steps, method="gausslegendre",
                                                        internal_batch_size=batch)
            else:
                sg = NoiseTunnel(Saliency(net))
                call = lambda batch=batch: sg.attribute(xs_t, nt_type="smoothgrad", nt_samples=samples, stdevs=0.15,
                                                        target=targets, abs=False, nt_samples_batch_size=batch)
            captum.append((_best(call, repeats)[0], batch))
        seconds, batch = min(captum, key=lambda c: c[0])
        rows["captum"] = {"seconds": seconds, "batch": batch}
        for row in rows.values():
            row["captum / this"] = rows["captum"]["seconds"] / row["seconds"]
        result["rows"][name] = rows
    return result


def table(result: dict[str, Any]) -> str:
    lines = ["| workload | row | seconds | Captum's time / this |", "|---|---|---:|---:|"]
    for name, rows in result["rows"].items():
        for label, row in rows.items():
            lines.append(f"| {name} | {label} | {row['seconds']:.2f} | {row['captum / this']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the small ResNet at 64x64: a smoke run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="JSON file (default: results/layout-<machine>.json)")
    args = parser.parse_args(argv)
    from benchmarks.run import machine, machine_tag

    result = run(args.quick, args.repeats)
    print(table(result))
    result["machine"] = machine()
    out = args.out or RESULTS / f"layout{'-quick' if args.quick else ''}-{machine_tag(result['machine'])}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
