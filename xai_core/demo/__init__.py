"""The demo: train a small CNN on the shapes data, explain it with every method, score the maps.
An application on the public face (it imports ``xai_core``, the adapters and the metrics); the batch
job's examples and the command line import it. ``xai-core evaluate`` lives here too
(:mod:`~xai_core.demo.evaluate`), on the same model.

``python -m xai_core.demo`` (or ``xai-core demo``) generates the data, trains
:class:`ShapesCNN` to >= 95% test accuracy in well under a minute of CPU, explains the true
class of a few test images with gradient, gradient x input, IG, SmoothGrad and occlusion,
prints a table (time, completeness gap, localization against the object masks) and writes
a PNG grid (image, mask, one signed overlay per method).

:func:`train_shapes_model` generates :func:`xai_core.data.make_shapes` images, trains
:class:`ShapesCNN` with optax and reports its held-out accuracy. The model returns
LOGITS (no softmax), so attributions explain the class score (DESIGN lesson 1). Its
head is global average pooling over ReLU features followed by one Dense layer, so a
class score is a sum of per-location evidence, which should sit on the object.

:mod:`~xai_core.demo.mislabeled` trains it on labels flipped on purpose, with a checkpoint per
epoch, and finds them by TracIn's self-influence (:func:`xai_core.influence.self_influence`).

Flax and optax are imported here only, never by ``import xai_core``.

Example:
    >>> import jax
    >>> from xai_core.demo import train_shapes_model
    >>> trained = train_shapes_model(jax.random.key(0), progress=False)  # doctest: +SKIP
    >>> trained.test_accuracy > 0.95  # doctest: +SKIP
    True
    >>> x, target = trained.test.images[0], trained.test.labels[0]  # doctest: +SKIP
    >>> score_fn = lambda x: trained.module.apply(trained.variables, x)[target]  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import xai_core as xc
from xai_core import metrics, viz
from xai_core.data import CLASSES
from xai_core.demo.model import ShapesCNN, TrainedModel, max_pool_2x2, train_shapes_model

__all__ = ["ShapesCNN", "TrainedModel", "explain", "format_table", "main", "max_pool_2x2", "run",
           "train_shapes_model"]


GREY = 0.5
"""Baseline of IG and occlusion: a mid-grey image, which holds no object. (A black baseline
is a poor reference on these colourful backgrounds: the demo's IG then puts far less of its
positive mass on the objects.)"""

METHODS: dict[str, tuple[str, dict[str, Any]]] = {
    "gradient": ("gradient", {}),
    "gradient_x_input": ("gradient_x_input", {}),
    "integrated_gradients": ("integrated_gradients", {"steps": 64, "rule": "gauss_legendre", "baseline": GREY}),
    "smoothgrad": ("smoothgrad", {"samples": 50, "sigma": 0.15}),
    "smoothgrad(ig)": (
        "smoothgrad",
        {"samples": 16, "sigma": 0.15, "base": "ig", "base_options": {"steps": 16, "rule": "gauss_legendre", "baseline": GREY}},
    ),
    "occlusion": ("occlusion", {"window": (8, 8, 3), "stride": (4, 4, 3), "baseline": GREY}),
    "guided_backprop": ("guided_backprop", {}),
    "deeplift": ("deeplift", {"baseline": GREY}),
    "lrp": ("lrp", {"composite": "epsilon_plus_flat"}),
}
"""What the demo runs: column label -> (method name, options for :func:`xai_core.attribute`)."""

CAMS: dict[str, tuple[str, str]] = {
    "grad_cam": ("grad_cam", "BatchNorm_2"),
    "grad_cam++": ("grad_cam_plus_plus", "BatchNorm_2"),
}
"""The CAM columns: label -> (function of :mod:`xai_core.inside.cam`, layer): the third conv block,
8x8 for a 64x64 image."""


class MethodReport(NamedTuple):
    """One row of the demo's table (times are for the whole batch of images)."""

    method: str
    compile_seconds: float
    seconds: float
    gap: float | None
    localization: float
    uniform: float


def explain(trained: TrainedModel, images: int, key: jax.Array) -> tuple[dict[str, np.ndarray], list[MethodReport]]:
    """Attribute the true class of the first ``images`` test images with every method in ``METHODS``.

    Each method runs as one jitted, vmapped program over the images (per-image traced
    targets); returns the maps and, per method, times, the median relative completeness gap
    ``|sum(a) - (f(x) - f(x0))| / |f(x) - f(x0)|`` (IG and DeepLift) and the mean localization
    against the object masks next to the uniform map's share.
    """
    from xai_core.adapters import from_flax

    model = from_flax(trained.module, trained.variables)
    xs, ts, masks = (a[:images] for a in trained.test)
    keys = jax.random.split(key, images)
    maps: dict[str, np.ndarray] = {}
    reports = []
    uniform = float(jax.vmap(metrics.uniform_share)(masks).mean())
    columns: dict[str, Any] = {
        name: (lambda x, t, k, method=method, options=options: xc.attribute(model.score(t), x, method=method, key=k,
                                                                           **options))
        for name, (method, options) in METHODS.items()}
    columns.update({name: (lambda x, t, k, cam=cam, layer=layer: getattr(xc.cam, cam)(model, layer)(x, t))
                    for name, (cam, layer) in CAMS.items()})
    for name, column in columns.items():
        method, options = METHODS.get(name, (name, {}))
        fn = jax.jit(jax.vmap(column))
        start = time.perf_counter()
        compiled = fn.lower(xs, ts, keys).compile()
        compile_seconds = time.perf_counter() - start
        start = time.perf_counter()
        a = compiled(xs, ts, keys).block_until_ready()
        seconds = time.perf_counter() - start
        gap = None
        if method in ("integrated_gradients", "deeplift"):
            def relative_gap(x: jax.Array, t: jax.Array, a: jax.Array) -> jax.Array:
                score = model.score(t)
                change = score(x) - score(jnp.full_like(x, options["baseline"]))
                return jnp.abs(xc.completeness_gap(score, x, a, options["baseline"])) / jnp.abs(change)

            gap = float(jnp.median(jax.vmap(relative_gap)(xs, ts, a)))
        axis = None if name in CAMS else -1  # a CAM is one (H, W) map
        localization = float(jax.vmap(lambda a, m: metrics.localization(a, m, channel_axis=axis))(a, masks).mean())
        maps[name] = np.asarray(a)
        reports.append(MethodReport(name, compile_seconds, seconds, gap, localization, uniform))
    return maps, reports


def format_table(reports: Sequence[MethodReport], images: int) -> str:
    """The demo's table as aligned text."""
    rows = [("method", "ms/image", "compile s", "completeness gap", "localization", "uniform map")]
    for r in reports:
        gap = "-" if r.gap is None else f"{r.gap:.1e}"
        rows.append((r.method, f"{1000 * r.seconds / images:.1f}", f"{r.compile_seconds:.1f}", gap, f"{r.localization:.2f}", f"{r.uniform:.2f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))) for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The demo's command-line options (shared by ``python -m xai_core.demo`` and ``xai-core demo``)."""
    parser.add_argument("--out", type=Path, default=Path("xai_core_demo.png"), help="PNG grid to write")
    parser.add_argument("--images", type=int, default=6, help="test images to explain")
    parser.add_argument("--seed", type=int, default=0, help="seed for data, training and noise")
    parser.add_argument("--train-images", type=int, default=4000, help="training set size")
    parser.add_argument("--epochs", type=int, default=5, help="passes over the training set")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar while training")


def run(args: argparse.Namespace) -> int:
    """Train, explain, print the table and write the PNG grid."""
    if args.images < 1:
        raise SystemExit("--images must be >= 1")
    train_key, noise_key = jax.random.split(jax.random.key(args.seed))
    trained = train_shapes_model(train_key, n_train=args.train_images, epochs=args.epochs, progress=not args.no_progress)
    print(f"trained ShapesCNN in {trained.seconds:.1f} s: test accuracy {trained.test_accuracy:.1%} on {len(trained.test.labels)} images")
    maps, reports = explain(trained, args.images, noise_key)
    print(f"\nattributions of the true class for {args.images} test images (64x64x3), jitted and vmapped on {jax.devices()[0].platform}:")
    print(format_table(reports, args.images))
    rows = [[trained.test.images[i], trained.test.masks[i]]
            + [viz.overlay(trained.test.images[i], maps[m][i], channel_axis=None if m in CAMS else -1) for m in maps]
            for i in range(args.images)]
    labels = [CLASSES[int(t)] for t in trained.test.labels[: args.images]]
    path = viz.save_grid(rows, args.out, row_titles=labels, col_titles=["image", "mask", *maps])
    print(f"\nwrote {path} (red: positive evidence for the class, blue: negative)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m xai_core.demo``."""
    parser = argparse.ArgumentParser(prog="python -m xai_core.demo", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))

