"""The ``nmsat`` command line: one program fronting every part of the tool.

Each subcommand lives in the module that implements it and exposes
``register(subparsers)``, which adds its parser with ``set_defaults(func=...)``. Parsers
import nothing heavy; handlers import what they need. Library code raises; :func:`main`
turns user errors into one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from nmsat import __version__
from nmsat.errors import NmsatError

# subcommand -> module providing register(subparsers). Order is the order in --help.
SUBCOMMANDS: dict[str, str] = {
    "simulate": "nmsat.commands.simulate",
    "train": "nmsat.commands.train",
    "trace": "nmsat.commands.trace",
    "workloads": "nmsat.commands.workloads",
    "rtl": "nmsat.commands.rtl",
    "report": "nmsat.commands.report",
    "sweep": "nmsat.commands.sweep",
    "config": "nmsat.commands.config",
    "demo": "nmsat.commands.demo",
}


class UsageError(NmsatError):
    """Bad command-line usage (unknown flag, missing argument)."""


def positive_int(text: str) -> int:
    """argparse ``type=`` for counts that must be at least 1 (``--batch``, ``--kv-len``)."""
    return _int_at_least(text, 1, "a positive integer")


def non_negative_int(text: str) -> int:
    """argparse ``type=`` for values that must be at least 0 (``--seed``)."""
    return _int_at_least(text, 0, "a non-negative integer")


def _int_at_least(text: str, lo: int, what: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, not {text!r}") from None
    if v < lo:
        raise argparse.ArgumentTypeError(f"must be {what}, not {text!r}")
    return v


class Parser(argparse.ArgumentParser):
    """An argparse parser whose errors are exceptions, so main prints exactly one line."""

    def error(self, message: str) -> None:  # type: ignore[override]
        where = self.prog.removeprefix("nmsat").strip()
        raise UsageError(f"{where}: {message}" if where else message)


def build_parser() -> Parser:
    parser = Parser(
        prog="nmsat",
        description="Co-design tool for N:M sparse DNN training and inference on SAT-class "
                    "accelerators: workloads, dataflow, cycle-level simulation, RTL, reports.",
    )
    parser.add_argument("--version", action="version", version=f"nmsat {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for module in SUBCOMMANDS.values():
        importlib.import_module(module).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            raise UsageError("a command is required (see nmsat --help)")
        result = args.func(args)
        return int(result or 0)
    except BrokenPipeError:  # e.g. `nmsat config show vcu1525 | head`
        return 0
    except (NmsatError, ValueError, OSError) as e:
        # OSError covers missing files, permissions, a file where a folder was expected.
        msg = str(e) if str(e) else type(e).__name__
        print(f"nmsat: error: {msg.splitlines()[0]}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nmsat: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
