"""``xai-core attribute``: the batch job from the command line (see :mod:`xai_core.batch`)."""

from __future__ import annotations

import argparse
import json
from typing import Any

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


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(","))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``xai-core attribute``."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("--model", required=True, metavar="SPEC",
                        help="a .keras / .h5 file, a torch.export .pt2 file, or package.module:factory returning "
                             "an adapter model (xai_core.adapters.from_flax / from_torch / from_keras)")
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
    parser.add_argument("--input-shape", type=lambda t: tuple(int(v) for v in t.split(",")), metavar="H,W,C",
                        help="one example's shape when the model does not record it (a Flax factory), e.g. 64,64,3 "
                             "or 3,224,224: images are resized to it and laid out as it is")
    parser.add_argument("--batch-size", type=int, default=8, help="examples per device per step (default 8)")
    parser.add_argument("--mean", type=_floats, default=(0.0,), help="image normalization: (x - mean) / std, "
                                                                     "per channel, e.g. 0.485,0.456,0.406")
    parser.add_argument("--std", type=_floats, default=(1.0,), help="see --mean")
    parser.add_argument("--seed", type=int, default=0, help="seed of sampling methods (smoothgrad ...)")
    parser.add_argument("--resume", action="store_true", help="finish a killed job: skip its finished shards")
    parser.add_argument("--force", action="store_true", help="delete what --out holds and start again")
    parser.add_argument("--report", action="store_true", help="write report/index.html: a browsable gallery")
    parser.add_argument("--report-images", type=int, default=64, help="previews in the report (default 64)")
    parser.add_argument("--threads", type=int, default=4, help="decoding threads (grain; default 4)")
    parser.add_argument("--distributed", action="store_true",
                        help="call jax.distributed.initialize() first (multi-host; reads JAX's environment)")


def run(args: argparse.Namespace) -> int:
    """Run the job; a bad spec, method or output folder exits with its message."""
    from xai_core.batch.job import Job, run as run_job
    from xai_core.batch.sources import SpecError
    from xai_core.batch.store import OutputError

    if args.batch_size < 1:
        raise SystemExit("--batch-size must be >= 1")
    if args.distributed:
        import jax

        jax.distributed.initialize()
    job = Job(model=args.model, data=args.data, out=args.out, method=args.method, options=dict(args.option),
              targets=args.targets, labels=args.labels, batch_size=args.batch_size, seed=args.seed,
              mean=args.mean, std=args.std, resume=args.resume, force=args.force, report=args.report,
              report_images=args.report_images, threads=args.threads, input_shape=args.input_shape)
    try:
        manifest = run_job(job)
    except (SpecError, OutputError, ValueError) as err:
        raise SystemExit(f"xai-core attribute: {err}") from None
    if manifest.get("finished") is not None:
        print(f"{manifest['job']['examples']} examples, {manifest['errors']} unreadable, "
              f"{manifest['seconds']:.1f} s: {args.out}")
    return 0
