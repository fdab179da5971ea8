"""``xai-core evaluate``: the demo's methods ranked by every metric on the shapes model.

It trains :class:`~xai_core.demo.ShapesCNN`, runs :func:`xai_core.evaluate` over held-out test images
with the demo's methods and CAMs, prints the markdown table and writes ``table.md``, ``table.csv``,
``report.json`` and ``report.png``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

import xai_core as xc
from xai_core import demo
from xai_core.core.checks import UsageError, int_at_least
from xai_core.metrics.evaluation import METRICS


def shapes_methods() -> dict[str, Any]:
    """The demo's methods and CAMs (:data:`xai_core.demo.METHODS`, :data:`xai_core.demo.CAMS`)
    as :func:`~xai_core.metrics.evaluation.evaluate` methods."""
    named: dict[str, Any] = dict(demo.METHODS.items())
    for label, (name, layer) in demo.CAMS.items():
        named[label] = lambda m, x, t, k, name=name, layer=layer: getattr(xc.cam, name)(m, layer)(x, t)
    return named


TEST_IMAGES = 1000
"""Held-out images of the shapes data that ``xai-core evaluate`` draws from."""


def add_arguments(parser: Any) -> None:
    """``xai-core evaluate``'s options."""
    parser.add_argument("--out-dir", type=Path, default=Path("xai_core_evaluate"),
                        help="where to write table.md, table.csv, report.json and report.png")
    parser.add_argument("--images", type=int_at_least(1, TEST_IMAGES), default=16,
                        help=f"test images to evaluate on (1..{TEST_IMAGES})")
    parser.add_argument("--methods", default="all", help="comma-separated labels of the demo's methods, or 'all'")
    parser.add_argument("--metrics", default="all", help=f"comma-separated names from {', '.join(METRICS)}, or 'all'")
    parser.add_argument("--seed", type=int_at_least(0, 2**32 - 1), default=0, help="seed for data, training and noise")
    parser.add_argument("--train-images", type=int_at_least(32), default=4000,
                        help="training set size (at least one batch: 32)")
    parser.add_argument("--epochs", type=int_at_least(1), default=5, help="passes over the training set")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _chosen(flag: str, text: str, known: Sequence[str]) -> list[str]:
    """The comma-separated names of ``text`` ('all': every one of ``known``), each checked."""
    names = list(known) if text == "all" else text.split(",")
    unknown = [name for name in names if name not in known]
    if unknown:
        raise UsageError(f"{flag} {text}: unknown {', '.join(map(repr, unknown))}; choose from "
                         f"{', '.join(known)}, or 'all'.")
    return names


def run(args: Any) -> int:
    """Train the shapes model, evaluate, print the markdown table, write the files."""
    from xai_core.adapters import from_flax

    methods = shapes_methods()
    chosen = _chosen("--methods", args.methods, list(methods))
    names = _chosen("--metrics", args.metrics, list(METRICS))
    try:  # before training: a folder that cannot be written fails now, not after minutes
        args.out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"--out-dir {args.out_dir}: cannot create it ({type(err).__name__}: {err}); choose a "
                         "folder you can write.") from err
    train_key, key = jax.random.split(jax.random.key(args.seed))
    trained = demo.train_shapes_model(train_key, n_train=args.train_images, epochs=args.epochs, n_test=TEST_IMAGES,
                                      progress=not args.no_progress)
    print(f"trained ShapesCNN in {trained.seconds:.1f} s: test accuracy {trained.test_accuracy:.1%}")
    model = from_flax(trained.module, trained.variables)
    xs, ts, masks = (a[: args.images] for a in trained.test)
    report = xc.evaluate(model, xs, ts, masks=masks, methods={label: methods[label] for label in chosen}, metrics=names,
                      key=key, baseline=demo.GREY, progress=not args.no_progress)
    uniform = float(jnp.mean(jax.vmap(xc.metrics.uniform_share)(masks)))
    print(f"\n{args.images} test images of the shapes data (64x64x3), true class, grey (0.5) baseline; "
          f"a uniform map's localization is {uniform:.2f}:\n")
    print(report.to_markdown())
    files = ["table.md", "table.csv", "report.json"]
    if importlib.util.find_spec("matplotlib") is None:
        print("no plot: matplotlib is not installed (pip install 'xai-core[eval]')")
    else:
        files.append("report.png")
    for name in files:
        print(f"wrote {report.save(args.out_dir / name)}")
    return 0
