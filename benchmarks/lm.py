"""Language-model attribution (issue 27): ``xc.lm.attribute`` against Captum's LLMAttribution
(FeatureAblation; ShapleyValueSampling, 10 permutations) and LLMGradientAttribution
(LayerIntegratedGradients, 32 steps) on the same torch Llama, and against the forward floor.

    python -m benchmarks.lm                  # prompts of 64 and 256 tokens, about 10 minutes on 2 cores
    python -m benchmarks.lm --quick          # 32 and 64 tokens, smaller model, about a minute

A ``LlamaForCausalLM`` from a small config (4 layers, hidden 128, 4 heads, vocabulary 512;
``--quick``: 2 layers, hidden 64), random weights, prompt and 16 output tokens drawn at random
(seed 0), explained teacher-forced with ``from_torch`` for ours; baseline token 1 for every
method and both sides (the pad id 0 has a zero embedding in Llama, where RMSNorm makes IG's path
a step). Rows per method, each the
median of ``--repeats`` calls after a warm-up (Captum's slowest paths once):

- ``ours``: ``xc.lm.attribute`` with its defaults (one compiled program; the call includes the
  causality check and the host work of building the batch); feature ablation reuses the prefix
  (``xai_core.lm.prefix``), and ``ours, prefix=False`` is the same ablations without it;
- ``forward floor``: the method's evaluations as teacher-forced forwards of ``m.logits`` on distinct
  sequences, jitted and vmapped, chunked to 16 sequences (the perturbation methods' CPU chunk);
- ``captum default``: Captum's defaults, token by token with the model's cache
  (``use_cached_outputs=True``; its scores are wrong after the first output token under
  transformers 5, see tests/test_lm_refs.py); ``captum fastest``: ``forward_in_tokens=False``
  (one teacher-forced pass per perturbation); LayerIG has one path (one call per output token).

``max rel diff``: ours against Captum's teacher-forced result (relative to Captum's largest
value; Shapley sampling draws its own orders, so it has none). Writes ``results/lm-<machine>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import xai_core as xc
from benchmarks.run import timed
from xai_core.core.chunking import chunked_map

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
OUTPUT = 16
BASELINE = 1  # not the pad id 0, whose embedding is zero: RMSNorm(a e) at a ~ 0 is a step IG cannot resolve


def llama(width: int, layers: int, vocab: int, context: int) -> Any:
    import torch
    import transformers
    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=vocab, hidden_size=width, intermediate_size=2 * width,
                                      num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=4,
                                      max_position_embeddings=context, pad_token_id=0)
    return transformers.LlamaForCausalLM(config).eval()


def _once(call: Any) -> dict[str, Any]:
    t = time.perf_counter()
    out = call()
    seconds = time.perf_counter() - t
    return {"seconds": seconds, "runs": [seconds], "out": out}


def _floor(m: Any, ids: np.ndarray, n: int, repeats: int) -> float:
    """``n`` teacher-forced forwards of distinct sequences (one token changed each), jitted."""
    base = jnp.asarray(ids)

    def forward(m: Any, i: jax.Array) -> jax.Array:
        seq = base.at[i % base.shape[0]].set(0)
        return m.logits(m.inputs(m.from_ids(seq)))[-OUTPUT:].sum()

    run = jax.jit(lambda m: chunked_map(lambda i: forward(m, i), n, 16))
    run(m).block_until_ready()
    return timed(lambda: run(m).block_until_ready(), repeats)["seconds"]


def bench(prompt_len: int, width: int, layers: int, repeats: int) -> dict[str, Any]:
    import captum.attr as ca
    import torch
    sys.path.insert(0, str(REPO / "tests"))
    from lm_models import WordTokenizer

    from xai_core.adapters import from_torch
    vocab, tok = 512, WordTokenizer()
    net = llama(width, layers, vocab, prompt_len + OUTPUT + 8)
    rng = np.random.default_rng(0)
    prompt, target = rng.integers(1, vocab, prompt_len).tolist(), rng.integers(1, vocab, OUTPUT).tolist()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ids = torch.tensor([prompt])
        m = from_torch(net, {"input_ids": ids, "attention_mask": torch.ones_like(ids)})
    inp = ca.TextTokenInput(tok.text(prompt), tok, baselines=BASELINE)
    tgt = torch.tensor(target)
    rows: dict[str, dict[str, Any]] = {}

    def captum(kind: str, **options: Any) -> Any:
        method = {"fa": lambda: ca.FeatureAblation(net), "svs": lambda: ca.ShapleyValueSampling(net)}[kind]()
        with torch.no_grad():
            return ca.LLMAttribution(method, tok).attribute(inp, target=tgt, **options)

    def report(name: str, ours: dict[str, Any], floor: float | None, peers: dict[str, dict[str, Any]],
               diff: float | None) -> None:
        rows[name] = {"ours": ours["seconds"], "forward floor": floor,
                      **{k: v["seconds"] for k, v in peers.items()},
                      **{f"speedup vs {k}": v["seconds"] / ours["seconds"] for k, v in peers.items()},
                      "ours / floor": None if floor is None else ours["seconds"] / floor, "max rel diff": diff}
        print(f"  {prompt_len} tokens, {name}: " + ", ".join(
            f"{k} {v:.3g}" for k, v in rows[name].items() if isinstance(v, float)), flush=True)

    ours = timed(lambda: xc.lm.attribute(m, prompt, target, method="feature_ablation", baseline_token=BASELINE), repeats)
    dense = timed(lambda: xc.lm.attribute(m, prompt, target, method="feature_ablation", baseline_token=BASELINE,
                                           prefix=False), repeats)
    fastest = timed(lambda: captum("fa", forward_in_tokens=False), repeats)
    default = _once(lambda: captum("fa"))
    diff = float(np.abs(ours["out"].token_attr - fastest["out"].token_attr.numpy()).max()
                 / np.abs(fastest["out"].token_attr.numpy()).max())
    report("feature_ablation", ours, _floor(m, np.array(prompt + target), prompt_len + 1, repeats),
           {"captum default": default, "captum fastest": fastest}, diff)
    rows["feature_ablation"]["ours, prefix=False"] = dense["seconds"]
    rows["feature_ablation"]["prefix / no prefix"] = ours["seconds"] / dense["seconds"]
    print(f"  prefix reuse: {ours['seconds']:.3g} s against {dense['seconds']:.3g} s without", flush=True)

    key = jax.random.key(0)
    ours = timed(lambda: xc.lm.attribute(m, prompt, target, method="shapley_sampling", samples=10,
                                          antithetic=False, key=key, baseline_token=BASELINE), repeats)
    fastest = _once(lambda: captum("svs", forward_in_tokens=False, n_samples=10))
    default = _once(lambda: captum("svs", n_samples=10)) if prompt_len <= 64 else None
    report("shapley_sampling", ours, _floor(m, np.array(prompt + target), 10 * (prompt_len - 1) + 2, repeats),
           {"captum fastest": fastest, **({"captum default": default} if default else {})}, None)

    ours = timed(lambda: xc.lm.attribute(m, prompt, target, method="ig", steps=32, rule="gauss_legendre",
                                          baseline_token=BASELINE), repeats)
    lig = ca.LayerIntegratedGradients(net, net.get_input_embeddings())
    theirs = timed(lambda: ca.LLMGradientAttribution(lig, tok).attribute(inp, target=tgt, n_steps=32), repeats)
    diff = float(np.abs(ours["out"].token_attr - theirs["out"].token_attr.numpy()).max()
                 / np.abs(theirs["out"].token_attr.numpy()).max())
    report("ig", ours, None, {"captum": theirs}, diff)
    memory = ig_memory(m, prompt, target)
    print(f"  IG-32 temporary buffers by batch_size (MiB): {memory}", flush=True)
    return {"ig_temp_mib_by_batch_size": memory, "prompt": prompt_len, "output": OUTPUT, "width": width, "layers": layers, "methods": rows}


def ig_memory(m: Any, prompt: list[int], target: list[int]) -> dict[str, float]:
    """XLA's temporary buffers (MiB) of the IG-32 program at each ``batch_size`` (compiled, not run)."""
    import importlib

    from xai_core.lm import sequences as seqs
    lm_attribute = importlib.import_module("xai_core.lm.attribute")  # the module (xc.lm.attribute is its function)
    b = seqs.batch(m, [prompt], [target], None, None)
    owner = jnp.asarray(np.where(np.arange(b.ids.shape[1]) < len(prompt), 0, -1)[None].astype(np.int32))
    out = {}
    for size in (4, 8, 32):
        spec = lm_attribute._Spec("ig", (("batch_size", size), ("rule", "gauss_legendre"), ("steps", 32)),
                                  "log_prob", "sum", 0, 0)
        compiled = jax.jit(lambda *a, spec=spec: lm_attribute._run(spec, *a)).lower(
            m, b.rows([0]), owner, BASELINE, None).compile()
        out[str(size)] = compiled.memory_analysis().temp_size_in_bytes / 2**20
    return out


def markdown(result: dict[str, Any]) -> str:
    lines = [f"# Language-model attribution on {result['machine']['cpu']} ({result['machine']['cores']} cores)", ""]
    for run in result["runs"]:
        lines += [f"## Llama, {run['layers']} layers, hidden {run['width']}: {run['prompt']} prompt tokens, "
                  f"{run['output']} output tokens", "", "| method | ours s | floor s | ours / floor | peer | peer s | "
                  "speedup | max rel diff |", "|---|---|---|---|---|---|---|---|"]
        for name, r in run["methods"].items():
            floor, ratio, diff = r["forward floor"], r["ours / floor"], r["max rel diff"]
            floor_s = "" if floor is None else f"{floor:.3g}"
            ratio_s = "" if ratio is None else f"{ratio:.2f}"
            diff_s = "" if diff is None else f"{diff:.1e}"
            for peer in [k for k in r if k.startswith("captum")]:
                lines.append(f"| {name} | {r['ours']:.3g} | {floor_s} | {ratio_s} | {peer} | {r[peer]:.3g} | "
                             f"{r['speedup vs ' + peer]:.1f}x | {diff_s} |")
        lines += ["", "IG-32's temporary buffers (XLA, compiled) by `batch_size`: " + ", ".join(
            f"{size}: {mib:.1f} MiB" for size, mib in run["ig_temp_mib_by_batch_size"].items()) + "."]
        fa = run["methods"].get("feature_ablation", {})
        if "prefix / no prefix" in fa:
            lines += ["", f"Feature ablation reusing the prefix: {fa['ours']:.3g} s; "
                      f"without: {fa['ours, prefix=False']:.3g} s "
                      f"({fa['prefix / no prefix']:.2f}x the time)."]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from benchmarks.run import machine, machine_tag
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--prompts", default=None, help="comma-separated prompt lengths")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    lengths = [int(n) for n in (args.prompts or ("32,64" if args.quick else "64,256")).split(",") if n]
    width, layers = (64, 2) if args.quick else (128, 4)
    info = machine()
    result = {"machine": info, "runs": [bench(n, width, layers, args.repeats) for n in lengths]}
    out = Path(args.out) if args.out else RESULTS / f"lm-{machine_tag(info)}.json"
    out.write_text(json.dumps(result, indent=1, default=str))
    out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
