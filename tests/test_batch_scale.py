"""The batch job at scale, each run a ``python -m xai_core.cli attribute`` subprocess on CPU:

- 8 simulated devices (``--xla_force_host_platform_device_count=8``) give exactly the 1-device
  result with the same per-device batch size (the shard size, hence the zarr chunking, differs);
- a job killed with SIGKILL at seeded random times and resumed gives exactly the uninterrupted
  result, and after every kill each committed shard (status file) holds its final rows;
- two processes joined by ``jax.distributed`` on localhost (gloo collectives, 2 devices each)
  give exactly the single-process result.

The models and data are small factories written into ``tmp_path`` (weights drawn with numpy:
``flax``'s eager ``init`` costs seconds of dispatch per subprocess). ``-s`` prints the
kill / resume numbers.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 180  # seconds, any one subprocess

FACTORIES = '''
import jax, jax.numpy as jnp, flax.linen as nn, numpy as np
from xai_core.adapters import from_flax


class Net(nn.Module):
    width: int = 8

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(self.width, (3, 3))(x))
        x = nn.relu(nn.Conv(self.width, (3, 3))(x))
        return nn.Dense(5)(x.reshape(x.shape[0], -1))


def _model(width, side):
    net = Net(width)
    shapes = jax.eval_shape(net.init, jax.random.key(0), jnp.zeros((1, side, side, 3)))
    rng = np.random.default_rng(0)

    def leaf(s):
        if len(s.shape) == 1:
            return np.zeros(s.shape, np.float32)
        return (rng.standard_normal(s.shape) / np.sqrt(np.prod(s.shape[:-1]))).astype(np.float32)

    return from_flax(net, jax.tree.map(leaf, shapes))


def small():
    return _model(8, 8)


def big():
    return _model(16, 16)


def data40():
    return np.random.default_rng(1).standard_normal((40, 8, 8, 3)).astype(np.float32)


def data60():
    return np.random.default_rng(2).standard_normal((60, 16, 16, 3)).astype(np.float32)
'''

DISTRIBUTED = '''
import os
import sys
import traceback

import xai_core.cli  # first: xai_core sets its XLA CPU defaults at import, before the backend starts
import jax

jax.config.update("jax_cpu_collectives_implementation", "gloo")
port, process_id = sys.argv[1], int(sys.argv[2])
jax.distributed.initialize(coordinator_address=f"localhost:{port}", num_processes=2, process_id=process_id,
                           initialization_timeout=60)
print(f"process {jax.process_index()} of {jax.process_count()}: {len(jax.local_devices())} local devices, "
      f"{len(jax.devices())} in all", file=sys.stderr, flush=True)
try:
    code = xai_core.cli.main(sys.argv[3:])
except SystemExit as exit:
    code = exit.code
except BaseException:
    traceback.print_exc()
    code = 1
if code not in (0, None):  # fail now: a normal exit would wait for the other process at shutdown
    print(code if isinstance(code, str) else f"exit {code}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(code if isinstance(code, int) else 1)
'''

SMALL = ["--model", "scale_models:small", "--data", "scale_models:data40", "-o", "steps=8", "--batch-size", "2",
         "--threads", "2"]
"""40 examples 8x8x3, IG-8, 2 per device: 1 device -> 20 shards of 2; 8 devices -> 16, 16, 8."""

BIG = ["--model", "scale_models:big", "--data", "scale_models:data60", "-o", "steps=512", "--batch-size", "2",
       "--threads", "2"]
"""60 examples 16x16x3, IG-512, 1 device: 30 shards of 2, about 0.1 s each on 2 cores."""


def env(devices: int | None = None) -> dict[str, str]:
    """The subprocess environment: this checkout first, CPU, ``devices`` simulated host devices."""
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [e.get("PYTHONPATH")])])
    e["JAX_PLATFORMS"] = "cpu"
    flags = [f for f in e.get("XLA_FLAGS", "").split() if not f.startswith("--xla_force_host_platform_device_count")]
    if devices is not None:
        flags.append(f"--xla_force_host_platform_device_count={devices}")
    e["XLA_FLAGS"] = " ".join(flags)
    if not e["XLA_FLAGS"]:
        del e["XLA_FLAGS"]
    return e


def cli(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "xai_core.cli", "attribute", *args]


def attribute(cwd: Path, args: list[str], devices: int | None = None) -> subprocess.CompletedProcess:
    """Run the CLI to the end (killed at ``TIMEOUT``); fails with its output if it fails."""
    res = subprocess.run(cli(args), cwd=cwd, env=env(devices), capture_output=True, text=True, timeout=TIMEOUT)
    assert res.returncode == 0, f"exit {res.returncode}\nstdout:\n{res.stdout}\nstderr:\n{res.stderr}"
    return res


def write_factories(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "scale_models.py").write_text(FACTORIES)
    return folder


def read_array(out: Path) -> np.ndarray:
    import tensorstore as ts

    spec = {"driver": "zarr3", "kvstore": {"driver": "file", "path": str(out / "attributions.zarr")}}
    return ts.open(spec).result().read().result()


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def as_array(values: list) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values])


def assert_same_results(out: Path, ref: Path) -> None:
    """Attributions, targets, scores, gaps and names: exactly equal."""
    a, b = read_array(out), read_array(ref)
    assert a.dtype == b.dtype == np.float32 and a.shape == b.shape
    assert np.array_equal(a, b), f"attributions differ: max |diff| {np.abs(a - b).max()}"
    ea, eb = manifest(out)["examples"], manifest(ref)["examples"]
    assert ea["names"] == eb["names"]
    for key in ("targets", "scores", "gaps"):
        assert np.array_equal(as_array(ea[key]), as_array(eb[key]), equal_nan=True), key
    try:
        import zarr
    except ImportError:
        return
    for folder in (out, ref):  # zarr-python reads the same values from the same files
        assert np.array_equal(np.asarray(zarr.open_array(str(folder / "attributions.zarr"), mode="r")[...]), b)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The small job on one device: (factories' folder, output folder)."""
    cwd = write_factories(tmp_path_factory.mktemp("scale"))
    res = attribute(cwd, [*SMALL, "--out", "one"], devices=None)
    assert "on 1 device(s)" in res.stderr, res.stderr
    return cwd, cwd / "one"


def test_eight_devices_equal_one_device(reference: tuple[Path, Path]) -> None:
    cwd, one = reference
    res = attribute(cwd, [*SMALL, "--out", "eight"], devices=8)
    assert "on 8 device(s)" in res.stderr, res.stderr
    eight = cwd / "eight"
    m1, m8 = manifest(one), manifest(eight)
    assert m1["finished"] and m8["finished"]
    assert (m1["job"]["shard_size"], m8["job"]["shard_size"]) == (2, 16)
    assert [s["rows"] for s in m8["shards"]] == [16, 16, 8]  # the last shard is partial
    chunks = [json.loads((o / "attributions.zarr" / "zarr.json").read_text())["chunk_grid"]["configuration"]
              ["chunk_shape"][0] for o in (one, eight)]
    assert chunks == [2, 16]
    assert len(set(m1["examples"]["targets"])) > 1  # the targets are not all one class
    assert_same_results(eight, one)


def check_committed(out: Path, ref: Path, ref_array: np.ndarray) -> tuple[int, int, int, int, int]:
    """After a kill: every status file parses and names its shard, and its rows in the zarr array
    and its targets / scores / gaps are the uninterrupted run's. Returns (shards committed,
    images checked, temp files left in shards/, other files left in the zarr folder, chunks
    written whose shard has no status: the kill fell between the two)."""
    shards = out / "shards"
    if not shards.is_dir():
        return 0, 0, 0, 0, 0
    statuses = sorted(shards.glob("*.json"))
    leftovers = [p for p in shards.iterdir() if p not in statuses]
    assert all(p.name.startswith(".") and p.name.endswith(".tmp") for p in leftovers), leftovers
    chunk_dir = out / "attributions.zarr" / "c"
    chunks = {int(p.name) for p in chunk_dir.iterdir()} if chunk_dir.is_dir() else set()
    unstatused = len(chunks - {int(p.stem) for p in statuses})
    if not statuses:
        return 0, 0, len(leftovers), 0, unstatused
    array = read_array(out)
    ref_examples = manifest(ref)["examples"]
    images = 0
    for path in statuses:
        assert re.fullmatch(r"\d{6}\.json", path.name), path
        status = json.loads(path.read_text())  # a half-written status file fails here
        shard, start, rows = status["shard"], status["start"], status["rows"]
        assert shard == int(path.stem) and start == 2 * shard and rows == 2
        assert np.array_equal(array[start:start + rows], ref_array[start:start + rows]), f"shard {shard}"
        for key in ("targets", "scores", "gaps"):
            assert np.array_equal(as_array(status[key]), as_array(ref_examples[key][start:start + rows])), key
        images += rows
    zarr_files = [p for p in (out / "attributions.zarr").rglob("*") if p.is_file()]
    odd = [p for p in zarr_files if p.name != "zarr.json" and not re.fullmatch(r"\d+", p.name)]
    return len(statuses), images, len(leftovers), len(odd), unstatused


KILLS = 5
"""The first a random 0-1 s after the output folder appears, the others a random 0-0.25 s after 1-4 more shards."""


def test_sigkill_and_resume(tmp_path: Path) -> None:
    cwd = write_factories(tmp_path)
    attribute(cwd, [*BIG, "--out", "whole"])
    ref, ref_array = cwd / "whole", read_array(cwd / "whole")
    n_shards = len(manifest(ref)["shards"])
    assert n_shards == 30
    out = cwd / "killed"
    rng = np.random.default_rng(1234)
    kills = []
    for attempt in range(KILLS):
        before = check_committed(out, ref, ref_array)[0]
        proc = subprocess.Popen(cli([*BIG, "--out", "killed", *(["--resume"] if attempt else [])]), cwd=cwd,
                                env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            started = time.monotonic()
            if attempt == 0:  # once the output folder exists: in the compile, or the first shards
                while proc.poll() is None and not (out / "manifest.json").is_file():
                    assert time.monotonic() - started < TIMEOUT, "no output folder"
                    time.sleep(0.01)
                time.sleep(rng.uniform(0.0, 1.0))
            else:  # a few more shards, then a random moment inside the next ones
                goal = min(before + int(rng.integers(1, 5)), n_shards - 3 * (KILLS - attempt))
                while proc.poll() is None and len(list((out / "shards").glob("*.json"))) < goal:
                    assert time.monotonic() - started < TIMEOUT, "no progress"
                    time.sleep(0.01)
                time.sleep(rng.uniform(0.0, 0.25))
            alive = proc.poll() is None
            proc.send_signal(signal.SIGKILL)
            _, stderr = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert alive, f"the job ended before kill {attempt} (exit {proc.returncode}):\n{stderr}"
        committed, images, temp, odd, unstatused = check_committed(out, ref, ref_array)
        kills.append({"after_s": round(time.monotonic() - started, 2), "shards_before": before,
                      "shards_committed": committed, "images_checked": images, "temp_status_files": temp,
                      "other_zarr_files": odd, "chunks_without_status": unstatused})
    res = attribute(cwd, [*BIG, "--out", "killed", "--resume"])
    m = manifest(out)
    assert m["finished"]
    assert sorted(s["shard"] for s in m["shards"]) == list(range(n_shards))  # every shard once
    assert sorted(p.name for p in (out / "shards").glob("*.json")) == [f"{s:06d}.json" for s in range(n_shards)]
    assert_same_results(out, ref)
    final = check_committed(out, ref, ref_array)
    done = re.search(r"done, (\d+) images", res.stderr)
    print(f"\nSIGKILL / resume: {len(kills)} kills, 30 shards of 2 images; per kill {kills}; the final --resume "
          f"explained {done.group(1) if done else '?'} images; {final[1]} images checked after it "
          f"({sum(k['images_checked'] for k in kills)} after the kills)")
    assert len(kills) == KILLS


KILL_AT = '''
import os
import signal
import sys

import xai_core.cli
import xai_core.batch.store as store

where, name = sys.argv[1], sys.argv[2]  # SIGKILL this process as the status file `name` is written
real_write, real_replace = store.atomic_write, os.replace


def atomic_write(path, text):
    if where == "before" and path.name == name:  # the shard's chunk is written, its status not begun
        os.kill(os.getpid(), signal.SIGKILL)
    real_write(path, text)


def replace(src, dst):
    if where == "rename" and os.path.basename(dst) == name:  # the status's temp file written, not renamed
        os.kill(os.getpid(), signal.SIGKILL)
    real_replace(src, dst)


store.atomic_write, os.replace = atomic_write, replace
sys.exit(xai_core.cli.main(sys.argv[3:]))
'''


def test_kill_between_chunk_and_status(reference: tuple[Path, Path]) -> None:
    """The two moments a random kill rarely hits: after a shard's chunk, before its status file;
    and with the status's temp file written but not renamed. Neither shard counts as done."""
    cwd, one = reference
    (cwd / "kill_at.py").write_text(KILL_AT)
    ref_array = read_array(one)
    for i, (where, shard) in enumerate([("before", 5), ("rename", 9)]):
        cmd = [sys.executable, "kill_at.py", where, f"{shard:06d}.json", "attribute", *SMALL, "--out", "targeted",
               *(["--resume"] if i else [])]
        res = subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True, timeout=TIMEOUT)
        assert res.returncode == -signal.SIGKILL, f"exit {res.returncode}\n{res.stderr}"
        committed, images, temp, _, unstatused = check_committed(cwd / "targeted", one, ref_array)
        assert (committed, images, unstatused) == (shard, 2 * shard, 1)
        assert temp == i  # the renamed-never temp file is left, and not taken for a status
        assert not (cwd / "targeted" / "shards" / f"{shard:06d}.json").exists()
    res = attribute(cwd, [*SMALL, "--out", "targeted", "--resume"])
    assert "done, 22 images" in res.stderr, res.stderr  # shards 9..19 redone
    assert manifest(cwd / "targeted")["finished"]
    assert_same_results(cwd / "targeted", one)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_jax_distributed(reference: tuple[Path, Path]) -> None:
    cwd, one = reference
    (cwd / "distributed.py").write_text(DISTRIBUTED)
    port = free_port()
    procs = [subprocess.Popen([sys.executable, "distributed.py", str(port), str(i), "attribute", *SMALL,
                               "--out", "two"], cwd=cwd, env=env(devices=2), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for i in range(2)]
    try:
        deadline = time.monotonic() + TIMEOUT
        while any(p.poll() is None for p in procs):  # one failing process: stop the other at once
            assert time.monotonic() < deadline, "timed out"
            if any(p.poll() not in (None, 0) for p in procs):
                break
            time.sleep(0.05)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        logs = [p.communicate(timeout=30)[0] for p in procs]
    for i, (p, log) in enumerate(zip(procs, logs)):
        assert p.returncode == 0, f"process {i} exit {p.returncode}:\n{log[-3000:]}"
        assert f"process {i} of 2: 2 local devices, 4 in all" in log and "on 2 device(s)" in log, log
    m = manifest(cwd / "two")
    assert m["finished"] and m["job"]["shard_size"] == 4 and len(m["shards"]) == 10
    assert_same_results(cwd / "two", one)
