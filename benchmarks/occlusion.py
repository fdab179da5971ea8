"""Occlusion by incremental inference (issue 18, item 2) against the whole model per window,
the forward floor and Captum.

    python -m benchmarks.occlusion                 # ResNet-18 at 112² and 224², about 15 minutes on 2 cores
    python -m benchmarks.occlusion --sizes 112     # 112² only, about 3 minutes

The torch ResNet-18 (random weights, ``from_torch``), two images, a 16x16 window at stride 8
across all channels, baseline 0, traced targets, ``jax.jit(jax.vmap(...))`` over the images.
Rows, each the median of ``--repeats`` calls after a warm-up:

- ``incremental``: ``xc.occlusion`` with its defaults (incremental, ``batch_size="auto"``);
- ``whole model``: the same with ``incremental=False`` (every window a full forward);
- ``forward floor``: the ``N`` full forwards occlusion cannot avoid without incremental
  inference (``N`` = windows x images), jitted ``vmap`` of ``m.logits`` in chunks of the
  largest divisor of ``N`` up to 32 (26 at 112², 27 at 224²);
- ``captum tuned``: Captum's ``Occlusion`` at its fastest ``perturbations_per_eval`` of 16 / 32
  (``torch.no_grad``), on the same weights and inputs.

Writes ``results/occlusion-<machine>.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
WINDOW, STRIDE, IMAGES = 16, 8, 2


def rows_for(side: int, repeats: int) -> dict[str, Any]:
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch
    from captum.attr import Occlusion

    import xai_core as xc
    from benchmarks.models import torch_resnet18
    from benchmarks.run import jitted, measure, rel_diff, torch_run
    from xai_core.adapters import from_torch

    net = torch_resnet18(num_classes=1000)
    xs_t = torch.rand(IMAGES, 3, side, side, generator=torch.Generator().manual_seed(0))
    m = from_torch(net, xs_t[:1])
    xs, targets = jnp.asarray(xs_t.numpy()), [1, 7]
    ts = jnp.asarray(targets)
    windows = (1 + -(-(side - WINDOW) // STRIDE)) ** 2
    win, step = (3, WINDOW, WINDOW), (3, STRIDE, STRIDE)

    def ours(incremental: bool) -> Any:
        return jax.vmap(lambda m, x, t: xc.occlusion(m.score(t), win, step, incremental=incremental)(x),
                        in_axes=(None, 0, 0))

    out: dict[str, Any] = {"windows_per_image": windows}
    inc = measure(lambda: jitted(ours(True), m, xs, ts), repeats)
    whole = measure(lambda: jitted(ours(False), m, xs, ts), repeats)
    forwards = jnp.asarray(np.random.default_rng(0).random((windows * IMAGES, 3, side, side), np.float32))
    chunk = max(d for d in range(1, 33) if len(forwards) % d == 0)
    chunks = forwards.reshape(-1, chunk, 3, side, side)
    floor = measure(lambda: jitted(lambda m, c: jax.lax.map(jax.vmap(m.logits), c), m, chunks), repeats)
    captum = {}
    for batch in (16, 32):
        def call(batch: int = batch) -> Any:
            with torch.no_grad():
                return Occlusion(net).attribute(xs_t, sliding_window_shapes=win, strides=step, baselines=0.0,
                                                target=targets, perturbations_per_eval=batch)
        captum[batch] = measure(lambda call=call: torch_run(call), repeats, torch_side=True)
    best = min(captum, key=lambda b: captum[b]["seconds"])
    out.update(incremental=inc["seconds"], whole_model=whole["seconds"], forward_floor=floor["seconds"],
               captum_tuned=captum[best]["seconds"], captum_batch=best,
               captum_tried={b: r["seconds"] for b, r in captum.items()},
               max_rel_diff_vs_whole=rel_diff(inc["out"], whole["out"]),
               max_rel_diff_vs_captum=rel_diff(inc["out"], captum[best]["out"]))
    return out


def table(result: dict[str, Any]) -> str:
    lines = ["| image | windows | incremental s | whole model s | forward floor s | Captum tuned s | "
             "incremental / floor | Captum tuned / incremental | max rel diff (whole, Captum) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for side, r in result["sizes"].items():
        lines.append(f"| {IMAGES} x {side}² | {r['windows_per_image']} | {r['incremental']:.2f} | "
                     f"{r['whole_model']:.2f} | {r['forward_floor']:.2f} | {r['captum_tuned']:.2f} "
                     f"(batch {r['captum_batch']}) | {r['incremental'] / r['forward_floor']:.2f} | "
                     f"{r['captum_tuned'] / r['incremental']:.2f}x | {r['max_rel_diff_vs_whole']:.1e}, "
                     f"{r['max_rel_diff_vs_captum']:.1e} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="112,224")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    from benchmarks.run import machine, machine_tag

    result: dict[str, Any] = {"window": WINDOW, "stride": STRIDE, "images": IMAGES, "repeats": args.repeats,
                              "sizes": {}}
    for side in (int(s) for s in args.sizes.split(",")):
        result["sizes"][side] = rows_for(side, args.repeats)
        print(table(result).splitlines()[-1], flush=True)
    result["machine"] = machine()
    path = args.out or RESULTS / f"occlusion-{machine_tag(result['machine'])}.json"
    path.write_text(json.dumps(result, indent=1, default=float))
    print(table(result))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
