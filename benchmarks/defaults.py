"""Fast by default: xai-core as a new user runs it (no XLA flag, no batch size) against Captum.

    python -m benchmarks.defaults            # small CNN and ResNet-18, about 10 minutes on 2 cores
    python -m benchmarks.defaults --quick    # small CNN only, fewer repeats: a smoke run

Two models through ``from_torch``, random weights, the same inputs and targets for everyone:
the small residual CNN a notebook user tries first (``models.SmallResNet``: 32/64 channels,
four 64x64 images; IG-32 Gauss-Legendre, SmoothGrad-50, occlusion 8x8 stride 4) and the
ResNet-18 (two 224x224 images for IG-32 and SmoothGrad-16, two 112x112 for occlusion 16/8).
Rows, each the median of ``--repeats`` calls after a warm-up:

- ``xai-core defaults``: ``jax.jit(jax.vmap(lambda m, x, t: xc.attribute(m.score(t), x,
  method=...)))`` with no option, in a fresh process where nothing set ``XLA_FLAGS`` (so
  ``import xai_core`` applies its CPU defaults: :mod:`xai_core.core.xla`, ``batch_size="auto"``);
- ``xai-core before``: the same with the defaults of before, in another fresh process:
  ``XAI_CORE_XLA_DEFAULTS=0`` (no flag) and ``batch_size=32``;
- ``captum default``: Captum with its own defaults (everything in one batch; occlusion one
  perturbation per forward); ``captum tuned``: the fastest of its batch options
  (``internal_batch_size`` / ``nt_samples_batch_size`` / ``perturbations_per_eval``).

Outputs are checked against Captum's (largest difference relative to Captum's largest value).
Writes ``results/defaults-<machine>.json`` and prints a markdown table of speed-ups
(Captum's time / ours: above 1 is faster than Captum).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
WORKLOADS = {  # model -> (image side, images, [(method, options)])
    "small": (64, 4, [("ig", {"steps": 32}), ("smoothgrad", {"samples": 50}), ("occlusion", {"window": 8, "stride": 4})]),
    "resnet18": (224, 2, [("ig", {"steps": 32}), ("smoothgrad", {"samples": 16}),
                          ("occlusion", {"window": 16, "stride": 8, "size": 112})]),
}
SIGMA = 0.1


def worker(variant: str, models: list[str], repeats: int) -> dict[str, Any]:
    """One process's rows: ``variant`` is ``"defaults"`` (with the Captum rows) or ``"before"``."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch
    from captum.attr import IntegratedGradients, NoiseTunnel, Occlusion, Saliency
    from captum.attr._core import noise_tunnel

    import xai_core as xc
    from benchmarks.models import torch_resnet18, torch_small_resnet
    from benchmarks.run import _fixed_noise, jitted, measure, rel_diff, torch_run
    from xai_core.adapters import from_torch

    torch.set_num_threads(os.cpu_count() or 1)
    before = {"batch_size": 32} if variant == "before" else {}
    rows: dict[str, Any] = {"xai_defaults": xc.XLA_DEFAULTS, "xla_flags": os.environ.get("XLA_FLAGS", "")}
    for name in models:
        side, images, methods = WORKLOADS[name]
        net = torch_small_resnet() if name == "small" else torch_resnet18(num_classes=1000)
        targets = [1, 7, 3, 5][:images]
        for method, options in methods:
            options = dict(options)
            size = options.pop("size", side)
            xs_t = torch.rand(images, 3, size, size, generator=torch.Generator().manual_seed(0))
            xs, ts = jnp.asarray(xs_t.numpy()), jnp.asarray(targets)
            m = from_torch(net, xs_t[:1])
            key, n = f"{name}/{method}", options.get("steps", options.get("samples"))
            noise = torch.randn(images * n, 3, size, size, generator=torch.Generator().manual_seed(1)) if method == "smoothgrad" else None
            if method == "ig":
                ours = dict(steps=n, rule="gauss_legendre")
            elif method == "smoothgrad":  # the same draws as Captum: noise[k * n + i] for image k
                ours = dict(samples=n, sigma=SIGMA, relative=False)
            else:
                w, st = options["window"], options["stride"]
                ours = dict(window=(3, w, w), stride=(3, st, st))

            def explain(m: Any, x: Any, t: Any, z: Any) -> Any:
                if method == "smoothgrad":
                    return xc.smoothgrad(xc.gradient(m.score(t)), **ours, **before)(x, noise=z)
                return xc.attribute(m.score(t), x, method=method, **ours, **before)

            z = jnp.asarray(noise.numpy()).reshape(images, n, 3, size, size) if noise is not None else jnp.zeros(images)
            f = jax.vmap(explain, in_axes=(None, 0, 0, 0))
            row = measure(lambda: jitted(f, m, xs, ts, z), repeats)
            out = row.pop("out")
            rows[key] = {"xai": row}
            if variant != "defaults":
                continue

            def captum(batch: int | None) -> Any:
                if method == "ig":
                    return IntegratedGradients(net).attribute(xs_t, target=targets, n_steps=n, method="gausslegendre",
                                                              internal_batch_size=batch)
                if method == "smoothgrad":  # Captum draws with torch.normal: hand it our draws
                    real = noise_tunnel.torch.normal
                    noise_tunnel.torch.normal = _fixed_noise(noise, batch or n, images, n)
                    try:
                        return NoiseTunnel(Saliency(net)).attribute(
                            xs_t, target=targets, nt_samples=n, stdevs=SIGMA, nt_type="smoothgrad", abs=False,
                            nt_samples_batch_size=batch)
                    finally:
                        noise_tunnel.torch.normal = real
                with torch.no_grad():
                    return Occlusion(net).attribute(xs_t, target=targets, sliding_window_shapes=ours["window"],
                                                    strides=ours["stride"], perturbations_per_eval=batch or 1)

            default = measure(lambda: torch_run(lambda: captum(None)), repeats, torch_side=True)
            rows[key]["captum_default"] = {k: v for k, v in default.items() if k != "out"}
            rows[key]["max_rel_diff_vs_captum"] = rel_diff(out, default["out"])
            tuned = {b: measure(lambda b=b: torch_run(lambda: captum(b)), repeats, torch_side=True)["seconds"]
                     for b in ((2, 8, 32) if method != "smoothgrad" else (2, 8))}
            best = min(tuned, key=tuned.get)
            rows[key]["captum_tuned"] = {"seconds": tuned[best], "batch": best, "tried": tuned}
            print(f"{key}: xai {row['seconds']:.3f} s, captum default {default['seconds']:.3f} s, "
                  f"tuned {tuned[best]:.3f} s (batch {best})", file=sys.stderr, flush=True)
    return rows


def table(result: dict[str, Any]) -> str:
    now, old = result["defaults"], result["before"]
    lines = ["| workload | xai-core defaults s | before s | Captum default s | Captum tuned s | "
             "vs Captum default | vs Captum tuned | before vs Captum default | max rel diff |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for key, row in now.items():
        if not isinstance(row, dict):
            continue
        ours, prev = row["xai"]["seconds"], old[key]["xai"]["seconds"]
        cd, ct = row["captum_default"]["seconds"], row["captum_tuned"]["seconds"]
        lines.append(f"| {key} | {ours:.3f} | {prev:.3f} | {cd:.3f} | {ct:.3f} (batch {row['captum_tuned']['batch']}) | "
                     f"{cd / ours:.2f}x | {ct / ours:.2f}x | {cd / prev:.2f}x | {row['max_rel_diff_vs_captum']:.1e} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the small CNN only, one repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--worker", choices=("defaults", "before"), help=argparse.SUPPRESS)
    parser.add_argument("--models", default="small,resnet18", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    models = ["small"] if args.quick else args.models.split(",")
    repeats = 1 if args.quick else args.repeats
    if args.worker:
        print(json.dumps(worker(args.worker, models, repeats), default=float))
        return
    from benchmarks.run import machine, machine_tag  # imports xai_core, which starts no backend

    clean = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "XAI_CORE_XLA_DEFAULTS")}
    root = str(Path(__file__).resolve().parents[1])
    result: dict[str, Any] = {"models": models, "repeats": repeats, "workloads": WORKLOADS}
    for variant, extra in (("defaults", {}), ("before", {"XAI_CORE_XLA_DEFAULTS": "0"})):
        done = subprocess.run([sys.executable, "-m", "benchmarks.defaults", "--worker", variant,
                               "--models", ",".join(models), "--repeats", str(repeats)],
                              env={**clean, **extra, "PYTHONPATH": root}, cwd=root, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"the {variant} worker failed:\n{done.stderr[-4000:]}")
        result[variant] = json.loads(done.stdout.strip().splitlines()[-1])
    result["machine"] = machine()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"defaults{'-quick' if args.quick else ''}-{machine_tag(result['machine'])}.json"
    path.write_text(json.dumps(result, indent=1, default=float))
    print(table(result))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
