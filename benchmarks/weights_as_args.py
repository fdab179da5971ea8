"""Weights as arguments against weights in a closure: compile time, program size and memory of a jitted attribution.

    python -m benchmarks.weights_as_args            # Keras ResNet-50 at 224x224x3: gradient and IG-8
    python -m benchmarks.weights_as_args --quick    # 64x64x3, gradient only: a smoke run

A :class:`xai_core.adapters.Model` is a pytree of its weights, so there are two ways to jit a
batched attribution:

- ``argument``: ``jax.jit(jax.vmap(lambda m, x, t: xc.attribute(m.score(t), x, ...),
  in_axes=(None, 0, 0)))(m, xs, ts)``: the weights are arguments of the compiled program,
  and ``m.with_params(p)`` (same shapes) reuses it;
- ``closure``: ``jax.jit(jax.vmap(lambda x, t: xc.attribute(m.score(t), x, ...)))(xs, ts)``
  (the README's pattern before): ``m`` is closed over, so XLA embeds the weights as
  constants, and new weights need a new function and a new compilation.

The model is ``keras.applications.ResNet50(weights=None)`` (random weights, nothing
downloaded; 25.6 M parameters, about 100 MB in float32) through ``from_keras``, 2 images,
targets ``[1, 2]``. Every (pattern, method) pair runs in a fresh subprocess, so the peak
resident set (``VmHWM``) is that variant's alone. In each: ``jax.jit(f).lower(*args)``
(trace + lower) and ``.compile()`` are timed apart; the program's size is the length of
its StableHLO text (``lowered.as_text()``) and of its MLIR bytecode; ``VmHWM`` is read
after compiling and after one call; the steady time is the median of ``--repeats`` calls
after that one. The lowered program is kept alive during the calls, as ``jax.jit``'s own
caches keep it. Methods: ``gradient``, and ``ig`` with 8 steps in chunks of 8
(``batch_size=8``) unless ``--skip-ig``; a variant that runs past ``--timeout`` seconds is
reported as timed out.

Recompilation (in the gradient subprocesses, after the measurements): ``argument`` calls a
fresh jitted function with ``m``, then with ``m.with_params(params * 1.01)``, and reports
both wall times and ``explain._cache_size()`` (1: no second compilation); ``closure`` calls
a fresh jitted closure over ``m``, then has to build, lower and compile a new closure over
the new weights, and reports those times.

Writes ``benchmarks/results/weights_as_args-<machine>.json`` (``weights_as_args-quick-<machine>``
with ``--quick``; ``<machine>`` is the CPU family and core count, or the GPU) and prints a
markdown table. About 2 minutes on 2 CPU cores (``--quick``: under 1 minute); IG-8 at 224x224
fits well within the timeout there (about 35 s per variant).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "jax")  # before anything imports keras

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax._src.interpreters import mlir  # noqa: E402

import xai_core as xc  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
PATTERNS = ("closure", "argument")
METHODS: dict[str, dict[str, Any]] = {"gradient": {}, "ig": {"steps": 8, "batch_size": 8}}
TARGETS = (1, 2)
MB = 1e6
MIB = 2.0**20


# --------------------------------------------------------------------------- measuring

def _status_mib(field: str) -> float:
    """``VmHWM`` (peak) or ``VmRSS`` (current) of this process, in MiB (Linux)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def explain_fn(pattern: str, m: Any, method: str, options: dict[str, Any]) -> tuple[Callable[..., Any], tuple[Any, ...]]:
    """A fresh (never traced) batched attribution of ``m`` in ``pattern``, and the leading
    arguments it takes before ``(xs, ts)``: ``(m,)`` for ``argument``, ``()`` for ``closure``."""
    if pattern == "argument":
        return jax.vmap(lambda m, x, t: xc.attribute(m.score(t), x, method=method, **options),
                        in_axes=(None, 0, 0)), (m,)
    if pattern == "closure":
        return jax.vmap(lambda x, t: xc.attribute(m.score(t), x, method=method, **options)), ()
    raise ValueError(f"pattern must be one of {PATTERNS}, got {pattern!r}")


def _aot(fn: Callable[..., Any], args: tuple[Any, ...]) -> tuple[Any, Any, float, float]:
    t = time.perf_counter()
    lowered = jax.jit(fn).lower(*args)
    lower_s = time.perf_counter() - t
    t = time.perf_counter()
    compiled = lowered.compile()
    return lowered, compiled, lower_s, time.perf_counter() - t


def _timed(call: Callable[[], Any]) -> tuple[Any, float]:
    t = time.perf_counter()
    out = jax.block_until_ready(call())
    return out, time.perf_counter() - t


def _memory_analysis(compiled: Any) -> dict[str, float]:
    try:
        stats = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 - not every backend has it
        return {}
    if stats is None:
        return {}
    return {k.removesuffix("_in_bytes") + "_mib": getattr(stats, k) / MIB
            for k in dir(stats) if k.endswith("_in_bytes") and isinstance(getattr(stats, k), int)}


def recompile_check(pattern: str, m: Any, method: str, options: dict[str, Any],
                    xs: jax.Array, ts: jax.Array) -> dict[str, Any]:
    """New weights of the same shapes: does the compiled program get reused?

    ``argument``: one fresh jitted function, called with ``m``, then with the weights times
    1.01; ``cache_size`` is ``explain._cache_size()`` after both (1 = compiled once).
    ``closure``: a fresh jitted closure over ``m``, called; then a new closure over the new
    weights, lowered and compiled (timed apart), then called (``second_call_s`` is the
    three); ``cache_size`` is the first closure's, and the new one is a second program."""
    m2 = m.with_params(jax.tree.map(lambda a: a * 1.01, m.params))
    fn, lead = explain_fn(pattern, m, method, options)
    explain = jax.jit(fn)
    a1, first = _timed(lambda: explain(*lead, xs, ts))
    out: dict[str, Any] = {"first_call_s": first}
    if pattern == "argument":
        a2, second = _timed(lambda: explain(m2, xs, ts))
        out.update(second_call_s=second, cache_size=explain._cache_size())
    else:
        fn2, _ = explain_fn(pattern, m2, method, options)
        _, compiled2, lower_s, compile_s = _aot(fn2, (xs, ts))
        a2, run_s = _timed(lambda: compiled2(xs, ts))
        out.update(second_call_s=lower_s + compile_s + run_s, new_closure_trace_lower_s=lower_s,
                   new_closure_compile_s=compile_s, new_closure_run_s=run_s,
                   cache_size=explain._cache_size())
    out["second_over_first"] = out["second_call_s"] / first
    out["new_weights_change_output"] = not bool(np.allclose(np.asarray(a1), np.asarray(a2)))
    return out


def measure(m: Any, pattern: str, method: str, xs: jax.Array, ts: jax.Array, *,
            options: dict[str, Any] | None = None, repeats: int = 3,
            recompile: bool = False) -> dict[str, Any]:
    """One variant, in this process: trace + lower and compile times, program size, peak
    resident set after compiling and after one call, steady time (median of ``repeats``
    calls after that one), and with ``recompile`` the :func:`recompile_check`. The peak is
    the process's: run one variant per process to compare them."""
    options = dict(METHODS[method] if options is None else options)
    fn, lead = explain_fn(pattern, m, method, options)
    args = (*lead, xs, ts)
    rss_before = _status_mib("VmRSS")
    lowered, compiled, lower_s, compile_s = _aot(fn, args)
    hwm_compiled = _status_mib("VmHWM")
    _, first_run_s = _timed(lambda: compiled(*args))
    hwm_run = _status_mib("VmHWM")
    times = [_timed(lambda: compiled(*args))[1] for _ in range(repeats)] or [first_run_s]
    text_mb = len(lowered.as_text()) / MB
    bytecode_mb = len(mlir.module_to_bytecode(lowered.compiler_ir("stablehlo"))) / MB
    result: dict[str, Any] = {
        "pattern": pattern, "method": method, "options": options, "images": int(xs.shape[0]),
        "trace_lower_s": lower_s, "compile_s": compile_s,
        "program_text_mb": text_mb, "program_bytecode_mb": bytecode_mb,
        "program_args": len(jax.tree.leaves(args)),
        "rss_before_mib": rss_before, "peak_rss_compiled_mib": hwm_compiled, "peak_rss_run_mib": hwm_run,
        "first_run_s": first_run_s, "steady_s": statistics.median(times), "runs_s": times,
        "xla_memory": _memory_analysis(compiled),
    }
    del lowered, compiled
    if recompile:
        result["recompile"] = recompile_check(pattern, m, method, options, xs, ts)
    return result


# --------------------------------------------------------------------------- the model

def resnet50(size: int) -> Any:
    """``from_keras(keras.applications.ResNet50(weights=None))`` at ``size x size x 3``,
    random weights (``keras.utils.set_random_seed(0)``)."""
    import keras

    from xai_core.adapters import from_keras
    keras.utils.set_random_seed(0)
    return from_keras(keras.applications.ResNet50(weights=None, input_shape=(size, size, 3)))


def inputs(size: int, images: int = len(TARGETS)) -> tuple[jax.Array, jax.Array]:
    xs = jax.random.uniform(jax.random.key(1), (images, size, size, 3))
    return xs, jnp.array(TARGETS[:images])


def worker(pattern: str, method: str, size: int, repeats: int, recompile: bool) -> dict[str, Any]:
    t = time.perf_counter()
    m = resnet50(size)
    build_s = time.perf_counter() - t
    xs, ts = inputs(size)
    result = measure(m, pattern, method, xs, ts, repeats=repeats, recompile=recompile)
    result.update(size=size, model_build_s=build_s, params=sum(int(np.size(a)) for a in jax.tree.leaves(m.params)),
                  params_mb=sum(a.nbytes for a in jax.tree.leaves(m.params)) / MB)
    return result


# --------------------------------------------------------------------------- report

def machine() -> dict[str, Any]:
    import jaxlib
    import keras

    from benchmarks.run import cpu_name
    dev = jax.devices()[0]
    return {"cpu": cpu_name(), "cores": os.cpu_count(), "jax_device": dev.device_kind,
            "gpu": dev.device_kind if dev.platform == "gpu" else None,
            "versions": {"xai_core": xc.__version__, "jax": jax.__version__,
                         "jaxlib": jaxlib.__version__,
                         "keras": keras.__version__, "python": platform.python_version()},
            "xla_flags": os.environ.get("XLA_FLAGS", ""),
            "jax_use_simplified_jaxpr_constants": bool(jax.config.jax_use_simplified_jaxpr_constants),
            "load_average_at_start": os.getloadavg()}


def _fmt(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def markdown(result: dict[str, Any]) -> str:
    info = result["machine"]
    size = result["size"]
    lines = [f"# Weights as arguments vs closure: Keras ResNet-50, {result['images']} x {size}x{size}x3, "
             f"{info['gpu'] or info['cpu']} ({info['cores']} cores)", "",
             f"jax {info['versions']['jax']}, keras {info['versions']['keras']}, "
             f"load average at start {', '.join(f'{x:.2f}' for x in info['load_average_at_start'])}", "",
             "| variant | trace+lower s | compile s | program MB (text / bytecode) | peak RSS MiB "
             "(compiled / after run) | first run ms | steady ms |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, r in result["variants"].items():
        if "error" in r:
            lines.append(f"| {name} | {r['error']} | | | | | |")
            continue
        lines.append(f"| {name} | {r['trace_lower_s']:.2f} | {r['compile_s']:.2f} | "
                     f"{r['program_text_mb']:.2f} / {r['program_bytecode_mb']:.2f} | "
                     f"{r['peak_rss_compiled_mib']:.0f} / {r['peak_rss_run_mib']:.0f} | "
                     f"{r['first_run_s'] * 1e3:.0f} | {r['steady_s'] * 1e3:.0f} |")
    lines += ["", "Recompilation, new weights of the same shapes (`m.with_params(params * 1.01)`):", "",
              "| variant | first call s (m) | second call s (new weights) | second / first | "
              "compilations | new closure: trace+lower s / compile s | output changed |",
              "|---|---:|---:|---:|---:|---:|---|"]
    for name, r in result["variants"].items():
        rc = r.get("recompile")
        if not rc:
            continue
        closure = ("-" if "new_closure_compile_s" not in rc else
                   f"{rc['new_closure_trace_lower_s']:.2f} / {rc['new_closure_compile_s']:.2f}")
        compilations = (f"{rc['cache_size']} (`_cache_size()`)" if "new_closure_compile_s" not in rc
                        else f"{rc['cache_size'] + 1} (2 functions)")
        lines.append(f"| {name} | {rc['first_call_s']:.2f} | {rc['second_call_s']:.2f} | "
                     f"{rc['second_over_first']:.3f} | {compilations} | {closure} | "
                     f"{rc['new_weights_change_output']} |")
    return "\n".join(lines) + "\n"


def _run_worker(pattern: str, method: str, args: argparse.Namespace, recompile: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "benchmarks.weights_as_args", "--worker", pattern, method,
               "--size", str(args.size), "--repeats", str(args.repeats), "--json", str(out)]
        if recompile:
            cmd.append("--recompile")
        t = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=Path(__file__).resolve().parents[1], capture_output=True,
                                  text=True, timeout=args.timeout)
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {args.timeout:.0f} s (not measured)",
                    "wall_s": time.perf_counter() - t}
        if proc.returncode != 0 or not out.exists():
            return {"error": f"failed (exit {proc.returncode})", "stderr": proc.stderr[-6000:],
                    "wall_s": time.perf_counter() - t}
        result = json.loads(out.read_text())
        result["wall_s"] = time.perf_counter() - t
        return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="64x64x3, gradient only, 1 repeat: a smoke run")
    parser.add_argument("--size", type=int, default=None, help="image side (default 224; 64 with --quick)")
    parser.add_argument("--repeats", type=int, default=None, help="steady-state calls (default 3; 1 with --quick)")
    parser.add_argument("--skip-ig", action="store_true", help="measure the gradient only")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds per variant before it is given up")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--worker", nargs=2, metavar=("PATTERN", "METHOD"), help=argparse.SUPPRESS)
    parser.add_argument("--recompile", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.size = args.size or (64 if args.quick else 224)
    args.repeats = args.repeats if args.repeats is not None else (1 if args.quick else 3)

    if args.worker:
        pattern, method = args.worker
        args.json.write_text(json.dumps(worker(pattern, method, args.size, args.repeats, args.recompile), indent=1))
        return

    start = time.perf_counter()
    info = machine()
    methods = ["gradient"] if args.quick or args.skip_ig else list(METHODS)
    variants: dict[str, Any] = {}
    for method in methods:
        for pattern in PATTERNS:
            name = f"{pattern} / {method}" + ("-8" if method == "ig" else "")
            print(f"running {name} ...", file=sys.stderr, flush=True)
            variants[name] = r = _run_worker(pattern, method, args, recompile=method == "gradient")
            if "stderr" in r:
                print(r["stderr"], file=sys.stderr)
    result = {"model": "keras.applications.ResNet50(weights=None)", "size": args.size,
              "images": len(TARGETS), "targets": list(TARGETS), "quick": args.quick,
              "repeats": args.repeats, "methods": {k: METHODS[k] for k in methods},
              "timeout_s": args.timeout, "machine": info, "variants": variants}
    if "ig" not in methods:
        result["ig"] = "not run (--quick / --skip-ig)"
    result["machine"]["load_average_at_end"] = os.getloadavg()
    result["total_s"] = time.perf_counter() - start

    from benchmarks.run import machine_tag
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"weights_as_args-{'quick-' if args.quick else ''}{machine_tag(info)}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(markdown(result))
    if "ig" not in methods:
        print(f"IG-8 {result['ig']}.")
    print(f"total {result['total_s']:.0f} s; wrote {path}")


if __name__ == "__main__":
    main()
