"""The ``xai-core`` command: ``demo``, ``evaluate``, ``attribute`` (the batch job) and ``methods``.

Every user error ends as one line on stderr, ``xai-core COMMAND: --flag VALUE: what is wrong;
what to do``, with exit status 2 (argparse's own errors too): a command raises
:class:`~xai_core.core.checks.UsageError`, :func:`main` prints it.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import NoReturn

from xai_core.core.checks import UsageError


def one_line(text: object) -> str:
    """``text`` with its line breaks and runs of spaces collapsed."""
    return " ".join(str(text).split())


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line (no usage block); exit status 2 as usual."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {one_line(message)} (see {self.prog} --help)\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``xai-core`` console script."""
    parser = _Parser(prog="xai-core", description="Attribution methods as pure JAX transforms.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("methods", help="list every method name `xai_core.attribute` accepts")
    demo = commands.add_parser("demo", help="train a small CNN on the shapes data and explain it")
    from xai_core.demo import add_arguments

    add_arguments(demo)
    evaluate = commands.add_parser("evaluate", help="rank the demo's methods by every metric on the shapes model")
    from xai_core.demo import evaluate as evaluate_cli

    evaluate_cli.add_arguments(evaluate)
    attribute = commands.add_parser("attribute", help="a batch job: explain a data set, sharded over every device, "
                                                      "resumable, with a report")
    from xai_core.batch import cli as batch_cli

    batch_cli.add_arguments(attribute)
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        commands.choices[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        if args.command == "attribute":
            return batch_cli.run(args)
        if args.command == "evaluate":
            return evaluate_cli.run(args)
    except UsageError as err:
        parser.exit(2, f"xai-core {args.command}: {one_line(err)}\n")
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
