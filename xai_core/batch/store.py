"""Where a batch job writes: an output folder that a kill never leaves half-written.

```
OUT/manifest.json          the job's identity (model and data hashes, method, options, versions,
                           shard size) and, when the job ends, every shard's status and every
                           example's name, target, score and completeness gap
OUT/attributions.zarr/     (N, *example_shape) float32, zarr v3 (tensorstore), zstd, one chunk
                           per shard: xarray / dask / zarr-python / tensorstore open it directly
OUT/shards/000012.json     one shard's status, written after its chunk: rows, targets, scores,
                           gaps, errors, seconds
OUT/errors.jsonl           examples that could not be read: index, name, reason
```

A shard is committed by writing its chunk (tensorstore's file store writes a chunk to a
temporary file and renames it into place), then its status file the same way (write, fsync,
rename, fsync the folder). A shard without a status file is unfinished, whatever its chunk
holds: ``--resume`` redoes exactly those.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from xai_core.batch.errors import SpecError

FORMAT = "xai-core-batch/1"


class OutputError(SpecError):
    """The output folder (``--out``) holds something else (another job's results, or not ours);
    the message starts with the flag and says what to do."""


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new))
            if k != "versions" and old.get(k) != new.get(k)]


class Store:
    """An output folder for one job identity (see the module doc)."""

    def __init__(self, root: Path, identity: dict[str, Any]) -> None:
        self.root, self.identity = root, identity
        self.shards = root / "shards"

    @classmethod
    def open(cls, root: str | Path, identity: dict[str, Any], *, resume: bool, force: bool,
             create: bool = True) -> Store:
        """Check the folder against ``identity``: a new folder is created; the same job needs
        ``resume`` (or ``force``); another job's results are refused unless ``force``, which
        deletes them. ``create=False`` (other processes of a multi-host job) only opens."""
        root = Path(root)
        manifest = root / "manifest.json"
        if create and root.exists() and any(root.iterdir()):
            if not manifest.is_file():
                raise OutputError(f"--out {root}: not empty and holds no xai-core manifest.json; choose another "
                                  "--out.")
            old = json.loads(manifest.read_text())["job"]
            changed = _differences(old, identity)
            if changed and not force:
                raise OutputError(f"--out {root}: holds another job's results ({'; '.join(changed)}); use another "
                                  "--out, or --force to delete them and start again.")
            if not changed and not (resume or force):
                raise OutputError(f"--out {root}: already holds this job's results; pass --resume to finish it, or "
                                  "--force to redo it from scratch.")
            if force:
                shutil.rmtree(root)
        store = cls(root, identity)
        if create and not manifest.is_file():
            root.mkdir(parents=True, exist_ok=True)
            store.shards.mkdir(exist_ok=True)
            atomic_write(manifest, json.dumps({"format": FORMAT, "job": identity, "finished": False}, indent=1))
        store.array = store._open_array(create)
        return store

    def _open_array(self, create: bool) -> Any:
        from xai_core.batch.sources import need

        ts = need("tensorstore")
        n, shape, chunk = self.identity["examples"], self.identity["example_shape"], self.identity["shard_size"]
        spec: dict[str, Any] = {"driver": "zarr3", "kvstore": {"driver": "file", "path": str(self.root / "attributions.zarr")}}
        if create:
            spec.update(open=True, create=True, metadata={
                "shape": [n, *shape], "data_type": "float32", "fill_value": 0.0,
                "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [chunk, *shape]}},
                "codecs": [{"name": "bytes", "configuration": {"endian": "little"}},
                           {"name": "zstd", "configuration": {"level": 3}}]})
        return ts.open(spec).result()

    def status_path(self, shard: int) -> Path:
        return self.shards / f"{shard:06d}.json"

    def done(self, shard: int) -> bool:
        return self.status_path(shard).is_file()

    def commit(self, shard: int, attributions: np.ndarray, status: dict[str, Any]) -> None:
        """Write the shard's chunk, then its status: the shard is visible only when both are."""
        start = shard * self.identity["shard_size"]
        self.array[start:start + len(attributions)].write(np.asarray(attributions, np.float32)).result()
        atomic_write(self.status_path(shard), json.dumps({"shard": shard, "start": start, **status}))

    def errors(self) -> list[dict[str, Any]]:
        """The examples that could not be read (``errors.jsonl``, written by :meth:`finish`)."""
        path = self.root / "errors.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []

    def finish(self, n_shards: int, **extra: Any) -> dict[str, Any]:
        """Gather every shard's status into the manifest (with ``extra`` entries, e.g. timings)
        and ``errors.jsonl``; returns the manifest."""
        statuses = [json.loads(self.status_path(s).read_text()) for s in range(n_shards) if self.done(s)]
        examples = {key: [v for s in statuses for v in s[key]] for key in ("names", "targets", "scores", "gaps")}
        errors = [e for s in statuses for e in s["errors"]]
        manifest = {"format": FORMAT, "job": self.identity, "finished": len(statuses) == n_shards,
                    "shards": [{k: s[k] for k in ("shard", "start", "rows", "seconds")} for s in statuses],
                    "errors": len(errors), **extra, "examples": examples}
        atomic_write(self.root / "errors.jsonl", "".join(json.dumps(e) + "\n" for e in errors))
        atomic_write(self.root / "manifest.json", json.dumps(manifest, indent=1))
        return manifest
