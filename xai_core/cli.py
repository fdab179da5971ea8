"""The ``xai-core`` command: ``demo``, ``evaluate``, ``attribute`` (the batch job) and ``methods``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``xai-core`` console script."""
    parser = argparse.ArgumentParser(prog="xai-core", description="Attribution methods as pure JAX transforms.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("methods", help="list every method name `xai_core.attribute` accepts")
    demo = commands.add_parser("demo", help="train a small CNN on the shapes data and explain it")
    from xai_core.demo import add_arguments

    add_arguments(demo)
    evaluate = commands.add_parser("evaluate", help="rank the demo's methods by every metric on the shapes model")
    from xai_core import evaluation

    evaluation.add_arguments(evaluate)
    attribute = commands.add_parser("attribute", help="a batch job: explain a data set, sharded over every device, "
                                                      "resumable, with a report")
    from xai_core.batch import cli as batch_cli

    batch_cli.add_arguments(attribute)
    args = parser.parse_args(argv)
    if args.command == "attribute":
        return batch_cli.run(args)
    if args.command == "evaluate":
        return evaluation.run(args)
    if args.command == "methods":
        from xai_core.registry import get_method, methods

        for name in methods():
            method = get_method(name)
            label = name if name == method.name else f"{name} (alias of {method.name})"
            print(f"{label:40s} {method.summary}{'  [needs key]' if method.needs_key else ''}")
        return 0
    from xai_core.demo import run

    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
