"""xai_core.metrics against Quantus 0.6 (and Captum's two metrics) for speed, on the same torch
weights, images, targets, maps and random draws.

    python -m benchmarks.metrics                 # 16 x 3x64x64 images, about 1.5 minutes on 2 cores
    python -m benchmarks.metrics --quick         # 16 x 3x16x16 images, about 20 s: the smoke run the tests use

Model: a small CNN in torch (conv 3->16 3x3, ReLU, conv 16->32 3x3, ReLU, 4x4 adaptive average
pool, linear 512->10; padding 1, Kaiming init, seeded, eval mode), converted with
``from_torch`` for ours (one ``(C, H, W)`` example per call). The maps are the plain gradient of
the predicted class's logit, computed once in torch and handed to both sides; Quantus gets
channel-first float32 arrays, ``softmax=False`` (logits), ``normalise=False, abs=False`` unless
the row says otherwise, everything in one batch.

Each row is one metric on the 16 images: the peer's seconds (one call of its metric object),
ours (``jax.jit(jax.vmap(metric))`` over the images with a per-example traced target,
``m.score(t)``; compiled first with ``lower().compile()``, the compilation reported apart, then
the compiled call timed with ``block_until_ready``), both the median of ``--repeats`` calls
after a warm-up, the speed ratio ``peer seconds / ours`` (above 1: ours is faster) and the
largest absolute difference of the per-image values where both compute the same thing (the
peer's own draws recorded or fixed noise handed to it, as in tests/test_metrics_crosscheck.py):

- PixelFlipping (every element a feature, ``features_in_step`` for 96 steps, baseline 0):
  the curve without its first point (Quantus's) against ``pixel_flipping``'s;
- RegionPerturbation (non-overlapping ``patch`` cells, all 64 of them, MoRF, baseline 0): its
  drops ``f(x) - f(x^(k))`` against ``region_perturbation``'s scores turned into drops;
- FaithfulnessCorrelation (100 runs, subsets of 224, Pearson, baseline 0): Quantus's
  ``np.random.choice`` draws (seed 0) recorded and handed to ours as ``subsets``;
- MaxSensitivity (10 samples, a torch gradient ``explain_func``, fixed U[-0.02, 0.02] noise)
  against ``sensitivity_max(xc.gradient(...), relative=True, noise=...)``;
- Captum ``infidelity`` (10 fixed N(0, 0.1^2) perturbations) and ``sensitivity_max``
  (``Saliency``, the MaxSensitivity row's noise; ours is that row's compiled call);
- Sparseness and Complexity (``abs=True``: both work on ``|a|``), PointingGame and
  RelevanceMassAccuracy (the channel-summed map, a random rectangle per image; ours
  ``part="all"``, Quantus's signed mass);
- MPRT (cascading, top-down, Spearman of ``|a| / max |a|``): ours gets Quantus's randomized
  weights (``randomized=``), so the values compare too;
- RandomLogit (SSIM of the flattened maps; the other class as Quantus draws it, seed 42).

Floors, torch against ours on the same batch: one forward, one gradient with a per-example
traced target and one with a single static target (a static target's cotangent is the same for
every image, so XLA runs the average pool's backward, a ``reduce_window``, once instead of 16
times). The perturbation rows are made of these evaluations: where a peer's loop costs little
beyond them, the ratio is about the floors' ratio.

The peers run at torch thread counts 1 and every core (``--torch-threads``; 1 only with
``--quick``) and keep the faster (a count whose warm-up is 3x slower than the best so far is
not repeated): on a shared 2-core machine whose other core is busy, torch's
2 OpenMP threads made this CNN's forward 50-100x slower than 1 thread (70 ms against 0.8 ms),
and when it is idle 2 threads are faster. XLA keeps its own thread pool (every core).

Speed is never asserted: the 2-core machines these sessions get are shared, so the load
average at start and end is recorded; read the ratios with that in mind. Writes
``results/metrics-<machine>.json`` (every parameter, the machine, library versions, per-row
times and differences) and a markdown table beside it, and prints the table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]
N_IMAGES, N_CLASSES = 16, 10


def import_quantus() -> Any:
    """Quantus imports zennit, which needs torchvision at import: the tests' stub stands in for it."""
    sys.path.insert(0, str(REPO / "tests"))
    from lrp_refs import import_zennit

    import_zennit()
    import quantus

    return quantus


def small_cnn(seed: int = 0) -> Any:
    import torch
    from torch import nn

    from benchmarks.models import _initialised

    torch.manual_seed(seed)
    return _initialised(nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(32 * 16, N_CLASSES)))


def timed(call: Callable[[], Any], repeats: int, give_up: float = float("inf")) -> tuple[float, list[float], Any]:
    """One warm-up ``call()``, then the median of ``repeats`` calls; the last output. A warm-up
    slower than ``give_up`` seconds is returned alone (a setting that lost already)."""
    t = time.perf_counter()
    out = call()
    if (first := time.perf_counter() - t) > give_up:
        return first, [first], out
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = call()
        times.append(time.perf_counter() - t)
    return statistics.median(times), times, out


def ours(fn: Callable[..., Any], *args: Any, repeats: int) -> dict[str, Any]:
    """``jax.jit(jax.vmap(fn))`` over the images: compiled apart, then the compiled call timed."""
    import jax
    import numpy as np

    t = time.perf_counter()
    compiled = jax.jit(jax.vmap(fn)).lower(*args).compile()
    compile_s = time.perf_counter() - t
    seconds, runs, out = timed(lambda: jax.tree.map(np.asarray, jax.block_until_ready(compiled(*args))), repeats)
    return {"seconds": seconds, "runs": runs, "compile": compile_s, "out": out}


def _jits(fn: Callable[..., Any], *args: Any) -> bool:
    """Whether ``jax.jit(fn)(*args)`` traces (False on a ConcretizationTypeError)."""
    import jax

    try:
        jax.jit(fn).lower(*args)
        return True
    except jax.errors.ConcretizationTypeError:
        return False


def run(quick: bool, repeats: int, threads: list[int]) -> dict[str, Any]:
    import numpy as np
    import torch

    import xai_core as xc  # first: its XLA flag is read when JAX starts
    import jax
    import jax.numpy as jnp
    from xai_core import metrics as xm
    from xai_core.adapters import from_torch

    quantus = import_quantus()
    import captum
    import captum.attr
    import captum.metrics
    from quantus.helpers.model.pytorch_model import PyTorchModel

    warnings.filterwarnings("ignore")
    size = 16 if quick else 64
    shape = (3, size, size)
    n_features = int(np.prod(shape))
    steps = 96
    features_in_step = n_features // steps  # 3 * 64 * 64 / 96 = 128 (quick: 8)
    patch = size // 8  # 64 cells
    runs, subset_size, samples, radius, sigma = 100, 224, 10, 0.02, 0.1

    net = small_cnn()
    x_t = torch.randn((N_IMAGES, *shape), generator=torch.Generator().manual_seed(1))
    x = x_t.numpy()
    with torch.no_grad():
        y = net(x_t).argmax(1).numpy()

    def torch_gradient(model: Any, inputs: Any, targets: Any, **kwargs: Any) -> np.ndarray:
        """Quantus's ``explain_func``: the plain gradient of the target logit."""
        with torch.enable_grad():
            xi = torch.tensor(np.asarray(inputs), dtype=torch.float32, requires_grad=True)
            out = model(xi)
            out[torch.arange(len(xi)), torch.as_tensor(np.asarray(targets)).long()].sum().backward()
        return xi.grad.detach().numpy()

    a = torch_gradient(net, x, y)  # the maps both sides get
    m = from_torch(net, torch.zeros(1, *shape))
    X, A, T = jnp.asarray(x), jnp.asarray(a), jnp.asarray(y, jnp.int32)
    rng = np.random.default_rng(2)
    rows: dict[str, dict[str, Any]] = {}

    def row(name: str, peer: str, peer_call: Callable[[], Any], mine: dict[str, Any],
            compare: Callable[[Any, Any], tuple[Any, Any]] | None, note: str = "") -> None:
        by_threads = {}
        for n in threads:  # the peer's best thread count (see the module doc)
            torch.set_num_threads(n)
            by_threads[n] = timed(peer_call, repeats, 3 * min((v[0] for v in by_threads.values()), default=math.inf))
        best = min(by_threads, key=lambda n: by_threads[n][0])
        seconds, times, theirs = by_threads[best]
        diff = None
        if compare is not None:
            u, v = compare(mine["out"], theirs)
            diff = float(np.max(np.abs(np.asarray(u, np.float64) - np.asarray(v, np.float64))))
        rows[name] = {"peer": peer, "peer_seconds": seconds, "peer_runs": times, "peer_threads": best,
                      "peer_seconds_by_threads": {str(n): v[0] for n, v in by_threads.items()},
                      "ours_seconds": mine["seconds"],
                      "ours_runs": mine["runs"], "ours_compile": mine["compile"], "ratio": seconds / mine["seconds"],
                      "max_abs_diff": diff, "note": note}
        print(f"{name:>26}: {peer} {seconds:.4f} s ({best} threads), ours {mine['seconds']:.4f} s "
              f"(compile {mine['compile']:.2f} s), "
              f"ratio {seconds / mine['seconds']:.1f}, diff {'-' if diff is None else f'{diff:.1e}'}", flush=True)

    common = dict(disable_warnings=True, normalise=False, abs=False)
    call = dict(model=net, x_batch=x, y_batch=y, channel_first=True, softmax=False, batch_size=N_IMAGES)

    # --- faithfulness curves
    pf = quantus.PixelFlipping(features_in_step=features_in_step, perturb_baseline=0.0, **common)
    mine = ours(lambda xi, ai, t: xm.pixel_flipping(m.score(t), xi, ai, features_in_step=features_in_step,
                                                    baseline=0.0, channel_axis=None), X, A, T, repeats=repeats)
    row("PixelFlipping", "quantus", lambda: np.asarray(pf(a_batch=a, **call)), mine,
        lambda o, q: (o[:, 1:], q), f"{steps} steps of {features_in_step} elements; the curve")

    rp = quantus.RegionPerturbation(patch_size=patch, regions_evaluation=64, order="morf", perturb_baseline=0.0,
                                    **common)

    # region_perturbation grids an (H, W, C) image: the CHW model gets a channels-last view. Where
    # region_perturbation fails under jax.jit (int() of a traced grid: ConcretizationTypeError, as
    # at commit 36d7f79), its own body runs instead: xm.curve on a grid made outside the trace.
    cells = np.asarray(xm.grid_segments((size, size), cell=patch))
    n_cells = int(cells.max()) + 1
    hwc = X[0].transpose(1, 2, 0)
    region_jit_ok = _jits(lambda xi: xm.region_perturbation(lambda z: z.sum(), xi, xi, patch=patch), hwc)

    def region(xi: Any, ai: Any, t: Any) -> Any:
        score = lambda xh: m.score(t)(jnp.moveaxis(xh, -1, 0))  # noqa: E731
        xh, ah = jnp.moveaxis(xi, 0, -1), jnp.moveaxis(ai, 0, -1)
        if region_jit_ok:
            return xm.region_perturbation(score, xh, ah, patch=patch, baseline=0.0)
        return xm.curve(score, xh, ah, np.arange(n_cells + 1), baseline=0.0, segments=cells, n_segments=n_cells,
                        metric="region_perturbation")

    eager = xm.region_perturbation(lambda xh: m.score(int(y[0]))(jnp.moveaxis(xh, -1, 0)), hwc,
                                   A[0].transpose(1, 2, 0), patch=patch, baseline=0.0)
    mine = ours(region, X, A, T, repeats=repeats)
    region_same = float(np.max(np.abs(np.asarray(eager) - mine["out"][0])))
    row("RegionPerturbation", "quantus", lambda: np.asarray(rp(a_batch=a, **call)), mine,
        lambda o, q: (o[:, :1] - o[:, 1:], q),
        f"64 cells of {patch}x{patch}; the drops"
        + ("" if region_jit_ok else "; ours: xm.curve on the grid (region_perturbation fails under jit)"))
    rows["RegionPerturbation"]["eager_region_perturbation_vs_ours"] = region_same
    rows["RegionPerturbation"]["region_perturbation_jits"] = region_jit_ok

    # --- faithfulness correlation: Quantus's draws (seed 0) recorded, then handed to ours
    fc = quantus.FaithfulnessCorrelation(nr_runs=runs, subset_size=subset_size, perturb_baseline=0.0,
                                         return_aggregate=False, **common)
    draws: list[np.ndarray] = []
    choice = np.random.choice

    def recording(*args: Any, **kwargs: Any) -> Any:
        out = choice(*args, **kwargs)
        draws.append(np.asarray(out))
        return out

    np.random.choice = recording
    try:
        np.random.seed(0)
        fc(a_batch=a, **call)
    finally:
        np.random.choice = choice
    assert len(draws) == runs * N_IMAGES
    subsets = jnp.asarray(np.stack([np.stack(draws[i::N_IMAGES]) for i in range(N_IMAGES)]), jnp.int32)

    def faithfulness_call() -> Any:
        np.random.seed(0)  # the recorded draws again
        return np.asarray(fc(a_batch=a, **call))

    mine = ours(lambda xi, ai, t, s: xm.faithfulness_correlation(m.score(t), xi, ai, subsets=s, baseline=0.0,
                                                                 channel_axis=None), X, A, T, subsets, repeats=repeats)
    row("FaithfulnessCorrelation", "quantus", faithfulness_call, mine, lambda o, q: (o, q),
        f"{runs} runs of {subset_size} elements, Pearson; Quantus's draws handed to ours")

    # --- robustness: fixed noise, (samples, N, *shape) for Quantus, example-major for ours and Captum
    noise = rng.uniform(-radius, radius, size=(samples, N_IMAGES, *shape)).astype(np.float32)

    class FixedNoise:
        """Quantus's ``perturb_func``: called once per sample with the batch flattened, in order."""

        def __init__(self) -> None:
            self.calls = 0

        def __call__(self, arr: np.ndarray, indices: Any = None, **kwargs: Any) -> np.ndarray:
            out = arr + noise[self.calls % samples].reshape(arr.shape)
            self.calls += 1
            return out

    ms = quantus.MaxSensitivity(nr_samples=samples, perturb_func=FixedNoise(),
                                return_nan_when_prediction_changes=False, **common)
    N = jnp.asarray(noise.transpose(1, 0, 2, 3, 4))
    sens = ours(lambda xi, t, d: xm.sensitivity_max(xc.gradient(m.score(t)), xi, noise=d, relative=True), X, T, N,
                repeats=repeats)
    row("MaxSensitivity", "quantus", lambda: np.asarray(ms(a_batch=a, explain_func=torch_gradient, **call)), sens,
        lambda o, q: (o, q), f"{samples} samples, torch gradient explain_func, relative=True")

    perturbed = torch.tensor(x[:, None] + noise.transpose(1, 0, 2, 3, 4)).reshape(-1, *shape)
    saliency = captum.attr.Saliency(net)
    row("sensitivity_max (Captum)", "captum", lambda: captum.metrics.sensitivity_max(
        saliency.attribute, x_t, perturb_func=lambda inputs, radius: perturbed, n_perturb_samples=samples,
        target=torch.tensor(y), abs=False).detach().numpy(), sens, lambda o, q: (o, q),
        "Saliency(abs=False); ours: the MaxSensitivity row's call")

    inf_noise = (sigma * rng.normal(size=(N_IMAGES, samples, *shape))).astype(np.float32)
    flat = torch.tensor(inf_noise.reshape(-1, *shape))  # example-major, as Captum expands

    def perturb(inputs: Any) -> tuple[Any, Any]:
        return flat, inputs - flat

    mine = ours(lambda xi, ai, t, d: xm.infidelity(m.score(t), xi, ai, noise=d), X, A, T, jnp.asarray(inf_noise),
                repeats=repeats)
    row("infidelity (Captum)", "captum", lambda: captum.metrics.infidelity(
        net, perturb, x_t, torch.tensor(a), target=torch.tensor(y), n_perturb_samples=samples).detach().numpy(),
        mine, lambda o, q: (o, q), f"{samples} perturbations N(0, {sigma}^2)")

    # --- complexity (on |a|: abs=True on Quantus's side), every element a feature
    # Sparseness: normalise=True (it is scale-free) so that Quantus's + 1e-7 moves it by 1e-7 / mean(|a| / max|a|)
    for name, fn in [("Sparseness", xm.sparseness), ("Complexity", xm.complexity)]:
        metric = getattr(quantus, name)(disable_warnings=True, normalise=name == "Sparseness", abs=True)
        mine = ours(lambda ai, fn=fn: fn(ai, channel_axis=None), A, repeats=repeats)
        row(name, "quantus", lambda metric=metric: np.asarray(metric(model=None, x_batch=x, y_batch=y,
                                                                    a_batch=a.copy(), channel_first=True)),
            mine, lambda o, q: (o, q), "abs=True, normalise=True (Quantus adds 1e-7 inside)" if name == "Sparseness"
            else "abs=True (Quantus adds 1e-12 inside the log)")

    # --- localization: a random rectangle per image, the channel-summed map
    masks = np.zeros((N_IMAGES, size, size), bool)
    for i in range(N_IMAGES):
        h, w = rng.integers(size // 4, size // 2 + 1, 2)
        top, left = rng.integers(0, size - h + 1), rng.integers(0, size - w + 1)
        masks[i, top:top + h, left:left + w] = True
    a_sum = a.sum(axis=1, keepdims=True)
    S = jnp.asarray(masks)
    for name, fn in [("PointingGame", xm.pointing_game),
                     ("RelevanceMassAccuracy", lambda ai, si, channel_axis: xm.relevance_mass(
                         ai, si, part="all", channel_axis=channel_axis))]:
        metric = getattr(quantus, name)(**common)
        mine = ours(lambda ai, si, fn=fn: fn(ai, si, channel_axis=0), A, S, repeats=repeats)
        row(name, "quantus", lambda metric=metric: np.asarray(metric(
            model=None, x_batch=x, y_batch=y, a_batch=a_sum, s_batch=masks[:, None], channel_first=True), np.float64),
            mine, lambda o, q: (o, q), "random rectangles; ours sums the (C, H, W) map over C")

    # --- randomization: MPRT with Quantus's randomized weights handed to ours
    names, last = [], None
    for layer, randomized_net in PyTorchModel(net, channel_first=True, softmax=False).get_random_layer_generator(
            order="top_down", seed=42):
        names.append(layer)
        last = randomized_net
    randomized = from_torch(last, torch.zeros(1, *shape)).params
    mprt = quantus.MPRT(similarity_func=quantus.similarity_func.correlation_spearman, abs=True, normalise=True,
                        layer_order="top_down", seed=42, disable_warnings=True)

    def randomization(xi: Any, t: Any) -> Any:
        explain = lambda p, xj: xc.gradient(m.with_params(p).score(t))(xj)  # noqa: E731
        out = xm.model_randomization(explain, m.params, xi, randomized=randomized, order="cascading",
                                     similarity="spearman_abs", layers=names, channel_axis=None)
        return jnp.stack([out[k] for k in names])

    mine = ours(randomization, X, T, repeats=repeats)
    row("MPRT", "quantus", lambda: mprt(model=net, x_batch=x, y_batch=y, a_batch=None, explain_func=torch_gradient,
                                        channel_first=True, softmax=False, batch_size=N_IMAGES),
        mine, lambda o, q: (o, np.stack([q[k] for k in names], axis=1)),
        f"cascading over {names}, Spearman of |a| / max|a|; Quantus's randomized weights handed to ours")

    # --- random logit: the other class as Quantus draws it
    rl = quantus.RandomLogit(num_classes=N_CLASSES, seed=42, **common)
    np.random.seed(42)
    index = np.random.randint(0, N_CLASSES - 1, N_IMAGES)
    others = jnp.asarray([[c for c in range(N_CLASSES) if c != t][j] for t, j in zip(y, index)], jnp.int32)
    explain = lambda xi, c: xc.gradient(m.score(c))(xi).ravel()  # noqa: E731  Quantus's SSIM of flattened maps
    mine = ours(lambda xi, t, o: xm.random_logit(explain, xi, t, num_classes=N_CLASSES, other=o, similarity="ssim",
                                                 channel_axis=None), X, T, others, repeats=repeats)
    row("RandomLogit", "quantus", lambda: np.asarray(rl(a_batch=a, explain_func=torch_gradient, **call)), mine,
        lambda o, q: (o, q), "SSIM of the flattened maps, Quantus's other class")

    # --- floors: the model evaluations the metrics cannot avoid, one batch of the 16 images
    floors: dict[str, dict[str, Any]] = {}

    def floor(name: str, torch_call: Callable[[], Any], mine: dict[str, Any]) -> None:
        by_threads = {}
        for n in threads:
            torch.set_num_threads(n)
            by_threads[str(n)] = timed(torch_call, repeats)[0]
        best = min(by_threads.values())
        floors[name] = {"torch_seconds": best, "torch_seconds_by_threads": by_threads, "ours_seconds": mine["seconds"],
                        "ours_compile": mine["compile"], "torch / ours": best / mine["seconds"]}

    def torch_forward() -> Any:
        with torch.no_grad():
            return net(x_t).numpy()

    floor("forward", torch_forward, ours(m.logits, X, repeats=repeats))
    floor("gradient, per-example traced target", lambda: torch_gradient(net, x, y),
          ours(lambda xi, t: xc.gradient(m.score(t))(xi), X, T, repeats=repeats))
    floor("gradient, one static target", lambda: torch_gradient(net, x, np.full_like(y, int(y[0]))),
          ours(lambda xi: xc.gradient(m.score(int(y[0])))(xi), X, repeats=repeats))

    perturbation = ["PixelFlipping", "RegionPerturbation", "FaithfulnessCorrelation", "MaxSensitivity",
                    "infidelity (Captum)", "sensitivity_max (Captum)"]
    return {
        "benchmark": "metrics", "quick": quick, "repeats": repeats,
        "setup": {"model": "conv3x3(3->16) relu conv3x3(16->32) relu adaptive-avg-pool(4) linear(512->10)",
                  "images": N_IMAGES, "shape": list(shape), "dtype": "float32", "maps": "plain gradient (torch)",
                  "features_in_step": features_in_step, "steps": steps, "patch": patch, "runs": runs,
                  "subset_size": subset_size, "samples": samples, "radius": radius, "sigma": sigma,
                  "torch_threads_tried": threads,
                  "xla_flags": os.environ.get("XLA_FLAGS", "")},
        "versions_extra": {"quantus": quantus.__version__, "numpy": np.__version__, "captum": captum.__version__},
        "rows": rows,
        "floors": floors,
        "perturbation_ratio_min": min(rows[k]["ratio"] for k in perturbation),
        "perturbation_ratio_median": statistics.median(rows[k]["ratio"] for k in perturbation),
        "load_average_at_end": os.getloadavg(),
        "jax_device": jax.devices()[0].device_kind,
    }


def table(result: dict[str, Any]) -> str:
    s, info = result["setup"], result["machine"]
    lines = [f"# Metrics: xai-core against Quantus / Captum on {info['cpu']} ({info['cores']} cores)", "",
             f"{s['images']} images {'x'.join(map(str, s['shape']))}, {s['dtype']}, small CNN ({s['model']}), "
             f"maps: {s['maps']}; median of {result['repeats']} calls after a warm-up; the peer at torch threads "
             f"{s['torch_threads_tried']}, the faster kept (column threads); load average "
             f"{info['load_average_at_start'][0]:.2f} at start, "
             f"{result['load_average_at_end'][0]:.2f} at end (shared machine). Versions: "
             + ", ".join(f"{k} {v}" for k, v in {**info["versions"], **result["versions_extra"]}.items()) + ".", "",
             "| metric | peer | peer s | threads | xai-core s | compile s | peer / xai-core | max abs diff | what |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for name, r in result["rows"].items():
        diff = "-" if r["max_abs_diff"] is None else f"{r['max_abs_diff']:.1e}"
        lines.append(f"| {name} | {r['peer']} | {r['peer_seconds']:.4f} | {r['peer_threads']} | "
                     f"{r['ours_seconds']:.4f} | "
                     f"{r['ours_compile']:.2f} | {r['ratio']:.1f} | {diff} | {r['note']} |")
    lines += ["", f"Perturbation metrics (the first six rows): peer / xai-core from "
                  f"{result['perturbation_ratio_min']:.1f}, median {result['perturbation_ratio_median']:.1f}.", "",
              "Floors (one batch of the images, no metric around it):", "",
              "| evaluation | torch s | xai-core s | compile s | torch / xai-core |", "|---|---:|---:|---:|---:|"]
    for name, f in result["floors"].items():
        lines.append(f"| {name} | {f['torch_seconds']:.4f} | {f['ours_seconds']:.4f} | {f['ours_compile']:.2f} | "
                     f"{f['torch / ours']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.metrics", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="16 x 3x16x16 images: a smoke run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--torch-threads", type=str, default=None,
                        help="torch thread counts to time the peers at, the faster kept, e.g. '1,2' "
                             "(default: 1 and every core; 1 with --quick)")
    parser.add_argument("--out", type=Path, default=None, help="JSON file (default: results/metrics-<machine>.json)")
    args = parser.parse_args(argv)
    from benchmarks.run import machine, machine_tag

    info = machine()
    cores = os.cpu_count() or 1
    threads = ([int(n) for n in args.torch_threads.split(",")] if args.torch_threads
               else [1] if args.quick else sorted({1, cores}))
    result = {"machine": info, **run(args.quick, args.repeats, threads)}
    out = args.out or RESULTS / f"metrics{'-quick' if args.quick else ''}-{machine_tag(info)}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=float))
    out.with_suffix(".md").write_text(table(result) + "\n")
    print(table(result))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
