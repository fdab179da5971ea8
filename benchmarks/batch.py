"""The batch job's throughput: ``xai-core attribute`` on 1 and 8 simulated CPU devices, the share of
its time spent waiting on input, its output's size, and a plain Python loop without the job.

    python -m benchmarks.batch            # 256 PNG images 32x32, IG-16; about 2 minutes on 2 cores
    python -m benchmarks.batch --quick    # 64 images: a smoke run (results/batch-quick-<machine>.*)

A small CNN (``conv3x3(3->16) relu, conv3x3/2(16->32) relu, conv3x3/2(32->32) relu, mean,
dense(32->10)``, Flax, random weights drawn with numpy) written as a factory module
(``bench_batch_models:cnn``) into a temporary folder, with a folder of PNG images (seeded random
pixels, so decoding is real: pillow, resize, scale). Every job row is one fresh
``python -m xai_core.cli attribute --method ig -o steps=16 --targets predicted`` subprocess:

- ``job, 1 device``: ``--batch-size 8`` (shards of 8);
- ``job, 8 devices``: ``XLA_FLAGS=--xla_force_host_platform_device_count=8``, ``--batch-size 8``
  per device (shards of 64). The 8 devices share the same 2 cores: this is not faster, it
  shows what the sharded program and the bigger shards cost;
- ``job, 8 devices, batch 1``: the same with ``--batch-size 1`` (shards of 8, as on 1 device);
- ``python loop``: in this process, one ``jax.jit``-ed function per image (predicted target,
  then ``xc.attribute(model.score(t), x, method="ig", steps=16)``), each PNG decoded as the
  job decodes it; no gap, no writing. Its compile is timed apart (one warm-up call).

Each row runs ``--repeats`` times (default 2; ``--quick``: once) and keeps the fastest loop.
Columns: ``wall s`` is the job subprocess's whole life (Python start, imports, model, compile,
the shards, the manifest); ``job s`` is ``manifest.json``'s ``seconds`` (``run()`` from its
start: model and data loaded, one compile, every shard, the manifest); ``loop s`` is the shard
loop: ``manifest.json``'s ``input_wait_seconds`` (time blocked in ``next()`` on grain's
loader) plus every shard status file's ``seconds`` (program, ``device_get``, chunk and status
committed), the first shard's compile included (the progress summary prints the same to 0.1 s:
``summary_loop_s`` in the JSON); ``images/s`` is images over it; ``steady images/s`` leaves the
first shard (its rows and its ``seconds``, the compile) out of both. ``input wait`` is
``input_wait_seconds`` over ``loop s``. Output size: the files of ``attributions.zarr`` (zstd
level 3) per image, against float32's raw 32*32*3*4 bytes, and the whole output folder
(manifest and shard status files too). Writes ``results/batch-<machine>.json`` and ``.md``;
the load average at start and end says how shared the machine was.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]
SIDE, STEPS = 32, 16

MODELS = '''
import jax, jax.numpy as jnp, flax.linen as nn, numpy as np
from xai_core.adapters import from_flax


class CNN(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(16, (3, 3))(x))
        x = nn.relu(nn.Conv(32, (3, 3), strides=2)(x))
        x = nn.relu(nn.Conv(32, (3, 3), strides=2)(x))
        return nn.Dense(10)(x.mean(axis=(1, 2)))


def cnn():
    net = CNN()
    shapes = jax.eval_shape(net.init, jax.random.key(0), jnp.zeros((1, SIDE, SIDE, 3)))
    rng = np.random.default_rng(0)

    def leaf(s):  # He-scaled kernels, zero biases; numpy (flax's eager init costs seconds per process)
        if len(s.shape) == 1:
            return np.zeros(s.shape, np.float32)
        return (rng.standard_normal(s.shape) * np.sqrt(2 / np.prod(s.shape[:-1]))).astype(np.float32)

    return from_flax(net, jax.tree.map(leaf, shapes), input_shape=(SIDE, SIDE, 3))
'''.replace("SIDE", str(SIDE))


def write_inputs(folder: Path, n: int) -> Path:
    import numpy as np
    from PIL import Image

    (folder / "bench_batch_models.py").write_text(MODELS)
    images = folder / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)).save(images / f"img_{i:04d}.png")
    return images


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def job_row(folder: Path, name: str, devices: int, batch_size: int, n: int) -> dict[str, Any]:
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]))
    flags = [f for f in env.get("XLA_FLAGS", "").split() if "xla_force_host_platform_device_count" not in f]
    if devices > 1:
        flags.append(f"--xla_force_host_platform_device_count={devices}")
    env["XLA_FLAGS"] = " ".join(flags)
    out = folder / name
    cmd = [sys.executable, "-m", "xai_core.cli", "attribute", "--model", "bench_batch_models:cnn", "--data", "images",
           "--method", "ig", "-o", f"steps={STEPS}", "--batch-size", str(batch_size), "--out", name]
    start = time.perf_counter()
    res = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - start
    if res.returncode:
        raise RuntimeError(f"{name}: exit {res.returncode}\n{res.stderr}")
    done = re.search(r"done, (\d+) images in ([\d.]+) s .* on (\d+) device", res.stderr)
    if not done or int(done.group(1)) != n or int(done.group(3)) != devices:
        raise RuntimeError(f"{name}: unexpected summary\n{res.stderr}")
    manifest = json.loads((out / "manifest.json").read_text())
    shard_s = [s["seconds"] for s in manifest["shards"]]
    loop = manifest["input_wait_seconds"] + sum(shard_s)  # the summary line's time, to 0.1 s: this is finer
    first = manifest["shards"][0]
    size = folder_bytes(out / "attributions.zarr")
    return {
        "row": name, "devices": devices, "batch_size": batch_size, "shard_size": manifest["job"]["shard_size"],
        "shards": len(manifest["shards"]), "images": n, "wall_s": wall, "job_s": manifest["seconds"],
        "loop_s": loop, "summary_loop_s": float(done.group(2)), "images_per_s": n / loop,
        "first_shard_s": first["seconds"], "shard_s": shard_s,
        "steady_images_per_s": (n - first["rows"]) / (loop - first["seconds"]) if len(shard_s) > 1 else None,
        "input_wait_s": manifest["input_wait_seconds"], "input_wait_share": manifest["input_wait_seconds"] / loop,
        "zarr_bytes": size, "zarr_bytes_per_image": size / n, "folder_bytes_per_image": folder_bytes(out) / n,
        "raw_float32_bytes_per_image": SIDE * SIDE * 3 * 4, "finished": manifest["finished"]}


def loop_row(folder: Path, images: Path, n: int) -> dict[str, Any]:
    import xai_core as xc  # first: its XLA CPU default, as in the job's processes

    import jax
    import jax.numpy as jnp
    import numpy as np
    from PIL import Image

    sys.path.insert(0, str(folder))
    from bench_batch_models import cnn

    model = cnn()

    @jax.jit
    def explain(x: jax.Array) -> jax.Array:
        t = jnp.argmax(model.logits(x)).astype(jnp.int32)
        return xc.attribute(model.score(t), x, method="ig", steps=STEPS)

    def read(path: Path) -> np.ndarray:  # as the job's image reader
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB").resize((SIDE, SIDE), Image.BILINEAR), np.float32) / 255.0

    paths = sorted(images.glob("*.png"))[:n]
    start = time.perf_counter()
    jax.block_until_ready(explain(read(paths[0])))
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    for p in paths:
        np.asarray(explain(read(p)))
    loop = time.perf_counter() - start
    sys.path.pop(0)
    return {"row": "python loop (xc.attribute jitted, one image per call)", "devices": 1, "batch_size": 1,
            "images": n, "compile_s": compile_s, "loop_s": loop, "images_per_s": n / loop,
            "steady_images_per_s": n / loop}


def steady(row: dict[str, Any]) -> str:
    return "-" if row["steady_images_per_s"] is None else f"{row['steady_images_per_s']:.0f}"


def table(result: dict[str, Any]) -> str:
    lines = [f"# Batch job (`xai-core attribute`) on {result['machine']} ({result['cores']} cores)", "",
             f"{result['images']} PNG images {SIDE}x{SIDE}, IG-{STEPS}, predicted targets, small CNN (Flax, "
             f"random weights); one fresh process per job run, the fastest of {result['repeats']} kept; load average "
             f"{result['load_start']:.2f} at start, {result['load_end']:.2f} at end (shared machine). "
             f"Versions: {result['versions']}. "
             "How each column is measured: `benchmarks/batch.py`'s docstring.", "",
             "| row | shard | wall s | job s | loop s | images/s | steady images/s | first shard s | input wait "
             "| zarr bytes / image | folder bytes / image |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        if "shard_size" in r:
            lines.append(f"| {r['row']} | {r['shard_size']} | {r['wall_s']:.1f} | {r['job_s']:.1f} | {r['loop_s']:.1f} "
                         f"| {r['images_per_s']:.0f} | {steady(r)} | {r['first_shard_s']:.2f} "
                         f"| {100 * r['input_wait_share']:.1f}% | {r['zarr_bytes_per_image']:.0f} "
                         f"| {r['folder_bytes_per_image']:.0f} |")
        else:
            lines.append(f"| {r['row']} | 1 | - | - | {r['loop_s']:.1f} | {r['images_per_s']:.0f} "
                         f"| {steady(r)} | {r['compile_s']:.2f} (compile) | - | - | - |")
    lines += ["", f"Raw float32 attributions: {SIDE * SIDE * 3 * 4} bytes per image."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.batch", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="64 images: a smoke run")
    parser.add_argument("--repeats", type=int, default=2, help="runs per row, the fastest kept (default 2)")
    parser.add_argument("--out", type=Path, default=None, help="JSON file (default: results/batch-<machine>.json)")
    args = parser.parse_args()
    n, repeats = (64, 1) if args.quick else (256, args.repeats)

    import xai_core as xc

    import jax

    from benchmarks.run import cpu_name, machine_tag

    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        images = write_inputs(folder, n)
        rows = []
        for name, devices, batch_size in [("job, 1 device", 1, 8), ("job, 8 devices", 8, 8),
                                          ("job, 8 devices, batch 1", 8, 1)]:
            tries = [job_row(folder, f"{name} #{i}", devices, batch_size, n) for i in range(repeats)]
            best = min(tries, key=lambda r: r["loop_s"])
            rows.append({**best, "row": name, "tries_loop_s": [r["loop_s"] for r in tries]})
            print(f"{name}: {rows[-1]['images_per_s']:.0f} images/s", flush=True)
        tries = [loop_row(folder, images, n) for _ in range(repeats)]
        rows.append({**min(tries, key=lambda r: r["loop_s"]), "tries_loop_s": [r["loop_s"] for r in tries]})
        print(f"{rows[-1]['row']}: {rows[-1]['images_per_s']:.0f} images/s", flush=True)
    import numpy as np

    result = {"benchmark": "batch", "quick": args.quick, "machine": cpu_name(), "cores": os.cpu_count(),
              "images": n, "image_side": SIDE, "method": "ig", "steps": STEPS, "repeats": repeats, "rows": rows,
              "load_start": load_start, "load_end": os.getloadavg()[0],
              "versions": {"xai_core": xc.__version__, "jax": jax.__version__, "numpy": np.__version__,
                           "python": sys.version.split()[0]}}
    tag = machine_tag({"gpu": None, "cpu": cpu_name(), "cores": os.cpu_count()})
    out = args.out or RESULTS / f"batch{'-quick' if args.quick else ''}-{tag}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(table(result) + "\n")
    print(table(result))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
