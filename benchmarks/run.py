"""Attribution benchmarks: xai-core against Captum and against the floor, in one process.

    python -m benchmarks.run --suite cpu-small   # a tiny ResNet, seconds; CI runs it as a smoke test
    python -m benchmarks.run --suite cpu         # ResNet-18, 30-75 minutes on 2 cores
    python -m benchmarks.run --suite gpu         # ResNet-18, 8 images, on a CUDA machine

Writes ``benchmarks/results/<suite>-<machine>.json``, a markdown table (``.md``) and a
plot of time against IG steps (``.png``). Every implementation gets the same weights
(a torch ResNet-18 with random weights, through ``from_torch`` for xai-core), the same
inputs and targets; outputs are compared, and a row whose largest difference from
Captum exceeds 1e-4 (relative to Captum's largest value) is marked invalid, unless the
same workload run again in float64 by both agrees within 1e-4 (``float64_check``: on a
ResNet-18 at 224x224, Captum's float32 output is itself about 1e-3 from its float64 one).

Rows per workload:

- ``xai-core (torch)``: ``jax.jit(jax.vmap(method))`` on the ``from_torch`` model; compile
  time apart from the steady-state median.
- ``xai-core (flax)``: the same method on a ResNet-18 written in Flax (NHWC; own weights).
- ``captum (best)`` / ``captum (budget)``: Captum's batch (``internal_batch_size``,
  ``nt_samples_batch_size``, ``perturbations_per_eval``) is tuned over 1/4 to 8 times
  what xai-core's ``batch_size`` evaluates at once, and everything at once
  (``captum_batches``). ``best`` is the fastest; ``budget`` is the fastest whose
  added memory is within xai-core's. Gradients run with autograd; occlusion
  runs under Captum's own ``torch.no_grad``.
- ``floor (jax)`` / ``floor (torch)``: the N forward+backward passes (forwards only for
  occlusion) the method cannot avoid, batched the same way, and nothing else.

Memory per row: on CPU, the process's peak resident set size during the row's calls (Linux
``VmHWM``, reset through ``/proc/self/clear_refs`` after compiling) and ``added``, that peak
less the resident set when the calls started (memory a previous row freed but the allocator
kept counts as in use, so ``added`` can understate); on a GPU, the peak of the allocator of
the framework running the row (JAX's ``memory_stats``, ``torch.cuda.max_memory_allocated``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import xai_core as xc
from xai_core.core import chunking, xla
from xai_core.graph import fast_kernels

RESULTS = Path(__file__).resolve().parent / "results"
TOL = 1e-4


@dataclass(frozen=True)
class Suite:
    """What one suite runs; see ``SUITES``."""

    name: str
    width: int                   # ResNet-18's first-stage channels (64 is the real one)
    size: int                    # image side for IG and SmoothGrad
    images: int
    occlusion_size: int
    scaling_size: int            # image side for the step-scaling curve and time to accuracy
    classes: int = 1000
    ig_steps: int = 64
    sg_samples: int = 50
    sigma: float = 0.1
    window: int = 16
    stride: int = 8
    scaling_steps: tuple[int, ...] = (16, 64, 128, 256, 512)
    accuracy_steps: tuple[int, ...] = (8, 16, 32, 64, 128)
    memory_steps: int = 512
    repeats: int = 3
    batch_size: int = chunking.ACCELERATOR_BATCH_SIZE  # explicit: Captum is tuned around it
    occlusion_batch_size: int | None = None  # forwards only keep no activations: None = batch_size
    threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    xla_flags: str = ""          # added to XLA_FLAGS by main(), before JAX starts


CPU_FLAGS = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution,-reduce"
"""XLA:CPU runs convolutions with its own (Eigen) kernels instead of YNNPACK's: 1.3x faster
here (IG-64 on one 224x224 image, ResNet-18, 2 cores: 6.30 s -> 4.85 s; see README.md)."""


SUITES = {
    "cpu-small": Suite("cpu-small", width=8, size=32, images=2, occlusion_size=32, scaling_size=32,
                       classes=10, ig_steps=16, sg_samples=8, window=8, stride=4,
                       scaling_steps=(8, 16), accuracy_steps=(4, 16), memory_steps=64,
                       repeats=1, batch_size=8, xla_flags=CPU_FLAGS),
    # batch_size 2: on 2 CPU cores small chunks stay in cache (IG-64, 2 x 224x224, batch_size
    # 1/2/4/8/32: 3.5/3.7-4.2/4.4-4.7/5.2/5.9 s on an EPYC; 2/4/8: 7.3/7.0/7.1 s on a
    # Xeon; README.md); Captum is tuned around it. Occlusion (forwards only) at 8: batch 2 ran
    # 2.2 s against 1.9 s at 4-16 (5.0 against 2.1-2.2 s for the Flax model), 2 x 112x112.
    "cpu": Suite("cpu", width=64, size=224, images=2, occlusion_size=112, scaling_size=112,
                 scaling_steps=(16, 64, 256, 512), accuracy_steps=(16, 64, 256), batch_size=2,
                 occlusion_batch_size=8, xla_flags=CPU_FLAGS),
    "gpu": Suite("gpu", width=64, size=224, images=8, occlusion_size=224, scaling_size=224, repeats=5),
}


# --------------------------------------------------------------------------- measuring

def _status_mib(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    return float("nan")


def _on_gpu() -> bool:
    return jax.devices()[0].platform == "gpu"


def _memory_mib(torch_side: bool, peak: bool) -> float:
    """Current or peak memory: the process's resident set on CPU (``VmRSS`` / ``VmHWM``);
    on a GPU, the allocator of the framework that runs the row."""
    if not _on_gpu():
        return _status_mib("VmHWM" if peak else "VmRSS")
    if torch_side:
        import torch
        return (torch.cuda.max_memory_allocated() if peak else torch.cuda.memory_allocated()) / 2**20
    stats = jax.devices()[0].memory_stats() or {}
    return stats.get("peak_bytes_in_use" if peak else "bytes_in_use", float("nan")) / 2**20


def _reset_peak(torch_side: bool) -> None:
    if not _on_gpu():
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current VmRSS
        except OSError:
            pass
    elif torch_side:
        import torch
        torch.cuda.reset_peak_memory_stats()
    elif hasattr(jax.devices()[0], "reset_memory_stats"):  # not in every jaxlib
        jax.devices()[0].reset_memory_stats()


def measure(build: Callable[[], tuple[Callable[[], Any], float]], repeats: int,
            torch_side: bool = False) -> dict[str, Any]:
    """``build()`` returns ``(run, compile_seconds)``; ``run()`` returns the output as numpy.
    One warm-up call, then the median of ``repeats`` calls. ``peak_mib`` is the peak during
    the calls (compilation is before); ``added_mib`` that peak less the memory in use before."""
    run, compile_s = build()
    _reset_peak(torch_side)
    start = _memory_mib(torch_side, peak=False)
    t = time.perf_counter()
    out = run()
    first = time.perf_counter() - t
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = run()
        times.append(time.perf_counter() - t)
    times = times or [first]
    return {"seconds": statistics.median(times), "runs": times, "first_call": first,
            "compile": compile_s, "peak_mib": (peak := _memory_mib(torch_side, peak=True)),
            "added_mib": peak - start, "out": out}


def timed(call: Callable[[], Any], repeats: int) -> dict[str, Any]:
    """One warm-up call (it compiles), then the median of ``repeats`` (at least one) timed calls,
    with every run's seconds and the last output."""
    out = call()
    times = []
    for _ in range(max(repeats, 1)):
        t = time.perf_counter()
        out = call()
        times.append(time.perf_counter() - t)
    return {"seconds": float(np.median(times)), "runs": times, "out": out}


def jitted(fn: Callable[..., Any], *args: Any) -> tuple[Callable[[], Any], float]:
    t = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - t
    return (lambda: np.asarray(jax.block_until_ready(compiled(*args)))), compile_s


def torch_run(fn: Callable[[], Any]) -> tuple[Callable[[], Any], float]:
    return (lambda: np.asarray(fn().detach().cpu().numpy())), 0.0


def rel_diff(a: Any, b: Any) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / np.abs(b).max())


# --------------------------------------------------------------------------- setup

@dataclass
class Setup:
    """The models and inputs one suite shares across workloads."""

    suite: Suite
    net: Any                     # torch ResNet-18, eval mode
    flax: Any                    # from_flax(native Flax ResNet-18)
    device: Any                  # torch device
    models: dict[int, Any] = field(default_factory=dict)

    def model(self, size: int) -> Any:
        """``from_torch(net)`` for ``size x size`` images (converted once per size)."""
        if size not in self.models:
            import torch

            from xai_core.adapters import from_torch
            self.models[size] = from_torch(self.net.cpu(), torch.zeros(1, 3, size, size), name="resnet18")
            self.net.to(self.device)
        return self.models[size]

    def inputs(self, size: int, images: int) -> tuple[Any, jax.Array, jax.Array, list[int]]:
        import torch
        xs = torch.rand((images, 3, size, size), generator=torch.Generator().manual_seed(size))
        targets = [(7 * i + 3) % self.suite.classes for i in range(images)]
        return xs.to(self.device), jnp.asarray(xs.numpy()), jnp.asarray(targets), targets


def make_setup(suite: Suite) -> Setup:
    import torch

    from benchmarks.flax_resnet import init_resnet18
    from benchmarks.models import torch_resnet18
    from xai_core.adapters import from_flax

    torch.set_num_threads(suite.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    net = torch_resnet18(suite.classes, width=suite.width).to(device)
    module, variables = init_resnet18(jax.random.key(0), suite.size, suite.classes, suite.width)
    return Setup(suite, net, from_flax(module, variables), device)


# --------------------------------------------------------------------------- workloads

def _floor_jax(score_of: Callable[[jax.Array], Callable], n: int, batch_size: int,
               backward: bool) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """N evaluations (gradients, or forwards only) of each example, ``batch_size`` at a time.

    Convolutions (backward ones included) and pooling gradients are rewritten as in xai-core's
    loops (:func:`xai_core.graph.fast_kernels`); without them this loop would be 2x slower."""
    def one(x: jax.Array, t: jax.Array) -> jax.Array:
        f = fast_kernels(jax.grad(score_of(t)) if backward else score_of(t))
        copies = jnp.broadcast_to(x, (n, *x.shape))
        return jnp.sum(jax.lax.map(f, copies, batch_size=batch_size), axis=0)
    return jax.vmap(one)


def _floor_torch(net: Any, xs: Any, targets: list[int], n: int, batch: int, backward: bool) -> Any:
    """N forward (+backward) passes per example, ``batch`` examples' worth at a time.

    The backward pass is ``torch.autograd.grad`` with respect to the input only, as Captum
    does; ``.backward()`` would also compute the weights' gradients (about 1.7x the time)."""
    import torch
    rows = xs.repeat_interleave(n, dim=0)
    ts = torch.tensor(targets, device=xs.device).repeat_interleave(n)
    total = torch.zeros((), device=xs.device)
    for i in range(0, len(rows), batch):
        chunk = rows[i:i + batch]
        if backward:
            chunk = chunk.clone().requires_grad_(True)
            (grad,) = torch.autograd.grad(net(chunk).gather(1, ts[i:i + batch, None]).sum(), chunk)
            total = total + grad.sum()
        else:
            with torch.no_grad():
                total = total + net(chunk).gather(1, ts[i:i + batch, None]).sum()
    return total


def workload(setup: Setup, method: str, size: int, n: int, **options: Any) -> dict[str, Any]:
    """All rows of one workload (``method`` with ``n`` steps / samples)."""
    import torch
    from captum.attr import IntegratedGradients, NoiseTunnel, Occlusion, Saliency

    s, net = setup.suite, setup.net
    xs_t, xs, ts, targets = setup.inputs(size, s.images)
    xs_nhwc = jnp.moveaxis(xs, 1, -1)
    model = setup.model(size)
    b = s.batch_size
    rows: dict[str, dict[str, Any]] = {}

    if method == "ig":
        def ours(m: Any, xs: jax.Array) -> tuple[Callable, tuple]:
            return jax.vmap(lambda x, t: xc.integrated_gradients(
                m.score(t), steps=n, rule="gauss_legendre", batch_size=b)(x)), (xs, ts)
        def captum(batch: int, net: Any = net, xs_t: Any = xs_t) -> Callable[[], Any]:
            ig = IntegratedGradients(net)
            return lambda: ig.attribute(xs_t, target=targets, n_steps=n, method="gausslegendre",
                                        internal_batch_size=batch)
        backward, n_evals, budget, full = True, n, b * s.images, n * s.images  # rows of all examples
    elif method == "smoothgrad":
        z = np.random.default_rng(0).standard_normal((s.images, n, *xs.shape[1:])).astype(np.float32)
        z_t = torch.from_numpy(z.reshape(-1, *xs.shape[1:])).to(setup.device)

        def ours(m: Any, xs: jax.Array) -> tuple[Callable, tuple]:
            noise = jnp.asarray(z, xs.dtype) if xs.shape[1] == 3 else jnp.moveaxis(jnp.asarray(z), 2, -1)
            return jax.vmap(lambda x, t, z: xc.smoothgrad(
                xc.gradient(m.score(t)), samples=n, sigma=s.sigma, relative=False, batch_size=b)(
                    x, noise=z)), (xs, ts, noise)
        from captum.attr._core import noise_tunnel
        def captum(batch: int, net: Any = net, xs_t: Any = xs_t) -> Callable[[], Any]:
            sg = NoiseTunnel(Saliency(net))

            def call() -> Any:
                original = noise_tunnel.torch.normal
                noise_tunnel.torch.normal = _fixed_noise(z_t.to(xs_t.dtype), batch, s.images, n)
                try:
                    return sg.attribute(xs_t, nt_type="smoothgrad", nt_samples=n, stdevs=s.sigma,
                                        target=targets, abs=False, nt_samples_batch_size=batch)
                finally:
                    noise_tunnel.torch.normal = original
            return call
        backward, n_evals, budget, full = True, n, b, n  # Captum counts samples per example
    elif method == "occlusion":
        w, st, b = s.window, s.stride, s.occlusion_batch_size or b
        n = n_evals = (1 + -(-(size - w) // st)) ** 2

        def ours(m: Any, xs: jax.Array) -> tuple[Callable, tuple]:
            win, step = ((3, w, w), (3, st, st)) if xs.shape[1] == 3 else ((w, w, 3), (st, st, 3))
            return jax.vmap(lambda x, t: xc.occlusion(m.score(t), win, step, batch_size=b)(x)), (xs, ts)
        def captum(batch: int, net: Any = net, xs_t: Any = xs_t) -> Callable[[], Any]:
            occ = Occlusion(net)
            return lambda: occ.attribute(xs_t, sliding_window_shapes=(3, w, w), strides=(3, st, st),
                                         baselines=0.0, target=targets,
                                         perturbations_per_eval=batch)
        backward, budget, full = False, b, n_evals  # Captum counts windows, each over all examples
    else:
        raise ValueError(f"unknown method {method!r}")

    reps = s.repeats
    fn, args = ours(model, xs)
    rows["xai-core (torch)"] = measure(lambda: jitted(fn, *args), reps)
    fn, args = ours(setup.flax, xs_nhwc)
    rows["xai-core (flax)"] = measure(lambda: jitted(fn, *args), reps)
    tuning = {batch: measure(lambda batch=batch: torch_run(captum(batch)), reps, torch_side=True)
              for batch in captum_batches(budget, full)}
    best = min(tuning, key=lambda batch: tuning[batch]["seconds"])
    limit = rows["xai-core (torch)"]["added_mib"]
    fits = [batch for batch in tuning if tuning[batch]["added_mib"] <= limit]
    within = min(fits, key=lambda batch: tuning[batch]["seconds"]) if fits else min(tuning)
    rows["captum (best)"] = {**tuning[best], "internal_batch": best}
    rows["captum (budget)"] = {**tuning[within], "internal_batch": within, "fits_budget": bool(fits)}
    score_of = model.score
    rows["floor (jax)"] = measure(lambda: jitted(_floor_jax(score_of, n_evals, b, backward), xs, ts), reps)
    rows["floor (torch)"] = measure(
        lambda: torch_run(lambda: _floor_torch(net, xs_t, targets, n_evals, b * s.images, backward)), reps,
        torch_side=True)

    print(f"{method}: " + ", ".join(f"{k} {r['seconds']:.3f} s" for k, r in rows.items()),
          file=sys.stderr, flush=True)
    reference = rows["captum (best)"]["out"]
    check = float64_check(net, xs_t, xs, ours, captum, rows["captum (best)"]["internal_batch"], reference)
    for name, row in rows.items():
        out = row.pop("out")
        if name.startswith(("xai-core (torch)", "captum")):
            row["max_rel_diff_vs_captum"] = rel_diff(out, reference)
            row["valid"] = row["max_rel_diff_vs_captum"] <= TOL
    ours_row = rows["xai-core (torch)"]
    ours_row["max_rel_diff_vs_captum_float64"] = check["ours_vs_captum"]
    ours_row["valid"] = ours_row["valid"] or check["ours_vs_captum"] <= TOL
    ours_s = rows["xai-core (torch)"]["seconds"]
    summary = {"method": method, "size": size, "n": n, "evaluations_per_image": n_evals,
               "options": options, "rows": rows,
               "float64_check": check,
               "captum_tuning": {batch: {k: r[k] for k in ("seconds", "peak_mib", "added_mib")}
                                 for batch, r in tuning.items()},
               "ours_over_captum_best": ours_s / rows["captum (best)"]["seconds"],
               "ours_over_captum_budget": ours_s / rows["captum (budget)"]["seconds"],
               "ours_over_floor_jax": ours_s / rows["floor (jax)"]["seconds"],
               "flax_over_floor_jax": rows["xai-core (flax)"]["seconds"] / rows["floor (jax)"]["seconds"],
               "floor_jax_over_floor_torch": rows["floor (jax)"]["seconds"] / rows["floor (torch)"]["seconds"]}
    return summary


def float64_copy(net: Any, shape: tuple[int, ...]) -> tuple[Any, Any]:
    """A float64 copy of the torch ``net`` (on ``net``'s device) and ``from_torch`` of it for
    one example of ``shape``; call the model inside ``jax.enable_x64(True)``."""
    import copy

    import torch

    from xai_core.adapters import from_torch
    device = next(net.parameters()).device
    net64 = copy.deepcopy(net).double()
    with jax.enable_x64(True):
        m64 = from_torch(net64.cpu(), torch.zeros(1, *shape, dtype=torch.float64))
    return net64.to(device), m64


def float64_check(net: Any, xs_t: Any, xs: jax.Array, ours: Callable[[Any, jax.Array], tuple[Callable, tuple]],
                  captum: Callable[..., Callable[[], Any]], batch: int, captum32: Any) -> dict[str, float]:
    """The workload once more in float64: xai-core on ``from_torch`` of a float64 copy of the
    net against Captum on that copy, and how far Captum's own float32 output (``captum32``)
    is from its float64 one. Through a deep ReLU network, float32 rounding flips a few ReLU /
    max-pool branches and moves those elements' gradients; the float64 run tells that apart
    from a difference in what is computed. A row is valid if either difference is within ``TOL``.
    Captum rounds a few values to float32 even for float64 inputs (IG's step weights,
    ``torch.tensor(step_sizes).float()``; occlusion's ``single_attrib.float() / weight``), so
    float64 agreement is about 1e-8 for those methods, not 1e-15."""
    net64, m64 = float64_copy(net, xs.shape[1:])
    ref64 = np.asarray(captum(batch, net64, xs_t.double())().detach().cpu().numpy())
    with jax.enable_x64(True):
        fn, args = ours(m64, xs.astype(jnp.float64))
        out = np.asarray(jax.jit(fn)(*args))
    return {"ours_vs_captum": rel_diff(out, ref64), "captum32_vs_captum64": rel_diff(captum32, ref64)}


def captum_batches(budget: int, full: int) -> list[int]:
    """Captum batch sizes tried (its units): 1/4, 1/2, 1, 2, 4 and 8 times our budget, and
    everything at once. ``captum (best)`` is the fastest; ``captum (budget)`` the fastest whose
    added memory (peak less what was in use before) is within ours (the smallest if none is)."""
    return sorted({min(max(1, k), full) for k in (budget // 4, budget // 2, budget, 2 * budget,
                                                   4 * budget, 8 * budget, full)})


def _fixed_noise(z: Any, batch_samples: int, images: int, n: int) -> Callable[[Any, Any], Any]:
    """Stand-in for ``torch.normal(0, std)`` in Captum's NoiseTunnel that hands out the
    fixed draws ``z`` (example-major), chunk by chunk when Captum splits the samples."""
    import torch
    calls = iter(range(0, n, batch_samples))

    def normal(mean: Any, std: Any) -> Any:
        start = next(calls)
        per = std.shape[0] // images
        rows = torch.cat([z[i * n + start:i * n + start + per] for i in range(images)])
        return rows * std
    return normal


# --------------------------------------------------------------------------- curves and checks

def scaling(setup: Setup, captum_batch: int) -> dict[str, Any]:
    """IG time against steps at ``scaling_size``: xai-core, the JAX floor, and Captum at
    ``captum_batch`` (the batch that fit our memory in the IG workload)."""
    import torch  # noqa: F401  (Captum below)
    from captum.attr import IntegratedGradients
    s = setup.suite
    xs_t, xs, ts, targets = setup.inputs(s.scaling_size, s.images)
    m = setup.model(s.scaling_size)
    ig = IntegratedGradients(setup.net)
    curve: dict[str, list[float]] = {"xai-core (torch)": [], "captum (budget)": [], "floor (jax)": []}
    for n in s.scaling_steps:
        fn = jax.vmap(lambda x, t, n=n: xc.integrated_gradients(
            m.score(t), steps=n, rule="gauss_legendre", batch_size=s.batch_size)(x))
        curve["xai-core (torch)"].append(measure(lambda fn=fn: jitted(fn, xs, ts), 1)["seconds"])
        curve["captum (budget)"].append(measure(lambda n=n: torch_run(lambda: ig.attribute(
            xs_t, target=targets, n_steps=n, method="gausslegendre",
            internal_batch_size=captum_batch)), 1, torch_side=True)["seconds"])
        floor = _floor_jax(m.score, n, s.batch_size, True)
        curve["floor (jax)"].append(measure(lambda floor=floor: jitted(floor, xs, ts), 1)["seconds"])
    return {"size": s.scaling_size, "steps": list(s.scaling_steps), "captum_batch": captum_batch,
            "seconds": curve}


def memory(setup: Setup) -> dict[str, Any]:
    """IG with many steps on one image: XLA's temporary memory unchunked (compiled only)
    against chunked at the default ``batch_size`` (also run); and what chunking costs at
    IG-64, at the default and at the suite's ``batch_size``."""
    s = setup.suite
    _, xs, ts, _ = setup.inputs(s.size, 1)
    x, score = xs[0], setup.model(s.size).score(int(ts[0]))
    default = chunking.resolve_batch_size(xc.DEFAULT_BATCH_SIZE, [x])  # what "auto" picks here

    def ig(steps: int, batch_size: int | None) -> Any:
        return jax.jit(xc.integrated_gradients(score, steps=steps, batch_size=batch_size)).lower(x).compile()

    def temp_mib(compiled: Any) -> float:
        return compiled.memory_analysis().temp_size_in_bytes / 2**20

    unchunked = temp_mib(ig(s.memory_steps, None))
    chunked = ig(s.memory_steps, default)
    run = measure(lambda: ((lambda: np.asarray(chunked(x))), 0.0), 0)
    cost = {bs: measure(lambda bs=bs: jitted(xc.integrated_gradients(
        score, steps=s.ig_steps, batch_size=bs), x), s.repeats)["seconds"]
        for bs in (None, default, s.batch_size)}
    return {"steps": s.memory_steps, "batch_size": default,
            "unchunked_temp_mib": unchunked, "chunked_temp_mib": temp_mib(chunked),
            "chunked_peak_mib": run["peak_mib"], "chunked_seconds": run["first_call"],
            f"ig{s.ig_steps}_unchunked_seconds": cost[None],
            f"ig{s.ig_steps}_chunked_seconds": cost[default],
            "chunking_time_ratio": cost[default] / cost[None],
            "suite_batch_size": s.batch_size,
            "suite_batch_time_ratio": cost[s.batch_size] / cost[None]}


def time_to_accuracy(setup: Setup) -> dict[str, Any]:
    """Seconds and IG convergence delta (relative to f(x) - f(0)) per rule and step count,
    on one image at ``scaling_size``; Captum's default (Gauss-Legendre, 50 steps) beside it.

    Seconds are float32 runs. The delta is the rule's quadrature error, so it is measured on
    the same IG in float64 (a float64 copy of the net), where rounding does not enter (on
    ResNet-18 at 112x112, float32 moved it by up to 1.3e-4). ``delta_float32`` keeps the
    float32 run's own delta."""
    from captum.attr import IntegratedGradients
    s = setup.suite
    xs_t, xs, ts, targets = setup.inputs(s.scaling_size, 1)
    x, score = xs[0], setup.model(s.scaling_size).score(int(ts[0]))
    net64, m64 = float64_copy(setup.net, x.shape)
    with jax.enable_x64(True):
        x64, score64 = x.astype(jnp.float64), m64.score(int(ts[0]))
        change = float(score64(x64) - score64(jnp.zeros_like(x64)))
    change32 = float(score(x) - score(jnp.zeros_like(x)))

    def delta(attribution: Any, change_here: float) -> float:
        """|sum(a) - (f(x) - f(0))| / |f(x) - f(0)|: ``xc.completeness_gap`` without
        evaluating f again for every rule and step count."""
        return abs(float(jnp.sum(jnp.asarray(attribution))) - change_here) / abs(change)

    table: dict[str, dict[str, Any]] = {}
    for rule in xc.RULES:
        table[rule] = {}
        for n in s.accuracy_steps:
            fn = xc.integrated_gradients(score, steps=n, rule=rule, batch_size=s.batch_size)
            r = measure(lambda fn=fn: jitted(fn, x), 1)
            with jax.enable_x64(True):
                a64 = jax.jit(xc.integrated_gradients(score64, steps=n, rule=rule, batch_size=s.batch_size))(x64)
                delta64 = delta(a64, change)
            table[rule][n] = {"seconds": r["seconds"], "delta": delta64, "delta_float32": delta(r["out"], change32)}
    ig = IntegratedGradients(setup.net)
    t = time.perf_counter()
    ig.attribute(xs_t, target=targets, n_steps=50)
    seconds = time.perf_counter() - t
    _, delta64 = IntegratedGradients(net64).attribute(xs_t.double(), target=targets, n_steps=50,
                                                      return_convergence_delta=True)
    captum = {"seconds": seconds, "delta": abs(float(delta64[0]) / change)}
    reached = {rule: next((v["seconds"] for v in rows.values() if v["delta"] <= 1e-3), None)
               for rule, rows in table.items()}
    return {"size": s.scaling_size, "score_change": change, "rules": table,
            "captum_gauss_legendre_50": captum, "seconds_to_1e-3": reached}


# --------------------------------------------------------------------------- report

def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or what ``platform`` says where there is none."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


def machine() -> dict[str, Any]:
    import captum
    import torch
    dev = jax.devices()[0]
    return {"cpu": cpu_name(), "cores": os.cpu_count(), "jax_device": dev.device_kind,
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "versions": {"xai_core": xc.__version__, "jax": jax.__version__, "torch": torch.__version__,
                         "captum": captum.__version__, "python": platform.python_version()},
            "load_average_at_start": os.getloadavg()}


def machine_tag(info: dict[str, Any]) -> str:
    """The results files' suffix: the GPU (``h100``), or the CPU family and core count
    (``epyc2``, ``xeon2``), so results from different machines sit side by side."""
    if info["gpu"]:
        return info["gpu"].replace("NVIDIA ", "").split()[0].lower()
    words = [w for w in re.sub(r"\(.*?\)", "", info["cpu"]).split()
             if w.lower() not in ("amd", "intel", "processor", "cpu")]
    return f"{words[0].lower() if words else 'cpu'}{info['cores']}"


def markdown(result: dict[str, Any]) -> str:
    s, info = result["suite"], result["machine"]
    lines = [f"# Suite `{s['name']}` on {info['gpu'] or info['cpu']} ({info['cores']} cores)", "",
             f"ResNet-18 (width {s['width']}, {s['classes']} classes, random weights), float32, "
             f"{s['images']} images, batch_size {s['batch_size']}, torch threads {s['threads']}, "
             f"XLA_FLAGS `{result['xla_flags_in_effect'] or '(none)'}`; "
             f"median of {s['repeats']} runs after a warm-up. Versions: "
             + ", ".join(f"{k} {v}" for k, v in info["versions"].items()) + ".", ""]
    for w in result["workloads"]:
        lines += [f"## {w['method']} (n={w['n']}, {w['size']}x{w['size']}, "
                  f"{w['evaluations_per_image']} evaluations per image)", "",
                  "| implementation | seconds | compile s | peak MiB | added MiB | max rel diff vs Captum |",
                  "|---|---:|---:|---:|---:|---:|"]
        for name, r in w["rows"].items():
            d, d64 = r.get("max_rel_diff_vs_captum"), r.get("max_rel_diff_vs_captum_float64")
            diff = "-" if d is None else f"{d:.1e}" + ("" if d64 is None else f" (float64: {d64:.1e})") + (
                "" if r["valid"] else " INVALID")
            if "internal_batch" in r:
                name += f", batch {r['internal_batch']}" + ("" if r.get("fits_budget", True) else " (over budget)")
            lines.append(f"| {name} | {r['seconds']:.3f} | {r['compile']:.1f} | {r['peak_mib']:.0f} | "
                         f"{r['added_mib']:.0f} | {diff} |")
        check = w["float64_check"]
        lines += ["", f"Float64 check: xai-core against Captum {check['ours_vs_captum']:.1e}; Captum's "
                  f"float32 output against its float64 one {check['captum32_vs_captum64']:.1e}."]
        tried = ", ".join(f"{k}: {v['seconds']:.2f} s / {v['added_mib']:.0f} MiB added"
                          for k, v in w["captum_tuning"].items())
        lines += ["", f"Captum batches tried: {tried}.", "",
                  f"xai-core / Captum best: **{w['ours_over_captum_best']:.2f}**; / Captum at the "
                  f"same budget: {w['ours_over_captum_budget']:.2f}; / JAX floor: "
                  f"**{w['ours_over_floor_jax']:.2f}** (Flax model: {w['flax_over_floor_jax']:.2f}); "
                  f"JAX floor / torch floor: {w['floor_jax_over_floor_torch']:.2f}.", ""]
    mem = result["memory"]
    lines += ["## Memory", "",
              f"IG with {mem['steps']} steps on one {s['size']}x{s['size']} image: XLA temporaries "
              f"{mem['unchunked_temp_mib']:.0f} MiB unchunked (compiled only) against "
              f"{mem['chunked_temp_mib']:.0f} MiB chunked at batch_size {mem['batch_size']}; the "
              f"chunked run peaked at {mem['chunked_peak_mib']:.0f} MiB and took "
              f"{mem['chunked_seconds']:.1f} s. At IG-{s['ig_steps']}, chunking costs "
              f"{mem['chunking_time_ratio']:.2f}x the unchunked time at batch_size {mem['batch_size']}, "
              f"{mem['suite_batch_time_ratio']:.2f}x at the suite's {mem['suite_batch_size']}.", ""]
    acc = result["time_to_accuracy"]
    steps = s["accuracy_steps"]
    f32 = [v["delta_float32"] for rows in acc["rules"].values() for v in rows.values()]
    lines += [f"## Time to accuracy (IG, one {acc['size']}x{acc['size']} image)", "",
              "Relative convergence delta |sum(a) - (f(x) - f(0))| / |f(x) - f(0)| of the same IG in "
              "float64 (the rule's error), and seconds of the float32 run. The float32 runs' own "
              f"deltas range {min(f32):.1e} to {max(f32):.1e}.", "",
              "| rule | " + " | ".join(f"{n} steps" for n in steps) + " | s to 1e-3 |",
              "|---|" + "---:|" * (len(steps) + 1)]
    for rule, rows in acc["rules"].items():
        cells = [f"{rows[n]['delta']:.1e} / {rows[n]['seconds']:.2f} s" for n in steps]
        reached = acc["seconds_to_1e-3"][rule]
        lines.append(f"| {rule} | " + " | ".join(cells) + f" | {'not reached' if reached is None else f'{reached:.2f}'} |")
    c = acc["captum_gauss_legendre_50"]
    lines += ["", f"Captum's default (Gauss-Legendre, 50 steps): delta {c['delta']:.1e} in {c['seconds']:.2f} s.", ""]
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    sc = result["scaling"]
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, secs in sc["seconds"].items():
        label = f"{name}, batch {sc['captum_batch']}" if name.startswith("captum") else name
        ax.plot(sc["steps"], secs, marker="o", label=label)
    ax.set_xscale("log")
    ax.set_xticks(sc["steps"], [str(n) for n in sc["steps"]])
    ax.minorticks_off()
    ax.set(yscale="log", xlabel="IG steps", ylabel="seconds",
           title=f"IG on ResNet-18, {result['suite']['images']} images at {sc['size']}x{sc['size']}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run(suite: Suite, out_dir: Path = RESULTS) -> dict[str, Any]:
    """Run a suite; write its JSON, markdown and PNG into ``out_dir``; return the result."""
    info = machine()
    setup = make_setup(suite)
    s = suite
    ig = workload(setup, "ig", s.size, s.ig_steps, rule="gauss_legendre")
    result: dict[str, Any] = {"suite": asdict(s), "machine": info, "dtype": "float32",
                              "xla_flags_in_effect": os.environ.get("XLA_FLAGS", ""), "workloads": [
        ig,
        workload(setup, "smoothgrad", s.size, s.sg_samples, sigma=s.sigma),
        workload(setup, "occlusion", s.occlusion_size, 0, window=s.window, stride=s.stride),  # n: windows
    ]}
    result["scaling"] = scaling(setup, ig["rows"]["captum (budget)"]["internal_batch"])
    result["memory"] = memory(setup)
    result["time_to_accuracy"] = time_to_accuracy(setup)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / f"{s.name}-{machine_tag(info)}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1, default=float))
    stem.with_suffix(".md").write_text(markdown(result))
    plot(result, stem.with_suffix(".png"))
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", choices=sorted(SUITES), default="cpu-small")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--xla-flags", default=None,
                        help="flags added to XLA_FLAGS (default: the suite's; '' for none)")
    args = parser.parse_args(argv)
    suite = SUITES[args.suite]
    if args.xla_flags is not None:
        suite = replace(suite, xla_flags=args.xla_flags)
    # Read when JAX starts its backend, which nothing has done yet: the suite's flags replace
    # the default `import xai_core` added (xai_core.core.xla), so --xla-flags '' runs XLA's own.
    inherited = os.environ.get("XLA_FLAGS", "").replace(xla.FLAG, "").strip()
    os.environ["XLA_FLAGS"] = f"{inherited} {suite.xla_flags}".strip()
    result = run(suite, args.out)
    print(markdown(result))


if __name__ == "__main__":
    main()
