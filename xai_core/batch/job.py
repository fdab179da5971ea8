"""The batch job: every shard explained by one jitted program over all local devices.

A shard is one global batch, ``batch_size`` examples per local device. Its examples are placed
with a :class:`~jax.sharding.NamedSharding` over a 1-d mesh of the local devices (axis
``"data"``), the weights replicated, and one compiled program computes, per example, the
target (given, or the prediction), the score, the attribution and its completeness gap. Every
device runs the same per-device program as a single-device run with the same ``batch_size``,
so the results equal it exactly. Across hosts (``jax.distributed.initialize()`` first) process
``p`` of ``P`` takes shards ``p, p + P, ...``. grain decodes the next shards in threads while
the devices work.
"""

from __future__ import annotations

import math
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from xai_core.batch.errors import SpecError, blame, class_indices
from xai_core.batch.sources import ExampleError, Source, load_data, load_model, model_fingerprint, need
from xai_core.batch.store import Store
from xai_core.attribution.gradients import completeness_gap
from xai_core.registry import attribute, get_method

COMPLETE = ("integrated_gradients", "deeplift", "deeplift_shap")
"""Methods whose attributions sum to ``f(x) - f(baseline)``: the job reports their gap."""


@dataclass
class Job:
    """One batch job's settings (the CLI's flags)."""

    model: str
    data: str
    out: str
    method: str = "integrated_gradients"
    options: dict[str, Any] = field(default_factory=dict)
    targets: str = "predicted"
    labels: str | None = None
    batch_size: int = 8
    seed: int = 0
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    resume: bool = False
    force: bool = False
    report: bool = False
    report_images: int = 64
    threads: int = 4
    input_shape: tuple[int, ...] | None = None
    log: Callable[[str], None] = field(default=lambda line: print(line, file=sys.stderr))


def _versions() -> dict[str, str]:
    import xai_core

    return {"xai_core": xai_core.__version__, "jax": jax.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


def _targets(job: Job, source: Source, classes: int) -> np.ndarray | None:
    """Per-example targets in ``0..classes-1``, or None for the prediction (computed in the program)."""
    if job.targets == "predicted":
        return None
    if job.targets == "label":
        if source.labels is None:
            raise SpecError("--targets label: needs labels; pass --labels FILE (.npy / .txt), or a data factory "
                            "returning (images, labels).")
        flag, values = (f"--labels {job.labels}" if job.labels else f"--data {job.data}"), source.labels
    elif not Path(job.targets).is_file() and not job.targets.endswith((".npy", ".txt", ".csv")):
        raise SpecError(f"--targets {job.targets}: not 'predicted', 'label' or a file; pass one of those "
                        "(a .npy / .txt file of one class index per example).")
    else:
        flag, values = f"--targets {job.targets}", class_indices("--targets", job.targets, len(source))
    bad = np.flatnonzero((values < 0) | (values >= classes))
    if bad.size:
        raise SpecError(f"{flag}: class {values[bad[0]]} (example {bad[0]}) is out of range for a model with "
                        f"{classes} classes; use 0..{classes - 1}.")
    return np.asarray(values, np.int64)


def _preflight(model: Any, job: Job, shape: tuple[int, ...]) -> int:
    """Trace one example before anything is written: the model on the data, then the method with
    its options (each failure names its flag). Returns the model's number of classes."""
    x, t = jax.ShapeDtypeStruct(shape, jnp.float32), jax.ShapeDtypeStruct((), jnp.int32)
    with blame(f"--input-shape {','.join(map(str, shape))}" if job.input_shape else f"--data {job.data}",
               ValueError, TypeError):
        out = jax.eval_shape(model.logits, x)
    if len(out.shape) != 1:
        raise SpecError(f"--model {job.model}: returns shape {out.shape} for one example; the batch job "
                        "explains models of one vector of class scores per example.")
    key = jax.random.key(0) if get_method(job.method).needs_key else None
    with blame(f"-o {' -o '.join(f'{k}={v}' for k, v in job.options.items())}" if job.options else
               f"--method {job.method}", ValueError, TypeError):
        jax.eval_shape(lambda x, t: attribute(model.score(t), x, method=job.method, key=key, **job.options), x, t)
    return out.shape[0]


def _program(model: Any, job: Job, predicted: bool, data: NamedSharding) -> Callable[..., Any]:
    """``(model, xs, targets, valid, index) -> (maps, targets, scores, gaps)``, one jitted program."""
    spec = get_method(job.method)
    complete = spec.name in COMPLETE
    base_key = jax.random.key(job.seed)

    def one(m: Any, x: jax.Array, t: jax.Array, valid: jax.Array, index: jax.Array) -> tuple[jax.Array, ...]:
        t = jnp.argmax(m.logits(x)).astype(jnp.int32) if predicted else t
        score_fn = m.score(t)
        key = jax.random.fold_in(base_key, index)
        a = attribute(score_fn, x, method=job.method, key=key if spec.needs_key else None, **job.options)
        gap = completeness_gap(score_fn, x, a, job.options.get("baseline")) if complete else jnp.nan
        return (jnp.where(valid, a, 0).astype(jnp.float32), jnp.where(valid, t, -1),
                jnp.where(valid, score_fn(x), jnp.nan), jnp.where(valid, gap, jnp.nan))

    replicated = NamedSharding(data.mesh, PartitionSpec())
    return jax.jit(jax.vmap(one, in_axes=(None, 0, 0, 0, 0)), in_shardings=(replicated, data, data, data, data),
                   out_shardings=data)


def _loader(source: Source, shards: list[int], size: int, threads: int) -> Any:
    """The pending shards decoded ahead, in order: ``(xs, valid, errors)`` per shard (grain)."""
    grain = need("grain")
    n = len(source)

    def load(shard: int) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
        xs = np.zeros((size, *source.example_shape), np.float32)
        valid, errors = np.zeros(size, bool), []
        for row, i in enumerate(range(shard * size, min(n, (shard + 1) * size))):
            try:
                x = source.read(i)
                if x.shape != source.example_shape:
                    raise ExampleError(f"shape {x.shape}, expected {source.example_shape}")
                xs[row], valid[row] = x, True
            except ExampleError as err:
                errors.append({"index": i, "name": source.names[i], "reason": str(err)})
        return xs, valid, errors

    options = grain.ReadOptions(num_threads=max(1, threads), prefetch_buffer_size=max(2, threads))
    return iter(grain.MapDataset.source(shards).map(load).to_iter_dataset(options))


def _finite(values: np.ndarray) -> list[float | None]:
    return [float(v) if np.isfinite(v) else None for v in values]


def run(job: Job) -> dict[str, Any]:
    """Run (or resume) the job; returns the manifest. See :mod:`xai_core.batch`."""
    from xai_core.batch.progress import Progress

    start = time.perf_counter()
    with blame(f"--method {job.method}", ValueError):  # an unknown method fails before anything loads
        get_method(job.method)
    model = load_model(job.model)
    shape = job.input_shape or model.input_shape
    source = load_data(job.data, shape, labels=job.labels, mean=job.mean, std=job.std)
    targets = _targets(job, source, _preflight(model, job, source.example_shape))
    devices = jax.local_devices()
    size = job.batch_size * len(devices)
    n_shards = math.ceil(len(source) / size)
    identity = {"model": model_fingerprint(model), "data": source.fingerprint, "examples": len(source),
                "example_shape": list(source.example_shape), "method": get_method(job.method).name,
                "options": job.options, "targets": job.targets, "seed": job.seed, "shard_size": size,
                "versions": _versions()}
    process, processes = jax.process_index(), jax.process_count()
    if process == 0:  # checks, creates (or, with --force, clears) the folder before the others open it
        with blame(f"--out {job.out}", OSError, hint="choose a folder this process can write"):
            store = Store.open(job.out, identity, resume=job.resume, force=job.force)
    if processes > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("xai_core.batch: output created")
        if process:
            store = Store.open(job.out, identity, resume=True, force=False, create=False)
    mine = [s for s in range(process, n_shards, processes)]
    pending = [s for s in mine if not store.done(s)]
    mesh = jax.sharding.Mesh(np.array(devices), ("data",))
    data = NamedSharding(mesh, PartitionSpec("data"))
    program = _program(model, job, targets is None, data)
    waited = 0.0
    loader = _loader(source, pending, size, job.threads)
    progress = Progress(sum(min(size, len(source) - s * size) for s in pending), len(devices), job.log)
    for shard in pending:
        ready = time.perf_counter()
        xs, valid, errors = next(loader)
        waited += time.perf_counter() - ready
        rows = min(size, len(source) - shard * size)
        index = np.arange(shard * size, shard * size + size)
        ts = np.zeros(size, np.int32) if targets is None else np.resize(targets[shard * size:], size).astype(np.int32)
        began = time.perf_counter()
        placed = jax.device_put((xs, ts, valid, index.astype(np.int32)), data)
        maps, ts_out, scores, gaps = jax.device_get(program(model, *placed))
        store.commit(shard, maps[:rows], {
            "rows": rows, "names": source.names[shard * size:shard * size + rows],
            "targets": ts_out[:rows].tolist(), "scores": _finite(scores[:rows]), "gaps": _finite(gaps[:rows]),
            "errors": errors, "seconds": time.perf_counter() - began})
        progress.update(rows)
    progress.close()
    if processes > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("xai_core.batch: shards written")
    timing = {"seconds": time.perf_counter() - start, "input_wait_seconds": waited, "devices": len(devices),
              "processes": processes}
    manifest = store.finish(n_shards, **timing) if process == 0 else {"finished": None, **timing}
    if job.report and process == 0:
        from xai_core.batch.gallery import gallery

        path = gallery(store, source, manifest, job)
        job.log(f"report: {path}")
    return manifest
