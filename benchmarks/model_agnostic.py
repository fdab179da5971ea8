"""Model-agnostic methods (issue 26): feature ablation, Shapley sampling, Kernel SHAP, LIME and
Owen values against Captum, shap and lime at equal numbers of model evaluations and against the
forward floor; then their error against exact Shapley values at equal budgets.

    python -m benchmarks.model_agnostic                # small CNN and ResNet-18 at 112², about 9 minutes on 2 cores
    python -m benchmarks.model_agnostic --quick        # about 3.5 minutes (quality at 16², 3 seeds, 3 budgets)
    python -m benchmarks.model_agnostic --sizes 224    # ResNet-18 at 224² (16-pixel cells)

**Speed.** One image (seed 0), target 3, baseline 0, a grid of square cells over the channels
(``xc.segments.grid((3, H, W), cell, channel_axis=0)``): the small residual CNN
(``torch_small_resnet``) at 64² in 8-pixel cells (K = 64) and ResNet-18 (``torch_resnet18``)
at each of ``--sizes`` in 8-pixel cells (16 from 224² on; K = 196 at 112² and 224²), random
weights, ``from_torch`` for ours. Rows per method, each the median of ``--repeats`` calls after
a warm-up; ``evaluations`` counts the examples the model saw per call (ours by construction,
peers by a counting wrapper around the model):

- ``ours``: ``jax.jit`` of the method on ``(m, x[, key])`` with its defaults
  (``batch_size="auto"``; ``feature_ablation`` incremental); ``ours, dense``:
  ``feature_ablation(incremental=False)``; ``ours, batch_size 8``: ``shapley_sampling`` in
  chunks of 8 instead of ``"auto"``'s (16 for the small CNN at 64², 13 for ResNet-18 at 112²);
- ``forward floor``: the method's number of evaluations as full forwards of ``m.logits`` on
  distinct inputs, jitted, chunked as ours is (``chunked_map``, the same ``"auto"`` chunk);
- ``captum default`` / ``captum tuned``: Captum's class with ``perturbations_per_eval=1`` (its
  default) and with the fastest of 16 / 32 / 64 (each tried once, the fastest measured);
  Captum runs its forwards under ``torch.no_grad``;
- small CNN only: ``shap`` (``KernelExplainer``, ``l1_reg=False``; ``PermutationExplainer``;
  ``PartitionExplainer``) on a function of a binary coalition matrix that applies the grid
  mask to the torch model (background: one all-zero row, ``shap.maskers.Independent``;
  ``shap.maskers.Partition`` with the hierarchy of halves ``xc.owen`` documents as its
  linkage), and ``lime`` (``LimeImageExplainer``, the grid as ``segmentation_fn``,
  ``hide_color=0``, its default ``batch_size=10`` and 64).

Budgets: ``feature_ablation`` K + 1; ``shapley_sampling`` P orders (4 small, 2 ResNet-18):
ours P (K - 1) + 2, Captum P K + 1, shap ``max_evals = P/2 (2K + 1)`` (P/2 antithetic
pairs); ``kernel_shap`` / ``lime`` S = 256 coalitions (Kernel SHAP needs at least K + 2: 198
at K = 196; ours evaluates S + 2 for Kernel SHAP); ``owen`` 256. Ours and Captum replay the same orders
(``permutations=``; Captum's module-level ``_perm_generator``, which
``ShapleyValueSampling.__init__`` stores and ``attribute`` iterates, is patched during
construction), so their ``shapley_sampling`` must agree, as must ``feature_ablation``
(``max rel diff``, relative to Captum's largest value; 1e-4). Kernel SHAP and LIME draw
their own coalitions and fit different surrogates (Captum's ``Lime`` a Lasso, lime's a
ridge), so only their times compare. ``torch_forward_ms_at_batch_64``: the torch model's own
forward per example. Memory (ResNet-18): ``kernel_shap`` with 2000 coalitions (500 with
``--quick``) at ``batch_size`` 8 and 64, one call after compiling: the process's peak resident
set growth (``measure``'s ``added_mib``) and XLA's temporary buffer size, also for a quarter
of the coalitions (at least K + 2; compiled only).

**Quality.** The small CNN at 64² in a 4x4 grid of 16-pixel cells (K = 16): all 2^16 coalition
values are computed once with the model (``v(z)``, the game exact Shapley values need), exact
Shapley values by ``xc.shapley``; then every estimator, ours and the peers', plays that game
from the table (a lookup per evaluation, counted at the table), at budgets of about 64 to 2048
evaluations (64, 256, 1024 with ``--quick``), ``--seeds`` seeds each (5; 3 with ``--quick``):
``xc.shapley_sampling`` (antithetic), ``xc.kernel_shap``, Captum ``ShapleyValueSampling``
(``n_samples = budget / K``) and ``KernelShap``, shap ``PermutationExplainer`` and
``KernelExplainer`` (``l1_reg=False``). Error: ``|phi - exact|_2 / |exact|_2``, the mean over
seeds. ``--quick`` plays the game of the small CNN at 16² (4-pixel cells), whose table takes
seconds rather than minutes.

Writes ``results/model_agnostic-<machine>.json``, ``.md`` (the tables) and ``.png`` (error
against evaluations, log-log) and prints the tables.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

RESULTS = Path(__file__).resolve().parent / "results"
TARGET = 3
CAPTUM_TUNING = (16, 32, 64)
LIME_BATCHES = (10, 64)
TOL = 1e-4


T0 = time.perf_counter()


def _log(message: str) -> None:
    print(f"[{time.perf_counter() - T0:6.0f} s] {message}", file=sys.stderr, flush=True)


def _grid(side: int, cell: int) -> Any:
    import xai_core as xc
    return xc.segments.grid((3, side, side), cell, channel_axis=0)  # (1, H, W): ids 0..K-1


class Counting:
    """A model wrapper that counts the examples it is called on (a peer's evaluations)."""

    def __init__(self, fn: Callable[[Any], Any]) -> None:
        self.fn, self.count = fn, 0

    def __call__(self, x: Any) -> Any:
        self.count += len(x)
        return self.fn(x)


# --------------------------------------------------------------------------- speed

def speed(name: str, net: Any, side: int, cell: int, orders: int, coalitions: int, repeats: int,
          peers: bool, memory_coalitions: int | None) -> dict[str, Any]:
    """Every speed row of one model (see the module doc)."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch
    from captum.attr import FeatureAblation, KernelShap, Lime, ShapleyValueSampling
    from captum.attr._core import shapley_value

    import xai_core as xc
    from benchmarks.run import measure, rel_diff
    from xai_core.adapters import from_torch
    from xai_core.attribution.features import game
    from xai_core.core.chunking import chunked_map

    x_t = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(0))
    m = from_torch(net, x_t)
    x = jnp.asarray(x_t[0].numpy())
    mask = _grid(side, cell)
    k = int(mask.max()) + 1
    mask_t = torch.as_tensor(mask[None], dtype=torch.long)  # (1, 1, H, W): Captum's broadcastable mask
    chunk = game(m.score(TARGET), x, mask, 0.0, None, "auto", "benchmark").chunk  # what ours' "auto" picks
    key = jax.random.key(0)
    perms = np.stack([np.random.default_rng(i).permutation(k) for i in range(orders)])
    counted = Counting(net)

    def ours(method: Callable[..., Any], with_key: bool = False) -> Callable[[], Any]:
        fn = (lambda m, x, key: method(m.score(TARGET))(x, key=key)) if with_key else \
            (lambda m, x: method(m.score(TARGET))(x))
        args = (m, x, key) if with_key else (m, x)
        return _compiled(fn, *args)

    def floor(n: int) -> Callable[[], Any]:
        inputs = jnp.asarray(np.random.default_rng(1).random((n, 3, side, side), np.float32))
        return _compiled(lambda m, xs: chunked_map(lambda i: m.logits(xs[i])[TARGET], n, chunk), m, inputs)

    def peer(call: Callable[[], Any], counter: Counting, calls: int | None = None) -> dict[str, Any]:
        counter.count = 0
        r = measure(lambda: (lambda: _as_numpy(call()), 0.0), repeats if calls is None else calls, torch_side=True)
        r["evaluations"] = counter.count // (1 + (repeats if calls is None else calls))
        return r

    def captum(make: Callable[[int], Any]) -> dict[str, dict[str, Any]]:
        """Captum at perturbations_per_eval 1 and tuned: one call each (after a forward at that
        batch: torch compiles nothing), the fastest of CAPTUM_TUNING reported."""
        tried = {}
        for p in (1, *CAPTUM_TUNING):
            with no_grad():
                net(x_t.expand(p, -1, -1, -1))
            tried[p] = peer(lambda p=p: make(p), counted, calls=0)
        best = min(CAPTUM_TUNING, key=lambda p: tried[p]["seconds"])
        rows = {"captum default": tried[1], "captum tuned": tried[best]}
        rows["captum tuned"].update(perturbations_per_eval=best,
                                    tried={p: tried[p]["seconds"] for p in CAPTUM_TUNING})
        return rows

    def run_ours(build: Callable[[], Any], evaluations: int) -> dict[str, Any]:
        r = measure(build, repeats)
        r["evaluations"] = evaluations
        return r

    no_grad = torch.no_grad
    with no_grad():  # torch's own forward, batched: what a peer at its best could reach
        batch = x_t.expand(64, -1, -1, -1).contiguous()
        net(batch)
        t = time.perf_counter()
        net(batch), net(batch)
        torch_ms = (time.perf_counter() - t) / 128 * 1e3
    out: dict[str, Any] = {"model": name, "side": side, "cell": cell, "features": k, "chunk": chunk,
                           "target": TARGET, "torch_forward_ms_at_batch_64": torch_ms, "methods": {}}
    _log(f"{name} {side}²: K={k}, torch forward {torch_ms:.2f} ms per example at batch 64")

    # feature ablation: K + 1 evaluations
    rows = {"ours": run_ours(lambda: ours(lambda s: xc.feature_ablation(s, feature_mask=mask)), k + 1),
            "ours, dense": run_ours(lambda: ours(lambda s: xc.feature_ablation(
                s, feature_mask=mask, incremental=False)), k + 1),
            "forward floor": run_ours(lambda: floor(k + 1), k + 1)}

    def fa(p: int) -> Any:
        with no_grad():
            return FeatureAblation(counted).attribute(x_t, baselines=0.0, target=TARGET, feature_mask=mask_t,
                                                      perturbations_per_eval=p)[0]
    rows.update(captum(fa))
    out["methods"]["feature_ablation"] = _finish(rows, {
        "ours": rel_diff(rows["ours"]["out"], rows["captum default"]["out"]),
        "ours, dense": rel_diff(rows["ours, dense"]["out"], rows["captum default"]["out"]),
        "captum tuned": rel_diff(rows["captum tuned"]["out"], rows["captum default"]["out"])})

    # Shapley sampling: the same orders for ours and Captum
    n_ours = orders * (k - 1) + 2
    rows = {"ours": run_ours(lambda: ours(lambda s: xc.shapley_sampling(s, feature_mask=mask, permutations=perms)),
                             n_ours),
            "ours, batch_size 8": run_ours(lambda: ours(lambda s: xc.shapley_sampling(
                s, feature_mask=mask, permutations=perms, batch_size=8)), n_ours),
            "forward floor": run_ours(lambda: floor(n_ours), n_ours)}

    def svs(p: int) -> Any:
        replay = lambda features, samples: iter(perms.tolist())
        with mock.patch.object(shapley_value, "_perm_generator", replay):
            method = ShapleyValueSampling(counted)
        assert method.permutation_generator is replay
        return method.attribute(x_t, baselines=0.0, target=TARGET, feature_mask=mask_t, n_samples=orders,
                                perturbations_per_eval=p)[0]
    rows.update(captum(svs))
    agree = {"ours": rel_diff(rows["ours"]["out"], rows["captum default"]["out"]),
             "ours, batch_size 8": rel_diff(rows["ours, batch_size 8"]["out"], rows["captum default"]["out"]),
             "captum tuned": rel_diff(rows["captum tuned"]["out"], rows["captum default"]["out"])}
    if peers:
        game = _coalition_model(net, x_t, mask)
        import shap
        pair_evals = (orders // 2) * (2 * k + 1)
        explainer = shap.PermutationExplainer(game, shap.maskers.Independent(np.zeros((1, k)), max_samples=1))
        rows["shap PermutationExplainer"] = peer(lambda: _seeded(lambda: explainer(
            np.ones((1, k)), max_evals=pair_evals, silent=True).values[0]), game)
    out["methods"]["shapley_sampling"] = _finish(rows, agree, orders=orders)

    # Kernel SHAP and LIME: S coalitions
    rows = {"ours": run_ours(lambda: ours(lambda s: xc.kernel_shap(s, feature_mask=mask, samples=coalitions),
                                          with_key=True), coalitions + 2),
            "forward floor": run_ours(lambda: floor(coalitions + 2), coalitions + 2)}

    def surrogate(method: Any) -> Callable[[int], Any]:
        """Captum's ``KernelShap`` or ``Lime`` on S coalitions, ``p`` per evaluation."""
        def run(p: int) -> Any:
            torch.manual_seed(0)
            with no_grad():
                return method(counted).attribute(x_t, baselines=0.0, target=TARGET, feature_mask=mask_t,
                                                 n_samples=coalitions, perturbations_per_eval=p)[0]
        return run

    rows.update(captum(surrogate(KernelShap)))
    if peers:
        import shap
        kernel = shap.KernelExplainer(game, np.zeros((1, k)))
        rows["shap KernelExplainer"] = peer(lambda: _seeded(lambda: kernel.shap_values(
            np.ones((1, k)), nsamples=coalitions, l1_reg=False, silent=True)[0]), game)
    out["methods"]["kernel_shap"] = _finish(rows, {})

    rows = {"ours": run_ours(lambda: ours(lambda s: xc.lime(s, feature_mask=mask, samples=coalitions),
                                          with_key=True), coalitions),
            "forward floor": run_ours(lambda: floor(coalitions), coalitions)}
    rows.update(captum(surrogate(Lime)))
    if peers:
        from lime.lime_image import LimeImageExplainer
        image = x_t[0].permute(1, 2, 0).double().numpy()
        classify = Counting(lambda imgs: _logits(net, torch.as_tensor(imgs, dtype=torch.float32).permute(0, 3, 1, 2)))
        segments = mask[0]
        for b in LIME_BATCHES:
            rows[f"lime_image (batch {b})"] = peer(lambda b=b: _lime_weights(LimeImageExplainer().explain_instance(
                image, classify, labels=(TARGET,), top_labels=None, hide_color=0, num_samples=coalitions,
                batch_size=b, segmentation_fn=lambda _: segments, random_seed=0), k), classify)
    out["methods"]["lime"] = _finish(rows, {})

    if peers:  # Owen values: shap's PartitionExplainer, on the same hierarchy
        import shap
        budget = coalitions
        rows = {"ours": run_ours(lambda: ours(lambda s: xc.owen(s, feature_mask=mask, samples=budget)), budget),
                "forward floor": run_ours(lambda: floor(budget), budget)}
        linkage = _linkage(mask)
        partition = shap.PartitionExplainer(game, shap.maskers.Partition(np.zeros((1, k)), clustering=linkage))
        rows["shap PartitionExplainer"] = peer(lambda: _seeded(lambda: partition(
            np.ones((1, k)), max_evals=budget, silent=True).values[0]), game)
        per_feature = np.asarray(rows["ours"]["out"])[0].ravel()[np.unique(mask[0].ravel(), return_index=True)[1]]
        out["methods"]["owen"] = _finish(rows, {}, max_rel_diff_vs_shap=rel_diff(
            per_feature, rows["shap PartitionExplainer"]["out"]))

    if memory_coalitions:
        _log(f"memory: kernel_shap with {memory_coalitions} coalitions")
        out["memory"] = {"coalitions": memory_coalitions, "rows": {}}
        fewer = max(memory_coalitions // 4, k + 2)

        def kernel_shap(samples: int, bs: int) -> Any:
            fn = lambda m, x, key: xc.kernel_shap(  # noqa: E731
                m.score(TARGET), feature_mask=mask, samples=samples, batch_size=bs)(x, key=key)
            return jax.jit(fn).lower(m, x, key).compile()

        def temp_mib(compiled: Any) -> float:
            return compiled.memory_analysis().temp_size_in_bytes / 2**20

        for bs in (8, 64):
            compiled = kernel_shap(memory_coalitions, bs)
            r = measure(lambda c=compiled: ((lambda: np.asarray(jax.block_until_ready(c(m, x, key)))), 0.0), 0)
            out["memory"]["rows"][bs] = {"seconds": r["seconds"], "peak_mib": r["peak_mib"],
                                         "added_mib": r["added_mib"], "xla_temp_mib": temp_mib(compiled),
                                         f"xla_temp_mib_at_{fewer}": temp_mib(kernel_shap(fewer, bs))}
    return out


def _compiled(fn: Callable[..., Any], *args: Any) -> tuple[Callable[[], Any], float]:
    from benchmarks.run import jitted
    return jitted(fn, *args)


def _as_numpy(a: Any) -> Any:
    import numpy as np
    return a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)


def _logits(net: Any, images: Any) -> Any:
    import torch
    with torch.no_grad():
        return net(images).numpy()


def _coalition_model(net: Any, x_t: Any, mask: Any) -> Counting:
    """The model as a function of a binary coalition matrix ``(n, K)`` (shap's view): features
    off are 0, the baseline; counts its rows."""
    import torch
    ids = torch.as_tensor(mask, dtype=torch.long)  # (1, H, W)

    def f(z: Any) -> Any:
        on = torch.as_tensor(z, dtype=torch.float32)[:, ids]  # (n, 1, H, W)
        return _logits(net, x_t * on)[:, TARGET]
    return Counting(f)


def _seeded(fn: Callable[[], Any]) -> Any:
    import numpy as np
    np.random.seed(0)
    return fn()


def _lime_weights(explanation: Any, k: int) -> Any:
    import numpy as np
    weights = np.zeros(k)
    for feature, w in explanation.local_exp[TARGET]:
        weights[feature] = w
    return weights


def _linkage(mask: Any) -> Any:
    """The hierarchy ``xc.owen`` documents (and shap's image masker builds): the features, by
    their centroid in the mask, sorted (stably) along the axis they span most and split in
    halves, recursively; as a scipy linkage matrix for ``shap.maskers.Partition`` (children
    before parents, distance the node's height)."""
    import numpy as np
    ids = mask.ravel()
    k = int(ids.max()) + 1
    grids = np.indices(mask.shape).reshape(mask.ndim, -1)
    where = np.stack([np.bincount(ids, weights=axis, minlength=k) for axis in grids], 1) / np.bincount(ids)[:, None]
    rows: list[list[float]] = []

    def build(group: Any) -> tuple[int, int]:
        if group.size == 1:
            return int(group[0]), 0
        group = group[np.argsort(where[group, int(np.argmax(np.ptp(where[group], axis=0)))], kind="stable")]
        (a, ha), (b, hb) = build(group[: group.size // 2]), build(group[group.size // 2:])
        rows.append([a, b, max(ha, hb) + 1, group.size])
        return k + len(rows) - 1, max(ha, hb) + 1

    build(np.arange(k))
    return np.array(rows, dtype=np.float64)


def _finish(rows: dict[str, dict[str, Any]], agreement: dict[str, float], **extra: Any) -> dict[str, Any]:
    """Rows without their outputs, with per-evaluation times and the ratios to ours."""
    ours = rows["ours"]["seconds"]
    _log(", ".join(f"{label} {r['seconds']:.2f} s" for label, r in rows.items()))
    out = {"rows": {}, "max_rel_diff_vs_captum": agreement, "load_average_after": os.getloadavg()[0], **extra}
    for label, r in rows.items():
        row = {k: v for k, v in r.items() if k not in ("out", "runs")}
        row["ms_per_evaluation"] = 1e3 * r["seconds"] / max(r["evaluations"], 1)
        row["time_over_ours"] = r["seconds"] / ours
        out["rows"][label] = row
    return out


# --------------------------------------------------------------------------- quality

def quality(side: int, grid: int, budgets: tuple[int, ...], seeds: int) -> dict[str, Any]:
    """Error against exact Shapley values at equal numbers of evaluations (see the module doc)."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import shap
    import torch
    from captum.attr import KernelShap, ShapleyValueSampling

    import xai_core as xc
    from benchmarks.models import torch_small_resnet
    from xai_core.adapters import from_torch
    from xai_core.attribution.features import bits, game
    from xai_core.core.chunking import chunked_map

    net = torch_small_resnet()
    x_t = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(0))
    m = from_torch(net, x_t)
    x = jnp.asarray(x_t[0].numpy())
    mask = _grid(side, side // grid)
    k = grid * grid
    chunk = game(m.score(TARGET), x, mask, 0.0, None, "auto", "benchmark").chunk
    ids = jnp.asarray(mask)

    _log(f"quality: all 2^{k} coalition values of the small CNN at {side}²")
    t = time.perf_counter()
    table_fn = jax.jit(lambda m, x: chunked_map(
        lambda i: m.score(TARGET)(jnp.where(bits(i, k)[ids], x, 0.0)), 2 ** k, chunk))
    table = np.asarray(table_fn(m, x))
    table_seconds = time.perf_counter() - t
    pow2 = 2 ** np.arange(k)
    table_j, pow2_j = jnp.asarray(table), jnp.asarray(pow2, jnp.int32)

    def score(z: Any) -> Any:  # ours: the game on K scalar features, x = ones, baseline 0
        return table_j[jnp.sum(jnp.round(z).astype(jnp.int32) * pow2_j)]

    exact = np.asarray(xc.shapley(score)(jnp.ones(k)))
    direct = float(m.score(TARGET)(x))
    ones = np.ones((1, k))

    def lookup(z: Any) -> Any:  # the peers': rows of a 0/1 coalition matrix
        z = np.asarray(z)
        return table[(np.rint(z).astype(np.int64) * pow2).sum(1)]

    peer_game = Counting(lookup)
    torch_game = Counting(lambda z: torch.as_tensor(lookup(z.detach().numpy())))

    def error(phi: Any) -> float:
        return float(np.linalg.norm(np.asarray(phi, np.float64).ravel() - exact) / np.linalg.norm(exact))

    compiled: dict[tuple[str, int], Any] = {}

    def ours(method: str, budget: int) -> tuple[Callable[[int], Any], int]:
        if method == "xc.shapley_sampling":
            samples = max(2, 2 * round((budget - 2) / (k - 1) / 2))
            make, evals = (lambda: xc.shapley_sampling(score, samples=samples)), samples * (k - 1) + 2
        else:
            samples = min(budget - 2, 2 ** k - 2)
            make, evals = (lambda: xc.kernel_shap(score, samples=samples)), samples + 2
        if (method, budget) not in compiled:
            compiled[method, budget] = jax.jit(lambda key: make()(jnp.ones(k), key=key))
        fn = compiled[method, budget]
        return (lambda seed: fn(jax.random.key(seed))), evals

    def peer(method: str, budget: int) -> tuple[Callable[[int], Any], Counting]:
        if method == "captum ShapleyValueSampling":
            n = max(1, round((budget - 1) / k))

            def run(seed: int) -> Any:
                torch.manual_seed(seed)
                return ShapleyValueSampling(torch_game).attribute(
                    torch.ones(1, k), baselines=0.0, n_samples=n, perturbations_per_eval=k)[0]
            return run, torch_game
        if method == "captum KernelShap":
            def run(seed: int) -> Any:
                torch.manual_seed(seed)
                return KernelShap(torch_game).attribute(torch.ones(1, k), baselines=0.0, n_samples=budget,
                                                       perturbations_per_eval=budget)[0]
            return run, torch_game
        if method == "shap PermutationExplainer":
            explainer = shap.PermutationExplainer(peer_game, shap.maskers.Independent(np.zeros((1, k)), max_samples=1))

            def run(seed: int) -> Any:
                np.random.seed(seed)
                return explainer(ones, max_evals=max(budget, 2 * k + 1), silent=True).values[0]
            return run, peer_game
        kernel = shap.KernelExplainer(peer_game, np.zeros((1, k)))

        def run(seed: int) -> Any:
            np.random.seed(seed)
            return kernel.shap_values(ones, nsamples=budget, l1_reg=False, silent=True)[0]
        return run, peer_game

    methods = ("xc.shapley_sampling", "xc.kernel_shap", "captum ShapleyValueSampling", "captum KernelShap",
               "shap PermutationExplainer", "shap KernelExplainer")
    curves: dict[str, list[dict[str, float]]] = {name: [] for name in methods}
    for budget in budgets:
        for name in methods:
            errors, evals = [], 0
            for seed in range(seeds):
                if name.startswith("xc."):
                    run, evals = ours(name, budget)
                    errors.append(error(run(seed)))
                else:
                    run, counter = peer(name, budget)
                    counter.count = 0
                    errors.append(error(_as_numpy(run(seed))))
                    evals = counter.count
            curves[name].append({"budget": budget, "evaluations": evals, "error": float(np.mean(errors)),
                                 "error_std": float(np.std(errors))})
    return {"side": side, "grid": grid, "features": k, "seeds": seeds, "budgets": list(budgets),
            "table_seconds": table_seconds, "table_vs_direct_score": abs(float(table[-1]) - direct),
            "exact": exact.tolist(), "curves": curves, "targets": _quality_targets(curves)}


def _quality_targets(curves: dict[str, list[dict[str, float]]]) -> dict[str, Any]:
    """Per budget: the best peer's error, ours', and the evaluations ours needs to reach that
    peer's error over the peer's: log-log interpolation at the first budget where our curve is at
    or below it; ``bound`` "<=" where our smallest budget already is; None where no budget is."""
    import numpy as np
    out = {}
    for i in range(len(next(iter(curves.values())))):
        peers = {n: c[i] for n, c in curves.items() if not n.startswith("xc.")}
        best = min(peers, key=lambda n: peers[n]["error"])
        row = {"budget": peers[best]["budget"], "best_peer": best, "best_peer_error": peers[best]["error"],
               "best_peer_evaluations": peers[best]["evaluations"]}
        for ours in (n for n in curves if n.startswith("xc.")):
            e = np.log([p["error"] for p in curves[ours]])
            n = np.log([p["evaluations"] for p in curves[ours]])
            goal = math.log(peers[best]["error"])
            needed, bound = None, "="
            if goal >= e[0]:  # reached at our smallest budget already: at most that many
                needed, bound = float(np.exp(n[0])), "<="
            elif e.min() <= goal:  # the first crossing, interpolated in log-log
                j = int(np.argmax(e <= goal))
                needed = float(np.exp(np.interp(goal, [e[j], e[j - 1]], [n[j], n[j - 1]])))
            row[ours] = {"error": curves[ours][i]["error"], "evaluations": curves[ours][i]["evaluations"],
                         "evaluations_to_match": needed, "bound": bound,
                         "fraction_of_peer": None if needed is None else needed / peers[best]["evaluations"]}
        out[str(row["budget"])] = row
    return out


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    q = result["quality"]
    fig, ax = plt.subplots(figsize=(8.4, 4.4))
    for name, curve in q["curves"].items():
        ax.loglog([p["evaluations"] for p in curve], [p["error"] for p in curve], "o-" if name.startswith("xc.")
                  else "s--", label=name, lw=2 if name.startswith("xc.") else 1)
    ax.set_xlabel("model evaluations")
    ax.set_ylabel("relative L2 error to exact Shapley")
    ax.set_title(f"Small CNN, {q['side']}², {q['features']} grid cells, mean of {q['seeds']} seeds")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------- report

def markdown(result: dict[str, Any]) -> str:
    info = result["machine"]
    lines = [f"# Model-agnostic methods on {info['gpu'] or info['cpu']} ({info['cores']} cores)", "",
             f"One image, target {TARGET}, baseline 0; median of {result['repeats']} calls after a warm-up; "
             f"load average at start {info['load_average_at_start'][0]:.1f}, at the end "
             f"{result['load_average_at_end'][0]:.1f}. Versions: "
             + ", ".join(f"{k} {v}" for k, v in {**info["versions"], **result["versions_extra"]}.items()) + ".", ""]
    for s in result["speed"]:
        lines += [f"## {s['model']}, {s['side']}², {s['cell']}-pixel cells (K = {s['features']}), "
                  f"chunk {s['chunk']}", "", f"torch's own forward at batch 64: "
                  f"{s['torch_forward_ms_at_batch_64']:.2f} ms per example.", "", table(s), ""]
        if "memory" in s:
            mem = s["memory"]
            fewer = max(mem["coalitions"] // 4, s["features"] + 2)
            lines += [f"`kernel_shap`, {mem['coalitions']} coalitions:", "",
                      "| batch_size | seconds | added RSS MiB | peak RSS MiB | XLA temp MiB | "
                      f"XLA temp MiB at {fewer} |", "|---:|---:|---:|---:|---:|---:|"]
            lines += [f"| {bs} | {r['seconds']:.2f} | {r['added_mib']:.0f} | {r['peak_mib']:.0f} | "
                      f"{r['xla_temp_mib']:.1f} | {r[f'xla_temp_mib_at_{fewer}']:.1f} |"
                      for bs, r in mem["rows"].items()]
            lines.append("")
    if "quality" in result:
        q = result["quality"]
        lines += ["## Quality", "",
                  f"Small CNN at {q['side']}², a {q['grid']}x{q['grid']} grid (K = {q['features']}); the "
                  f"2^{q['features']} coalition values took {q['table_seconds']:.0f} s; relative L2 error to exact "
                  f"Shapley values, mean of {q['seeds']} seeds (evaluations in brackets).", "",
                  quality_table(q), ""]
    return "\n".join(lines)


def table(s: dict[str, Any]) -> str:
    lines = ["| method | row | evaluations | seconds | ms / evaluation | time / ours | ours / floor | "
             "max rel diff to Captum |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for method, w in s["methods"].items():
        floor = w["rows"]["forward floor"]["seconds"]
        for label, r in w["rows"].items():
            extra = f" (ppe {r['perturbations_per_eval']})" if "perturbations_per_eval" in r else ""
            diff = w["max_rel_diff_vs_captum"].get(label)
            if label.startswith("shap PartitionExplainer"):
                diff = None  # compared with ours, not Captum: in the JSON (max_rel_diff_vs_shap)
            lines.append(f"| {method} | {label}{extra} | {r['evaluations']} | {r['seconds']:.3f} | "
                         f"{r['ms_per_evaluation']:.2f} | {r['time_over_ours']:.2f}x | "
                         f"{w['rows']['ours']['seconds'] / floor:.2f} |" if label == "ours" else
                         f"| {method} | {label}{extra} | {r['evaluations']} | {r['seconds']:.3f} | "
                         f"{r['ms_per_evaluation']:.2f} | {r['time_over_ours']:.2f}x | |")
            lines[-1] += f" {diff:.1e} |" if diff is not None else " |"
    return "\n".join(lines)


def quality_table(q: dict[str, Any]) -> str:
    names = list(q["curves"])
    lines = ["| budget | " + " | ".join(names) + " |", "|---:|" + "---:|" * len(names)]
    for i, budget in enumerate(q["budgets"]):
        lines.append(f"| {budget} | " + " | ".join(
            f"{q['curves'][n][i]['error']:.1e} ({q['curves'][n][i]['evaluations']})" for n in names) + " |")
    lines += ["", "| budget | best peer (error, evaluations) | " + " | ".join(
        f"{n}: error, evaluations to match / peer's" for n in names if n.startswith("xc.")) + " |",
        "|---:|---|" + "---|" * sum(n.startswith("xc.") for n in names)]
    for budget, t in q["targets"].items():
        cells = []
        for n in (n for n in names if n.startswith("xc.")):
            frac = t[n]["fraction_of_peer"]
            bound = "" if t[n]["bound"] == "=" else "<= "
            cells.append(f"{t[n]['error']:.1e}, {'not reached' if frac is None else f'{bound}{frac:.2f}'}")
        lines.append(f"| {budget} | {t['best_peer']} ({t['best_peer_error']:.1e}, {t['best_peer_evaluations']}) | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="112", help="ResNet-18 image sides, comma-separated ('' for none)")
    parser.add_argument("--small-size", type=int, default=64, help="the small CNN's image side (speed; 0: skip)")
    parser.add_argument("--quality-size", type=int, default=None,
                        help="the small CNN's side for quality (default 64, 16 with --quick; 0: skip)")
    parser.add_argument("--quality-grid", type=int, default=4, help="grid cells per side for quality (K = grid²)")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="fewer budgets and seeds, 500 coalitions for memory")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    os.environ.setdefault("TQDM_DISABLE", "1")  # lime_image's progress bar
    import torch

    import xai_core  # noqa: F401  (its XLA CPU defaults, before JAX starts)
    from benchmarks.models import torch_resnet18, torch_small_resnet
    from benchmarks.run import machine, machine_tag
    torch.set_num_threads(os.cpu_count() or 1)
    repeats = args.repeats if args.repeats is not None else (1 if args.quick else 2)
    seeds = args.seeds or (3 if args.quick else 5)
    budgets = (64, 256, 1024) if args.quick else (64, 128, 256, 512, 1024, 2048)
    t0 = time.perf_counter()
    result: dict[str, Any] = {"repeats": repeats, "quick": args.quick, "target": TARGET, "machine": machine(),
                              "speed": []}
    if args.small_size:
        result["speed"].append(speed("small CNN", torch_small_resnet(), args.small_size, 8, orders=4,
                                     coalitions=256, repeats=repeats, peers=True, memory_coalitions=None))
        print(table(result["speed"][-1]), flush=True)
    for side in (int(s) for s in args.sizes.split(",") if s):
        result["speed"].append(speed("ResNet-18", torch_resnet18(), side, 8 if side < 224 else 16, orders=2,
                                     coalitions=256, repeats=repeats, peers=False,
                                     memory_coalitions=500 if args.quick else 2000))
        print(table(result["speed"][-1]), flush=True)
    quality_size = args.quality_size if args.quality_size is not None else (16 if args.quick else 64)
    if quality_size:
        result["quality"] = quality(quality_size, args.quality_grid, budgets, seeds)
        print(quality_table(result["quality"]), flush=True)
    import lime
    import shap
    result["versions_extra"] = {"shap": shap.__version__, "lime": getattr(lime, "__version__", "0.2")}
    result["load_average_at_end"] = os.getloadavg()
    result["wall_seconds"] = time.perf_counter() - t0
    path = args.out or RESULTS / f"model_agnostic-{machine_tag(result['machine'])}.json"
    path.write_text(json.dumps(result, indent=1, default=float))
    path.with_suffix(".md").write_text(markdown(result) + "\n")
    if "quality" in result:
        plot(result, path.with_suffix(".png"))
    print(markdown(result))
    print(f"\nwrote {path} ({result['wall_seconds']:.0f} s)")


if __name__ == "__main__":
    main()
