"""Attacks and training-data influence (issue 29) against Captum on the same torch models.

    python -m benchmarks.robust_influence            # the full sizes; about 10 minutes on 2 cores
    python -m benchmarks.robust_influence --quick    # small sizes (the smoke test), under a minute

**Attacks.** PGD (L-infinity, radius 8/255, step 2/255, 20 steps, random start, bounds [0, 1],
untargeted at the model's own prediction) and FGSM (epsilon 8/255) on a batch of ``--batch`` (32)
images: the small residual CNN (``torch_small_resnet``, 10 classes) at 64² and ResNet-18
(``torch_resnet18``, 1000 classes) at 112², random weights. Ours is
``jax.jit(jax.vmap(xc.robust.pgd(m.logits, ...)))`` on ``from_torch``'s model (weights as
arguments); Captum's ``PGD`` / ``FGSM`` run the torch model on the whole batch, with the
cross-entropy of the logits as ``loss_func`` (ours: ``loss="cross_entropy"``, the default). Both start
from the same point: Captum's own random draw under ``torch.manual_seed``, replayed in ours through
``start=`` (as tests/test_robust_refs.py does), so ``max abs diff`` compares the adversarial images.

**Influence.** A small torch MLP (``--features`` 64 -> 256 -> 256 -> 10, tanh, float32), three
checkpoints saved with ``torch.save`` after a few SGD steps each (state_dict plus
``"learning_rate"``), ``--train`` (10,000) training examples and ``--test`` (100) test examples:
``TracInCP`` (mode ``"full"``: every parameter's gradient) scores ``tests x trains`` and
self-influence of the training set, and ``TracInCPFast`` against our ``mode="last_layer"``. Captum
runs its fastest configuration: ``sample_wise_grads_per_batch=True`` with a summed cross-entropy
(per-example gradients by hooks; a per-example loss makes it loop one backward per example),
``batch_size`` ``--captum-batch`` (1,000). Ours: ``xc.influence.tracin`` / ``self_influence`` with
``batch_size="auto"`` and again with ``--our-batch`` (1,024), checkpoints read by ``xc.influence.from_state_dict``. Captum's rows run on
the first ``--captum-train`` training examples when given (labelled ``(subset)``; its time is then
also given scaled linearly to ``--train``, labelled ``extrapolated``: both its loops are linear in
the training examples). ``max rel diff``: ours against Captum, relative to Captum's largest value.

Each row: the median of ``--repeats`` calls after one warm-up call (compilation is in the warm-up;
``compile`` is the first call's extra time), ``peak_mib`` / ``added_mib`` as
``benchmarks.run.measure`` (CPU: the process's resident set, its peak during the calls and that
peak less the resident set before; GPU: the framework's allocator). Writes
``results/robust_influence-<machine>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

# XLA:CPU's own convolution kernels (see benchmarks/run.py's CPU_FLAGS); before JAX starts
if "xla_cpu_experimental_ynn_fusion_type" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_experimental_ynn_fusion_type="
                               "-individual_convolution,-reduce").strip()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import xai_core as xc  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
RADIUS, STEP = 8 / 255, 2 / 255
LRS = (0.3, 0.2, 0.1)


def _strip(r: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in r.items() if k not in ("out", "runs")}


def _diff(ours: Any, theirs: Any, relative: bool) -> float:
    a, b = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    err = float(np.abs(a - b).max())
    return err / float(np.abs(b).max()) if relative else err


# --------------------------------------------------------------------------- attacks

def attack_setup(net: Any, batch: int, size: int, steps: int) -> SimpleNamespace:
    """The torch model's batch (in its dtype), its predictions, the adapter ``m``, Captum's ``PGD`` and
    ``FGSM`` with the cross-entropy, Captum's random start drawn after ``torch.manual_seed(5)`` (to
    replay in ours) and our jitted ``pgd(m, xs, ts, start)`` and ``fgsm(m, xs, ts)`` (shared with
    ``benchmarks.attack_agreement``)."""
    import torch
    from captum.robust import FGSM, PGD

    from xai_core.adapters import from_torch

    dtype = next(net.parameters()).dtype
    xs_t = torch.rand((batch, 3, size, size), generator=torch.Generator().manual_seed(1)).to(dtype)
    with torch.no_grad():
        ts_t = net(xs_t).argmax(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = from_torch(net, xs_t[:1])
    loss = lambda out, t: torch.nn.functional.cross_entropy(out, t, reduction="none")  # noqa: E731
    pgd_t = PGD(net, loss_func=loss, lower_bound=0.0, upper_bound=1.0)
    torch.manual_seed(5)
    start = jnp.asarray((pgd_t._random_point(xs_t, RADIUS, "Linf", 1) - xs_t).numpy())
    pgd = jax.jit(jax.vmap(lambda m, x, t, d: xc.robust.pgd(m.logits, RADIUS, STEP, steps, random_start=True,
                                                            bounds=(0.0, 1.0))(x, t, start=d),
                           in_axes=(None, 0, 0, 0)))
    fgsm = jax.jit(jax.vmap(lambda m, x, t: xc.robust.fgsm(m.logits, RADIUS, bounds=(0.0, 1.0))(x, t),
                            in_axes=(None, 0, 0)))
    return SimpleNamespace(xs_t=xs_t, ts_t=ts_t, m=m, xs=jnp.asarray(xs_t.numpy()), ts=jnp.asarray(ts_t.numpy()),
                           loss=loss, pgd_t=pgd_t, fgsm_t=FGSM(net, loss_func=loss, lower_bound=0.0, upper_bound=1.0),
                           start=start, pgd=pgd, fgsm=fgsm)


def attacks(name: str, net: Any, size: int, batch: int, steps: int, repeats: int) -> dict[str, Any]:
    import torch

    from benchmarks.run import measure, torch_run

    a = attack_setup(net, batch, size, steps)
    xs_t, ts_t, m, xs, ts, loss, pgd, fgsm, start = a.xs_t, a.ts_t, a.m, a.xs, a.ts, a.loss, a.pgd, a.fgsm, a.start

    def captum_pgd() -> Any:
        torch.manual_seed(5)  # the draw replayed in ours
        return a.pgd_t.perturb(xs_t, RADIUS, STEP, steps, ts_t, random_start=True, norm="Linf")

    grad = jax.jit(jax.vmap(lambda m, x, t: jax.grad(lambda x: -jax.nn.log_softmax(m.logits(x))[t])(x),
                            in_axes=(None, 0, 0)))

    def torch_grad() -> Any:  # the input's gradient only, as Captum's attacks take it
        x = xs_t.clone().requires_grad_(True)
        return torch.autograd.grad(loss(net(x), ts_t).sum(), x)[0]

    rows: dict[str, Any] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        floor = {"ours": measure(lambda: ((lambda: np.asarray(jax.block_until_ready(grad(m, xs, ts)))), 0.0),
                                 max(repeats, 3))["seconds"],
                 "torch": measure(lambda: torch_run(torch_grad), max(repeats, 3), torch_side=True)["seconds"]}
        for method, ours, theirs in (
                ("PGD", lambda: pgd(m, xs, ts, start), captum_pgd),
                ("FGSM", lambda: fgsm(m, xs, ts), lambda: a.fgsm_t.perturb(xs_t, RADIUS, ts_t))):
            o = measure(lambda ours=ours: ((lambda: np.asarray(jax.block_until_ready(ours()))), 0.0), repeats)
            c = measure(lambda theirs=theirs: torch_run(theirs), repeats, torch_side=True)
            o["max_abs_diff_vs_captum"] = _diff(o["out"], c["out"], relative=False)
            o["compile"] = o["first_call"] - o["seconds"]
            c["compile"] = None
            rows[method] = {"ours": _strip(o), "captum": _strip(c), "captum / ours": c["seconds"] / o["seconds"],
                            "gradients": steps if method == "PGD" else 1}
    return {"model": name, "size": size, "batch": batch, "steps": steps, "rows": rows, "gradient_floor": floor}


# --------------------------------------------------------------------------- influence

def _mlp(features: int, hidden: int) -> Any:
    from torch import nn
    return nn.Sequential(nn.Linear(features, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
                         nn.Linear(hidden, 10))


def influence(n_train: int, n_test: int, features: int, hidden: int, captum_train: int | None,
              captum_batch: int, our_batch: int, repeats: int) -> dict[str, Any]:
    import torch
    from captum.influence import TracInCP, TracInCPFast
    from torch import nn
    from torch.utils.data import TensorDataset

    from benchmarks.run import measure, torch_run
    from xai_core.adapters import from_torch

    torch.manual_seed(0)
    net = _mlp(features, hidden)
    g = torch.Generator().manual_seed(1)
    xs = torch.randn((n_train, features), generator=g)
    ys = torch.randint(0, 10, (n_train,), generator=g)
    tx = torch.randn((n_test, features), generator=g)
    ty = torch.randint(0, 10, (n_test,), generator=g)
    folder = Path(tempfile.mkdtemp(prefix="tracin_"))
    paths = []
    for i, lr in enumerate(LRS):  # a few SGD steps between checkpoints
        opt = torch.optim.SGD(net.parameters(), lr=lr)
        for _ in range(3):
            opt.zero_grad()
            nn.functional.cross_entropy(net(xs[:1000]), ys[:1000]).backward()
            opt.step()
        torch.save({**net.state_dict(), "learning_rate": lr}, folder / f"checkpoint_{i}.pt")
        paths.append(str(folder / f"checkpoint_{i}.pt"))
    net.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = from_torch(net, xs[:1])
    checkpoints = [xc.influence.from_state_dict(torch.load(p), like=m.params) for p in paths]

    def loss(params: dict, ex: tuple) -> jax.Array:
        x, y = ex
        return -jax.nn.log_softmax(m.with_params(params).logits(x))[y]

    def load(model: nn.Module, path: str) -> float:
        state = torch.load(path)
        lr = state.pop("learning_rate")
        model.load_state_dict(state)
        return lr

    jx, jt = (jnp.asarray(xs.numpy()), jnp.asarray(ys.numpy())), (jnp.asarray(tx.numpy()), jnp.asarray(ty.numpy()))
    sub = captum_train or n_train
    data = TensorDataset(xs[:sub], ys[:sub])
    common = {"checkpoints_load_func": load, "loss_fn": nn.CrossEntropyLoss(reduction="sum"), "batch_size": captum_batch}
    full = TracInCP(net, data, paths, sample_wise_grads_per_batch=True, **common)
    fast = TracInCPFast(net, net[-1], data, paths, **common)
    cases = {
        "TracInCP scores": (lambda **kw: xc.influence.tracin(loss, checkpoints, jx, jt, **kw),
                            lambda: full.influence((tx, ty)), (slice(None), slice(0, sub))),
        "TracInCP self-influence": (lambda **kw: xc.influence.self_influence(loss, checkpoints, jx, **kw),
                                    lambda: full.self_influence(), slice(0, sub)),
        "TracInCPFast / last_layer scores": (
            lambda **kw: xc.influence.tracin(loss, checkpoints, jx, jt, mode="last_layer", **kw),
            lambda: fast.influence((tx, ty)), (slice(None), slice(0, sub))),
        "TracInCPFast / last_layer self-influence": (
            lambda **kw: xc.influence.self_influence(loss, checkpoints, jx, mode="last_layer", **kw),
            lambda: fast.self_influence(), slice(0, sub)),
    }
    ours_bs = f"ours, batch_size {our_batch}"
    rows: dict[str, Any] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for what, (ours, theirs, cut) in cases.items():
            o = measure(lambda ours=ours: ((lambda: np.asarray(jax.block_until_ready(ours()))), 0.0), repeats)
            b = measure(lambda ours=ours: ((lambda: np.asarray(jax.block_until_ready(ours(batch_size=our_batch)))),
                                           0.0), repeats)
            c = measure(lambda theirs=theirs: torch_run(theirs), repeats, torch_side=True)
            for r in (o, b):
                r["max_rel_diff_vs_captum"] = _diff(r["out"][cut], c["out"], relative=True)
                r["compile"] = r["first_call"] - r["seconds"]
            c["compile"] = None
            row = {"ours": _strip(o), ours_bs: _strip(b), "captum": _strip(c)}
            if sub < n_train:
                row["captum"]["subset"] = sub
                row["captum extrapolated"] = {"seconds": c["seconds"] * n_train / sub}
            row["captum / ours"] = c["seconds"] * n_train / sub / o["seconds"]
            row[f"captum / {ours_bs}"] = c["seconds"] * n_train / sub / b["seconds"]
            rows[what] = row
    params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(m.params))
    return {"model": f"MLP {features}-{hidden}-{hidden}-10 ({params} parameters)", "train": n_train,
            "test": n_test, "checkpoints": len(paths), "captum_train": sub, "captum_batch": captum_batch,
            "our_batch": our_batch,
            "rows": rows}


# --------------------------------------------------------------------------- report

def _mib(r: dict[str, Any]) -> str:
    return f"{r['peak_mib']:.0f} / {r['added_mib']:.0f}" if "peak_mib" in r else "-"


def markdown(result: dict[str, Any]) -> str:
    info = result["machine"]
    lines = [f"# Attacks and influence against Captum on {info['gpu'] or info['cpu']} ({info['cores']} cores)", "",
             "Median seconds after a warm-up; peak / added MiB as `benchmarks.run.measure`; see "
             "`benchmarks/robust_influence.py` for the set-up. Versions: "
             + ", ".join(f"{k} {v}" for k, v in info["versions"].items()) + ".", ""]
    for run in result["attacks"]:
        fl = run["gradient_floor"]
        lines += [f"## {run['model']} at {run['size']}², batch {run['batch']} (PGD-{run['steps']}, FGSM)", "",
                  "| attack | implementation | seconds | first call s | peak / added MiB | max abs diff vs Captum |",
                  "|---|---|---:|---:|---:|---:|"]
        for method, rows in run["rows"].items():
            for k in ("ours", "captum"):
                d = rows[k].get("max_abs_diff_vs_captum")
                lines.append(f"| {method} | {k} | {rows[k]['seconds']:.3g} | {rows[k]['first_call']:.3g} | "
                             f"{_mib(rows[k])} | {'-' if d is None else f'{d:.1e}'} |")
            n = rows["gradients"]
            lines += [f"| {method} | floor: {n} input gradient(s) of the batch, JAX / torch | "
                      f"{n * fl['ours']:.3g} / {n * fl['torch']:.3g} | | | |",
                      f"| {method} | **Captum / ours** | **{rows['captum / ours']:.2f}x** (ours / our floor "
                      f"{rows['ours']['seconds'] / (n * fl['ours']):.2f}x, Captum / torch floor "
                      f"{rows['captum']['seconds'] / (n * fl['torch']):.2f}x) | | | |"]
        lines.append("")
    inf = result["influence"]
    sub = "" if inf["captum_train"] == inf["train"] else f"; Captum on the first {inf['captum_train']}"
    lines += [f"## Influence: {inf['model']}, {inf['train']} training x {inf['test']} test examples, "
              f"{inf['checkpoints']} checkpoints (Captum batch_size {inf['captum_batch']}{sub})", "",
              "| quantity | implementation | seconds | first call s | peak / added MiB | max rel diff vs Captum |",
              "|---|---|---:|---:|---:|---:|"]
    for what, rows in inf["rows"].items():
        for k in ("ours", f"ours, batch_size {inf['our_batch']}", "captum", "captum extrapolated"):
            if k in rows:
                r = rows[k]
                d = r.get("max_rel_diff_vs_captum")
                label = k + (f" (subset of {r['subset']})" if "subset" in r else "")
                first = f"{r['first_call']:.3g}" if "first_call" in r else ""
                lines.append(f"| {what} | {label} | {r['seconds']:.3g} | {first} | {_mib(r)} | "
                             f"{'-' if d is None else f'{d:.1e}'} |")
        cold = rows["captum"]["seconds"] * inf["train"] / inf["captum_train"] / rows["ours"]["first_call"]
        lines.append(f"| {what} | **Captum / ours** | **{rows['captum / ours']:.2f}x** (batch_size "
                     f"{inf['our_batch']}: {rows['captum / ours, batch_size ' + str(inf['our_batch'])]:.2f}x; "
                     f"our first call, tracing and compiling included: {cold:.2f}x)"
                     f"{' (extrapolated)' if 'captum extrapolated' in rows else ''} | | | |")
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from benchmarks.models import torch_resnet18, torch_small_resnet
    from benchmarks.run import machine, machine_tag
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--batch", type=int, default=None, help="images per attack batch (32; --quick 4)")
    parser.add_argument("--train", type=int, default=None, help="training examples (10000; --quick 500)")
    parser.add_argument("--test", type=int, default=None, help="test examples (100; --quick 20)")
    parser.add_argument("--features", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--captum-train", type=int, default=None, help="Captum on this many training examples")
    parser.add_argument("--captum-batch", type=int, default=1000)
    parser.add_argument("--our-batch", type=int, default=1024, help="ours again with this batch_size")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    q = args.quick
    batch = args.batch or (4 if q else 32)
    runs = [attacks("small residual CNN", torch_small_resnet(), 32 if q else 64, batch, 5 if q else 20, args.repeats)]
    if not q:
        runs.append(attacks("ResNet-18", torch_resnet18(), 112, batch, 20, args.repeats))
    inf = influence(args.train or (500 if q else 10_000), args.test or (20 if q else 100), args.features,
                    64 if q else args.hidden, args.captum_train, min(args.captum_batch, 100) if q else args.captum_batch,
                    min(args.our_batch, 100) if q else args.our_batch, args.repeats)
    info = machine()
    result = {"machine": info, "xla_flags": os.environ.get("XLA_FLAGS", ""), "attacks": runs, "influence": inf}
    out = Path(args.out) if args.out else RESULTS / f"robust_influence-{machine_tag(info)}.json"
    out.write_text(json.dumps(result, indent=1, default=str))
    out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
