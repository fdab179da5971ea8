"""Guided IG, Blur IG and XRAI (issue 28) against PAIR's ``saliency`` 0.2.1 on the same function.

    python -m benchmarks.paths                 # small CNN at 64², ResNet-18 at 112²; about 15 minutes on 2 cores
    python -m benchmarks.paths --quick         # small CNN at 32² only, fewer steps (the smoke test)
    python -m benchmarks.paths --sizes 224     # ResNet-18 at 224²

**The function.** The small residual CNN (``torch_small_resnet``, 10 classes) at 64² and ResNet-18
(``torch_resnet18``, 1000 classes) at each of ``--sizes``, random weights, through ``from_torch``;
target 3. PAIR's images are HxWxC, so both sides attribute ``score(x) = m.score(3)(x moved to
CxHxW)``: PAIR's ``call_model_function`` calls ``jax.jit(jax.vmap(jax.grad(score)))`` on the
batch it is given, where ``grad`` is ``xc.gradient`` (channels-last kernels, as ours; weights as
arguments, compiled once before timing), so PAIR's loop and ours
spend the same gradients; what differs is everything around them.

**Rows**, each the median of ``--repeats`` calls after a warm-up, seconds per image:
- ``ours``: ``jax.jit`` of the method on one image; ``ours, batch B``: ``jax.vmap`` over B images
  (``--batch``, 8), per image;
- ``pair``: PAIR's ``GetMask`` with its defaults; Blur IG and XRAI also with ``batch_size=20``
  (``pair, batch 20``; its default is 1);
- ``floor``: the gradients the method needs, nothing else: Guided IG's ``steps`` gradients one
  after another (a ``lax.fori_loop``; each step needs the previous one's point), Blur IG's
  ``steps`` gradients at once (in chunks of 16), XRAI's two IG runs.
Defaults as PAIR: Guided IG 200 steps (``fraction=0.25, max_dist=0.02``), Blur IG 100 levels up
to ``max_sigma=50``, XRAI with IG of 100 steps from a black and a white baseline and the segments
given (Felzenszwalb at PAIR's scales, computed once on the host, outside the timing). ``max rel
diff``: ours against PAIR (relative to PAIR's largest value; PAIR computes the Guided IG path in
float64 from our float32 gradients, ours in float32). Writes ``results/paths-<machine>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import xai_core as xc
from benchmarks.run import timed
from xai_core.attribution.xrai import xrai_segments
from xai_core.graph import fast_kernels

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
TARGET = 3


def _pair_call(grad: Any) -> Any:
    import saliency.core as sc

    def call(x_batch: np.ndarray, call_model_args: Any = None, expected_keys: Any = None) -> dict[str, np.ndarray]:
        return {sc.INPUT_OUTPUT_GRADIENTS: np.asarray(grad(jnp.asarray(x_batch, jnp.float32)))}

    return call


def _quantile_shim() -> None:
    """numpy 2 removed ``np.quantile(interpolation=)``, which PAIR's Guided IG calls."""
    from types import SimpleNamespace

    import saliency.core.guided_ig as pair_guided
    shim = SimpleNamespace(**{k: getattr(np, k) for k in dir(np) if not k.startswith("__")})
    shim.quantile = lambda a, q, interpolation="linear", **kw: np.quantile(a, q, method=interpolation, **kw)
    pair_guided.np = shim


def bench(name: str, net: Any, size: int, batch: int, repeats: int, quick: bool) -> dict[str, Any]:
    import saliency.core as sc
    import torch

    from xai_core.adapters import from_torch
    m = from_torch(net, torch.zeros(1, 3, size, size))
    xs = jax.random.uniform(jax.random.key(0), (batch, size, size, 3))
    x = xs[0]

    def score(m: Any, x: jax.Array) -> jax.Array:
        return m.score(TARGET)(jnp.moveaxis(x, -1, 0))

    batch_grad = jax.jit(jax.vmap(lambda m, v: xc.gradient(lambda u: score(m, u))(v), in_axes=(None, 0)))
    call = _pair_call(lambda v: batch_grad(m, v))
    steps = {"guided_ig": 20 if quick else 200, "blur_ig": 20 if quick else 100, "xrai": 10 if quick else 100}
    ours = {
        "guided_ig": lambda m, x: xc.guided_ig(lambda v: score(m, v), steps=steps["guided_ig"])(x),
        "blur_ig": lambda m, x: xc.blur_ig(lambda v: score(m, v), steps=steps["blur_ig"])(x),
    }
    pair = {
        "guided_ig": lambda x, **kw: sc.GuidedIG().GetMask(x, call, x_steps=steps["guided_ig"], **kw),
        "blur_ig": lambda x, **kw: sc.BlurIG().GetMask(x, call, steps=steps["blur_ig"], **kw),
    }
    segments = xrai_segments(np.asarray(x))
    ours["xrai"] = lambda m, x: xc.xrai(lambda v: score(m, v), steps=steps["xrai"], segments=segments)(x)
    pair["xrai"] = lambda x, **kw: sc.XRAI().GetMask(
        x, call, segments=list(segments), extra_parameters=sc.XRAIParameters(steps=steps["xrai"]), **kw)
    rows: dict[str, Any] = {}
    for method in ours:
        one = jax.jit(ours[method])
        many = jax.jit(jax.vmap(ours[method], in_axes=(None, 0)))
        r: dict[str, Any] = {}
        r["ours"] = timed(lambda: np.asarray(jax.block_until_ready(one(m, x))), repeats)
        r[f"ours, batch {batch}"] = timed(lambda: np.asarray(jax.block_until_ready(many(m, xs))), repeats)
        r[f"ours, batch {batch}"]["seconds"] /= batch
        r["pair"] = timed(lambda: pair[method](np.asarray(x)), repeats)
        if method in ("blur_ig", "xrai"):
            r["pair, batch 20"] = timed(lambda: pair[method](np.asarray(x), batch_size=20), repeats)
        r["floor"] = timed(_floor(method, m, x, score, steps[method]), repeats)
        ref = np.asarray(r["pair"]["out"], np.float64)
        for k in ("ours", f"ours, batch {batch}"):
            out = r[k]["out"] if k == "ours" else r[k]["out"][0]
            out = out[..., 0] if out.ndim == ref.ndim + 1 else out  # xc.xrai repeats PAIR's HxW map over channels
            r[k]["max_rel_diff_vs_pair"] = float(np.abs(np.asarray(out, np.float64) - ref).max() / np.abs(ref).max())
        rows[method] = {k: {kk: vv for kk, vv in v.items() if kk != "out"} for k, v in r.items()}
        rows[method]["pair / ours"] = r["pair"]["seconds"] / r["ours"]["seconds"]
        rows[method][f"pair / ours, batch {batch}"] = r["pair"]["seconds"] / r[f"ours, batch {batch}"]["seconds"]
        rows[method]["ours / floor"] = r["ours"]["seconds"] / r["floor"]["seconds"]
    return {"model": name, "size": size, "batch": batch, "steps": steps, "rows": rows}


def _floor(method: str, m: Any, x: jax.Array, score: Any, steps: int) -> Any:
    grad = fast_kernels(jax.grad(score, argnums=1))
    if method == "guided_ig":
        def chain(m: Any, x: jax.Array) -> jax.Array:
            return jax.lax.fori_loop(0, steps, lambda i, v: v + 1e-6 * grad(m, v), x)
        fn = jax.jit(chain)
    else:
        n = steps * (2 if method == "xrai" else 1)
        alphas = jnp.linspace(0, 1, n)
        fn = jax.jit(lambda m, x: xc.core.chunking.chunked_sum(lambda i: grad(m, alphas[i] * x), n, 16))
    return lambda: np.asarray(jax.block_until_ready(fn(m, x)))


def markdown(result: dict[str, Any]) -> str:
    info = result["machine"]
    lines = [f"# Guided IG, Blur IG and XRAI against PAIR's saliency on {info['gpu'] or info['cpu']} "
             f"({info['cores']} cores)", "", "Seconds per image, median after a warm-up; see "
             "`benchmarks/paths.py` for the set-up.", ""]
    for run in result["runs"]:
        lines += [f"## {run['model']} at {run['size']}²", "",
                  "| method | implementation | s / image | max rel diff vs PAIR |", "|---|---|---:|---:|"]
        for method, rows in run["rows"].items():
            for k, v in rows.items():
                if isinstance(v, dict):
                    diff = v.get("max_rel_diff_vs_pair")
                    lines.append(f"| {method} | {k} | {v['seconds']:.4g} | {'-' if diff is None else f'{diff:.1e}'} |")
            lines.append(f"| {method} | **PAIR / ours** | **{rows['pair / ours']:.1f}x** (batch "
                         f"{run['batch']}: {rows['pair / ours, batch ' + str(run['batch'])]:.1f}x); ours / floor "
                         f"{rows['ours / floor']:.2f} | |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from benchmarks.models import torch_resnet18, torch_small_resnet
    from benchmarks.run import machine, machine_tag
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sizes", default="112", help="ResNet-18 input sizes, comma-separated")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    _quantile_shim()
    runs = [bench("small residual CNN", torch_small_resnet(), 32 if args.quick else 64, args.batch, args.repeats,
                  args.quick)]
    if not args.quick:
        runs += [bench("ResNet-18", torch_resnet18(), int(s), args.batch, args.repeats, False)
                 for s in args.sizes.split(",") if s]
    info = machine()
    result = {"machine": info, "runs": runs}
    out = Path(args.out) if args.out else RESULTS / f"paths-{machine_tag(info)}.json"
    out.write_text(json.dumps(result, indent=1, default=str))
    out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
