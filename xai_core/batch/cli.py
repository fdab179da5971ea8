"""``xai-core attribute``: the batch job from the command line (see :mod:`xai_core.batch`)."""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from typing import Any

from xai_core.core.checks import UsageError, int_at_least

EPILOG = """examples:
  xai-core attribute --model model.keras --data images/ --method ig --out runs/ig -o steps=32
  xai-core attribute --model net.pt2 --data x.npy --labels y.npy --targets label --out runs/lrp --method lrp
  xai-core attribute --model mypkg.models:flax_model --data mypkg.data:arrays --out runs/g --method gradient
  xai-core attribute ... --resume        # after a kill: finishes the unfinished shards only

On several hosts, run the same command on each after setting JAX's distributed environment
(e.g. a TPU pod, or JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID with
--distributed): each process explains its own shards on its local devices."""


def _option(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"method options are key=value, got {text!r} (e.g. -o steps=32)")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _floats(positive: bool) -> Callable[[str], tuple[float, ...]]:
    """An argparse ``type=``: comma-separated numbers, one or one per channel."""
    def parse(text: str) -> tuple[float, ...]:
        try:
            values = tuple(float(v) for v in text.split(","))
        except ValueError:
            values = ()
        if not values or not all(math.isfinite(v) and (v > 0 or not positive) for v in values):
            kind = "positive numbers" if positive else "numbers"
            raise argparse.ArgumentTypeError(f"expected {kind}, one or one per channel separated by commas "
                                             f"(e.g. 0.229,0.224,0.225), got {text!r}")
        return values

    return parse


def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        shape = ()
    if not shape or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas (e.g. 64,64,3 or "
                                         f"3,224,224), got {text!r}")
    return shape


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``xai-core attribute``."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("--model", required=True, metavar="SPEC",
                        help="a .keras / .h5 file, a torch.export .pt2 file (it runs as it was exported: export "
                             "after model.eval()), or package.module:factory returning an adapter model "
                             "(xai_core.adapters.from_flax / from_torch / from_keras)")
    parser.add_argument("--data", required=True, metavar="SPEC",
                        help="a folder of PNG / JPEG images, a .npy array of examples, a .zarr array (v2 / v3), or "
                             "package.module:factory returning an array or (images, labels)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (zarr attributions, manifest)")
    parser.add_argument("--method", default="integrated_gradients", help="a name from `xai-core methods` (default ig)")
    parser.add_argument("-o", "--option", action="append", type=_option, default=[], metavar="KEY=VALUE",
                        help="a method option, JSON value (repeat): -o steps=32 -o baseline=0.5")
    parser.add_argument("--targets", default="predicted", metavar="predicted|label|FILE",
                        help="class explained per example: the prediction (default), the label, or a .npy / .txt file")
    parser.add_argument("--labels", metavar="FILE", help="labels for --targets label (.npy, or one integer per line)")
    parser.add_argument("--input-shape", type=_shape, metavar="H,W,C",
                        help="one example's shape when the model does not record it (a Flax factory), e.g. 64,64,3 "
                             "or 3,224,224: images are resized to it and laid out as it is")
    parser.add_argument("--batch-size", type=int_at_least(1), default=8,
                        help="examples per device per step (default 8)")
    parser.add_argument("--mean", type=_floats(False), default=(0.0,), help="image normalization: (x - mean) / std, "
                                                                     "per channel, e.g. 0.485,0.456,0.406")
    parser.add_argument("--std", type=_floats(True), default=(1.0,), help="see --mean")
    parser.add_argument("--seed", type=int_at_least(0, 2**32 - 1), default=0,
                        help="seed of sampling methods (smoothgrad ...), 0..2**32-1")
    again = parser.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="finish a killed job: skip its finished shards")
    again.add_argument("--force", action="store_true", help="delete what --out holds and start again")
    parser.add_argument("--report", action="store_true", help="write report/index.html: a browsable gallery")
    parser.add_argument("--report-images", type=int_at_least(0), default=64,
                        help="previews in the report (default 64)")
    parser.add_argument("--threads", type=int_at_least(1), default=4, help="decoding threads (grain; default 4)")
    parser.add_argument("--distributed", action="store_true",
                        help="call jax.distributed.initialize() first (multi-host; reads JAX's environment)")


def run(args: argparse.Namespace) -> int:
    """Run the job; a flag's bad value is a :class:`~xai_core.core.checks.UsageError` naming the flag."""
    from xai_core.batch.job import Job, run as run_job
    from xai_core.batch.errors import MissingExtra

    if args.distributed:
        import jax

        try:
            jax.distributed.initialize()
        except (ValueError, RuntimeError) as err:
            raise UsageError(f"--distributed: jax.distributed.initialize() failed ({err}); on a TPU pod it needs "
                             "no settings, elsewhere set JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and "
                             "JAX_PROCESS_ID") from err
    job = Job(model=args.model, data=args.data, out=args.out, method=args.method, options=dict(args.option),
              targets=args.targets, labels=args.labels, batch_size=args.batch_size, seed=args.seed,
              mean=args.mean, std=args.std, resume=args.resume, force=args.force, report=args.report,
              report_images=args.report_images, threads=args.threads, input_shape=args.input_shape)
    try:
        manifest = run_job(job)
    except MissingExtra as err:  # a bad value is a SpecError, a UsageError: xai_core.cli prints it
        raise UsageError(str(err)) from err
    if manifest.get("finished") is not None:
        print(f"{manifest['job']['examples']} examples, {manifest['errors']} unreadable, "
              f"{manifest['seconds']:.1f} s: {args.out}")
    return 0
