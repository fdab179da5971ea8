"""The job's ``--report``: the first images with their signed overlays, and every example's row."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from xai_core import viz


def gallery(store: Any, source: Any, manifest: dict[str, Any], job: Any) -> Path:
    """Write ``OUT/report/index.html`` (:func:`xai_core.batch.report.write_report`) for a
    finished job: previews of the first ``job.report_images`` examples that were read."""
    from xai_core.batch.report import write_report

    examples = manifest["examples"]
    errors = {e["index"]: e["reason"] for e in store.errors()}
    count = min(job.report_images, len(examples["names"]))
    shape = source.example_shape
    axis = 0 if shape[0] in (1, 3) and shape[-1] not in (1, 3) else -1
    maps = store.array[:count].read().result() if count else np.zeros((0, *shape))
    mean, std = np.asarray(job.mean, np.float32), np.asarray(job.std, np.float32)
    images, overlays = {}, {}
    for i in range(count):
        if i in errors:
            continue
        x = source.read(i)
        hwc = np.moveaxis(x, 0, -1) if axis == 0 else x
        picture = np.clip(hwc * std + mean, 0, 1)
        if picture.shape[-1] == 1:
            picture = np.repeat(picture, 3, axis=-1)
        images[i] = (picture * 255).astype(np.uint8)
        overlays[i] = viz.overlay(picture, np.moveaxis(maps[i], 0, -1) if axis == 0 else maps[i])
    rows = [{"index": i, "name": name, "target": t, "score": s, "gap": g, "error": errors.get(i)}
            for i, (name, t, s, g) in enumerate(zip(examples["names"], examples["targets"], examples["scores"],
                                                   examples["gaps"]))]
    return write_report(store.root, rows, images=images, overlays=overlays,
                        title=f"xai-core attribute: {job.method} on {job.data}", method=job.method)
