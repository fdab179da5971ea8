"""TCAV: ``xc.concepts.tcav`` against Captum's ``captum.concept.TCAV`` on the same torch models,
2 layers x 3 concepts x 10 random sets, one target.

    python -m benchmarks.concepts            # small residual CNN at 64² and ResNet-18 at 112², about 10 minutes on 2 cores
    python -m benchmarks.concepts --quick    # the small CNN (width 8) at 32², 10 examples a set: under a minute

Models: ``torch_small_resnet`` (layers ``layer1``, ``layer2``) and ``torch_resnet18`` (``layer3``,
``layer4``), random weights, ``from_torch`` for ours. Each concept and random set holds ``--examples``
images (uniform noise, each concept with its own offset and scale, so that the CAVs separate
something), and ``--inputs`` images are explained for class 3. Every run trains every CAV (30
concept-vs-random and 9 random-vs-random classifiers per layer) and scores the inputs, as a
first call of Captum's ``interpret`` does. Rows, each the median of ``--repeats`` calls after a
warm-up:

- ``ours``: ``xc.concepts.tcav(m, layers, concepts, randoms, key=...)`` (the activations of
  both layers from one forward pass per chunk of examples, then one compiled program trains
  every classifier) and the call ``fn(inputs, 3)`` (one compiled program per chunk for the
  directional derivatives at both layers), results as numpy; ``ours, first call`` the same with
  its compilations; ``ours, CAVs`` and ``ours, scores`` its two halves; ``ours, classifiers
  only``: the 2 x 39 classifiers on activations computed before (``cavs.fit``, jitted);
- ``torch forward of the examples``: the model's forward passes over every concept and random
  example in torch, batches of 64, no gradient: the part of Captum's run it cannot avoid;
- ``captum``: ``TCAV(net, layers, save_path=<fresh folder>)`` and ``interpret`` on the
  experimental sets of Captum's tutorial (each concept with each random set, random set 0 with
  each other one), its ``DefaultClassifier`` (sklearn's ``SGDClassifier``), activations written to
  and read back from the folder as Captum does; ``captum, CAVs cached``: ``interpret`` again on
  the same folder (it loads the CAVs and only computes the scores).

``agreement``: ours given Captum's trained CAVs (``classifier=CAVs(...)``) against Captum's scores
(largest absolute difference of ``sign_count`` and of ``magnitude`` relative to Captum's largest)
and the p-values (ours against scipy's ``ttest_ind`` on Captum's scores). Writes
``results/concepts-<machine>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
TARGET, CONCEPTS, RANDOMS = 3, 3, 10


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _sets(side: int, n: int, inputs: int) -> tuple[dict[str, Any], list[Any], Any]:
    import numpy as np
    rng = np.random.default_rng(0)
    draw = lambda k, lo=0.0, hi=1.0: (lo + (hi - lo) * rng.uniform(size=(k, 3, side, side))).astype(np.float32)  # noqa: E731
    concepts = {f"concept_{c}": draw(n, 0.2 * c, 0.6 + 0.2 * c) for c in range(CONCEPTS)}
    return concepts, [draw(n) for _ in range(RANDOMS)], draw(inputs)


def _captum(net: Any, layers: list[str], concepts: dict[str, Any], randoms: list[Any], inputs: Any,
            folder: str) -> tuple[Any, list[Any], dict[str, Any]]:
    import torch
    from captum.concept import TCAV, Concept
    names = list(concepts)
    loader = lambda a: torch.utils.data.DataLoader(torch.from_numpy(a), batch_size=64)  # noqa: E731
    cs = [Concept(i, name, loader(concepts[name])) for i, name in enumerate(names)]
    rs = [Concept(len(names) + j, f"random_{j}", loader(r)) for j, r in enumerate(randoms)]
    sets = [[c, r] for c in cs for r in rs] + [[rs[0], r] for r in rs[1:]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tcav = TCAV(net, layers, save_path=folder)
        scores = tcav.interpret(torch.from_numpy(inputs), sets, target=TARGET)
    return tcav, sets, scores


def _agreement(m: Any, layers: list[str], concepts: dict[str, Any], randoms: list[Any], inputs: Any, tcav: Any,
               sets: list[Any], scores: dict[str, Any]) -> dict[str, float]:
    import numpy as np
    from scipy import stats

    import xai_core as xc
    c, r = len(concepts), len(randoms)
    weights, random = {}, {}
    for layer in layers:
        rows = []
        for s in sets:
            st = tcav.cavs["-".join(str(k.id) for k in s)][layer].stats
            rows.append(st["weights"][list(st["classes"]).index(s[0].id)].numpy())
        weights[layer], random[layer] = np.stack(rows[:c * r]).reshape(c, r, -1), np.stack(rows[c * r:])
    ours = xc.concepts.tcav(m, layers, concepts, randoms, classifier=xc.concepts.CAVs(tuple(concepts), weights, random))
    result = ours(inputs, TARGET)
    out = {"sign_count": 0.0, "magnitude": 0.0, "p_value": 0.0}
    warnings.filterwarnings("ignore", "Precision loss")  # scipy, on scores that are all equal
    for i, layer in enumerate(layers):
        for score in ("sign_count", "magnitude"):
            theirs = np.array([float(scores["-".join(str(k.id) for k in s)][layer][score][0]) for s in sets])
            mine = np.concatenate([result.scores[score][i].ravel(), result.random_scores[score][i]])
            out[score] = max(out[score], float(np.abs(mine - theirs).max() / np.abs(theirs).max()))
            p = [stats.ttest_ind(theirs[k * r:(k + 1) * r], theirs[c * r:]).pvalue for k in range(c)]
            out["p_value"] = max(out["p_value"], float(np.nanmax(np.abs(result.p_values[score][i] - p))))
    return out


def run_model(name: str, net: Any, side: int, layers: list[str], n: int, n_inputs: int, repeats: int) -> dict[str, Any]:
    import jax
    import numpy as np
    import torch

    import xai_core as xc
    from benchmarks.run import jitted, measure, torch_run
    from xai_core.adapters import from_torch
    from xai_core.inside.concepts.cavs import fit, pairs

    concepts, randoms, inputs = _sets(side, n, n_inputs)
    m = from_torch(net, torch.from_numpy(inputs[:1]))
    key = jax.random.key(0)

    def ours_all() -> Any:
        fn = xc.concepts.tcav(m, layers, concepts, randoms, key=key)
        return np.asarray(fn(inputs, TARGET).scores["sign_count"])

    t = time.perf_counter()
    ours_all()
    first = time.perf_counter() - t
    _log(f"{name}: ours' first call {first:.1f} s")
    rows = {"ours": measure(lambda: (ours_all, 0.0), repeats)}
    rows["ours"]["compile"] = first - rows["ours"]["seconds"]
    fn = xc.concepts.tcav(m, layers, concepts, randoms, key=key)
    rows["ours, CAVs"] = measure(lambda: (lambda: np.asarray(xc.concepts.train_cavs(
        m, layers, concepts, randoms, key=key).weights[layers[-1]]), 0.0), repeats)
    rows["ours, scores"] = measure(lambda: (lambda: fn(inputs, TARGET).scores["sign_count"], 0.0), repeats)
    stacked = np.concatenate([*concepts.values(), *randoms])
    heads = [jax.jit(jax.vmap(lambda x, la=la: m.split(la, x)[0](x).reshape(-1))) for la in layers]
    acts = [np.concatenate([h(stacked[i:i + 64]) for i in range(0, len(stacked), 64)]) for h in heads]
    index, mask = jax.numpy.asarray(pairs(CONCEPTS, RANDOMS)), np.ones((CONCEPTS + RANDOMS, n), bool)

    def classifiers(acts: list[Any], key: Any) -> Any:
        fits = [fit(a.reshape(CONCEPTS + RANDOMS, n, -1), mask, index, key) for a in acts]
        return jax.numpy.stack([w.sum() + accuracy.sum() for w, accuracy in fits])

    rows["ours, classifiers only"] = measure(lambda: jitted(classifiers, acts, key), repeats)
    with torch.no_grad():
        rows["torch forward of the examples"] = measure(lambda: torch_run(lambda: torch.cat([
            net(torch.from_numpy(stacked[i:i + 64])) for i in range(0, len(stacked), 64)])), repeats, torch_side=True)
    _log(f"{name}: ours {rows['ours']['seconds']:.2f} s")
    folders = []

    def captum_fresh() -> Any:
        folders.append(tempfile.mkdtemp(prefix="tcav-"))
        return _captum(net, layers, concepts, randoms, inputs, folders[-1])

    rows["captum"] = measure(lambda: (captum_fresh, 0.0), repeats, torch_side=True)
    tcav, sets, scores = rows["captum"].pop("out")
    cached = folders[-1]
    rows["captum, CAVs cached"] = measure(
        lambda: (lambda: _captum(net, layers, concepts, randoms, inputs, cached)[2], 0.0), repeats, torch_side=True)
    _log(f"{name}: captum {rows['captum']['seconds']:.2f} s")
    agreement = _agreement(m, layers, concepts, randoms, inputs, tcav, sets, scores)
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
    for r in rows.values():
        r.pop("out", None)
    return {"model": name, "side": side, "layers": layers, "examples_per_set": n, "inputs": n_inputs,
            "first_call": first, "rows": rows, "agreement": agreement,
            "captum_over_ours": rows["captum"]["seconds"] / rows["ours"]["seconds"],
            "captum_over_ours_first_call": rows["captum"]["seconds"] / first,
            "captum_cached_over_ours_scores": rows["captum, CAVs cached"]["seconds"] / rows["ours, scores"]["seconds"]}


def table(w: dict[str, Any]) -> str:
    lines = ["| implementation | seconds | peak MiB | added MiB |", "|---|---:|---:|---:|"]
    lines += [f"| {k} | {r['seconds']:.3f} | {r['peak_mib']:.0f} | {r['added_mib']:.0f} |" for k, r in w["rows"].items()]
    lines.insert(2, f"| ours, first call (compiles included) | {w['first_call']:.3f} | | |")
    return "\n".join(lines)


def markdown(result: dict[str, Any]) -> str:
    info = result["machine"]
    lines = [f"# TCAV on {info['gpu'] or info['cpu']} ({info['cores']} cores)", "",
             f"{CONCEPTS} concepts x {RANDOMS} random sets, 2 layers, target {TARGET}; median of {result['repeats']} "
             f"calls after a warm-up. Versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()) + ".", ""]
    for w in result["models"]:
        a = w["agreement"]
        lines += [f"## {w['model']} at {w['side']}², layers {', '.join(w['layers'])}, {w['examples_per_set']} "
                  f"examples a set, {w['inputs']} inputs", "", table(w), "",
                  f"Captum / ours: **{w['captum_over_ours']:.1f}x** ({w['captum_over_ours_first_call']:.1f}x against "
                  f"ours' first call, compiles included); Captum with its CAVs cached / ours' scores: "
                  f"{w['captum_cached_over_ours_scores']:.1f}x. Ours with Captum's CAVs against Captum: sign_count "
                  f"{a['sign_count']:.1e}, magnitude {a['magnitude']:.1e} (relative), p-values {a['p_value']:.1e}.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the small CNN only, width 8 at 32², 10 examples a set")
    parser.add_argument("--examples", type=int, default=None, help="examples per concept and random set (default 50)")
    parser.add_argument("--inputs", type=int, default=None, help="inputs explained (default 50)")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    import torch

    import xai_core  # noqa: F401  (its XLA CPU defaults, before JAX starts)
    from benchmarks.models import torch_resnet18, torch_small_resnet
    from benchmarks.run import machine, machine_tag
    torch.set_num_threads(os.cpu_count() or 1)
    repeats = args.repeats if args.repeats is not None else (1 if args.quick else 3)
    n = args.examples or (10 if args.quick else 50)
    n_inputs = args.inputs or (10 if args.quick else 50)
    t0 = time.perf_counter()
    result: dict[str, Any] = {"repeats": repeats, "quick": args.quick, "machine": machine(), "models": []}
    if args.quick:
        models = [("small CNN (width 8)", torch_small_resnet(width=8), 32, ["layer1", "layer2"])]
    else:
        models = [("small CNN", torch_small_resnet(), 64, ["layer1", "layer2"]),
                  ("ResNet-18", torch_resnet18(), 112, ["layer3", "layer4"])]
    for name, net, side, layers in models:
        result["models"].append(run_model(name, net, side, layers, n, n_inputs, repeats))
        print(table(result["models"][-1]), flush=True)
    result["load_average_at_end"] = os.getloadavg()
    result["wall_seconds"] = time.perf_counter() - t0
    path = args.out or RESULTS / f"concepts-{machine_tag(result['machine'])}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1, default=float))
    path.with_suffix(".md").write_text(markdown(result) + "\n")
    print(markdown(result))
    print(f"\nwrote {path} ({result['wall_seconds']:.0f} s)")


if __name__ == "__main__":
    main()
