"""Does IG's first-layer linearity pay? (issue 18, item 4)

    python -m benchmarks.first_layer            # ResNet-18 (2 x 224², IG-32) and the small CNN (4 x 64², IG-32)
    python -m benchmarks.first_layer --quick    # the small CNN only, one repeat: a smoke run

The first layers of a torch ResNet in eval mode, the stem convolution and its BatchNorm, are
affine, so along IG's path ``h(x0 + a (x - x0)) = h(x0) + a (h(x) - h(x0))`` and
``sum_k w_k grad_x f(x_k) = J_h^T sum_k w_k grad_z g(z_k)``: the stem runs twice instead of
once per step, and its transposed convolution once instead of once per step. Rows: IG as
``xc.integrated_gradients`` computes it, and the same sum through ``m.split("bn1")`` with the
stem hoisted out of the path (same chunking, same ``fast_kernels``), both ``jax.jit(jax.vmap)``
over the images with traced targets, medians of ``--repeats`` after a warm-up. Prints a table
and writes ``results/first_layer-<machine>.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def hoisted_ig(m: Any, steps: int, layer: str = "bn1") -> Any:
    """IG with the affine head (up to ``layer``) applied once at each end of the path."""
    import jax
    import jax.numpy as jnp

    from xai_core.core.chunking import chunked_sum, resolve_batch_size
    from xai_core.attribution.gradients import path_rule

    alphas, weights = path_rule("gauss_legendre", steps)

    def explain(x: Any, t: Any) -> Any:
        head, tail = m.split(layer, x)
        x0 = jnp.zeros_like(x)
        z0, (z1, pull) = head(x0), jax.vjp(head, x)
        dz = z1 - z0

        def term(k: Any) -> Any:
            z = z0 + jnp.asarray(alphas, dz.dtype)[k] * dz
            return jnp.asarray(weights, dz.dtype)[k] * jax.grad(lambda a: tail(a)[t])(z)

        total = chunked_sum(term, steps, resolve_batch_size("auto", [x]))
        return (x - x0) * pull(total)[0]

    return explain


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the small CNN only, one repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch

    import xai_core as xc
    from benchmarks.models import torch_resnet18, torch_small_resnet
    from benchmarks.run import machine, machine_tag
    from xai_core.adapters import from_torch

    rows = {}
    repeats = 1 if args.quick else args.repeats
    models = [("small", torch_small_resnet, 64, 4)]
    if not args.quick:
        models.insert(0, ("resnet18", lambda: torch_resnet18(num_classes=1000), 224, 2))
    for name, build, side, images in models:
        net = build()
        steps = 32
        xs_t = torch.rand(images, 3, side, side, generator=torch.Generator().manual_seed(0))
        m = from_torch(net, xs_t[:1])
        xs, ts = jnp.asarray(xs_t.numpy()), jnp.asarray([1, 7, 3, 5][:images])
        plain = jax.jit(jax.vmap(lambda x, t: xc.integrated_gradients(m.score(t), steps=steps,
                                                                      rule="gauss_legendre")(x)))
        hoisted = jax.jit(jax.vmap(hoisted_ig(m, steps)))
        row: dict[str, Any] = {}
        outs = {}
        for label, f in (("plain", plain), ("hoisted", hoisted)):
            outs[label] = f(xs, ts).block_until_ready()
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                f(xs, ts).block_until_ready()
                times.append(time.perf_counter() - t0)
            row[label] = float(np.median(times))
        scale = float(jnp.abs(outs["plain"]).max())
        row["max_rel_diff"] = float(jnp.abs(outs["plain"] - outs["hoisted"]).max()) / scale
        row["speedup"] = row["plain"] / row["hoisted"]
        rows[name] = row
        print(f"{name}: plain {row['plain']:.3f} s, hoisted {row['hoisted']:.3f} s, "
              f"speed-up {row['speedup']:.2f}x, max rel diff {row['max_rel_diff']:.1e}", flush=True)
    result = {"rows": rows, "machine": machine(), "repeats": repeats}
    out = args.out or RESULTS / f"first_layer-{machine_tag(result['machine'])}.json"
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
