"""Peak memory of IG with many steps on ResNet-18 at 224x224x3, chunked against unchunked.

    python -m benchmarks.ig_memory --steps 512 --batch-size 32

Runs the chunked IG (one image) in this process and reports its peak RSS and time; for the
unchunked program (all steps in one batch) it only compiles and reports XLA's own estimate of
its temporary buffers, since running it would need tens of GiB.
"""

from __future__ import annotations

import argparse
import resource
import time

import jax
import jax.numpy as jnp

import xai_core as xc
from xai_core.core import chunking
from benchmarks.flax_resnet import init_resnet18


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=512)
    parser.add_argument("--batch-size", type=lambda v: v if v == "auto" else int(v), default=xc.DEFAULT_BATCH_SIZE,
                        help="an int, or 'auto' (the default: chosen from the input and the device)")
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args()

    model, variables = init_resnet18(jax.random.key(0), args.size)
    score = lambda x: model.apply(variables, x[None])[0, 7]  # noqa: E731
    x = jax.random.uniform(jax.random.key(1), (args.size, args.size, 3))

    def ig(batch_size: int | str | None):  # noqa: ANN202
        return jax.jit(xc.integrated_gradients(score, steps=args.steps, batch_size=batch_size))

    gib = 2.0**30
    unchunked = ig(None).lower(x).compile().memory_analysis()
    chunked_estimate = ig(args.batch_size).lower(x).compile().memory_analysis()
    start = time.perf_counter()
    a = ig(args.batch_size)(x).block_until_ready()
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / gib
    gap = float(xc.completeness_gap(score, x, a)) / float(score(x) - score(jnp.zeros_like(x)))
    print(f"device: {jax.devices()[0].device_kind}, IG steps={args.steps}, input {args.size}x{args.size}x3, ResNet-18")
    print(f"unchunked (batch_size=None): XLA temp buffers {unchunked.temp_size_in_bytes / gib:.2f} GiB (compiled, not run)")
    resolved = chunking.resolve_batch_size(args.batch_size, [x])
    print(f"chunked (batch_size={args.batch_size}: {resolved}): XLA temp buffers {chunked_estimate.temp_size_in_bytes / gib:.2f} GiB")
    print(f"chunked run: {seconds:.1f} s (incl. compile), process peak RSS {peak:.2f} GiB, relative completeness gap {gap:.2e}")


if __name__ == "__main__":
    main()
