"""The ``nmsat`` command line: one program fronting every part of the tool (the top floor).

Every argparse module lives in this package; library code never imports it. Each
subcommand's module exposes ``register(subparsers)``, which adds its parser (with the
one-line summary :data:`SUBCOMMANDS` states) and ``set_defaults(func=...)``. Commands load
the library lazily: :func:`main` imports only the chosen subcommand's module, so
``nmsat --version`` and ``nmsat --help`` import no part of the library, and a handler
imports what it needs. Library code raises; :func:`main` turns user errors into one line
on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from nmsat import __version__, log
from nmsat.errors import NmsatError

# subcommand -> (module providing register(subparsers), one-line summary). Order is the
# order in --help. The summaries live here so `nmsat --help` imports no subcommand.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "simulate": ("nmsat.commands.simulate", "simulate a training iteration or inference pass"),
    "train": ("nmsat.commands.train",
              "train mlp/cnn on digits with dense, SR-STE or BDWP N:M and write a trace"),
    "trace": ("nmsat.commands.trace", "inspect sparse-training traces (nmsat train --trace)"),
    "workloads": ("nmsat.commands.workloads",
                  "list the model zoo or show a workload's layers"),
    "rtl": ("nmsat.commands.rtl", "generate, synthesise and simulate the Amaranth RTL"),
    "report": ("nmsat.commands.report",
               "figures and an HTML page from simulation results and traces"),
    "sweep": ("nmsat.commands.sweep",
              "run a design-space sweep on Dask; export or report its results"),
    "config": ("nmsat.commands.config", "show, check or write an accelerator configuration"),
    "demo": ("nmsat.commands.demo", "demonstrate the NumPy reference model on one layer"),
}


def summary(command: str) -> str:
    """The one-line ``--help`` summary of ``command`` (its ``register`` passes it)."""
    return SUBCOMMANDS[command][1]


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


def nm_pattern(text: str) -> str:
    """argparse ``type=`` for ``--nm``: the text, once :meth:`NM.parse` accepts it, so a bad
    pattern is refused naming the flag before any work."""
    from nmsat.types import NM

    try:
        NM.parse(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


class HelpFormatter(argparse.HelpFormatter):
    """Wraps descriptions as argparse does, but keeps the lines of a text that has line
    breaks (the ``examples:`` epilog of every subcommand) as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "\n".join(indent + line if line else line for line in text.splitlines())
        return super()._fill_text(text, width, indent)


def examples(*lines: str) -> str:
    """A subcommand's ``epilog``: ``examples:`` and one command per line."""
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


class Parser(argparse.ArgumentParser):
    """An argparse parser whose errors are exceptions, so main prints exactly one line.

    Every parser (the top level and each subcommand's) takes the global ``-q/--quiet``
    and ``-v/--verbose``, so they work before or after the subcommand. Their default is
    "not given" (``SUPPRESS``), so a subcommand's parser does not reset a flag given
    before it."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)
        if self.add_help:
            g = self.add_argument_group("output")
            g.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                           help="print results and errors only: no progress, status or "
                                "notes")
            g.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                           help="also print detail, such as the HDL simulator's and "
                                "compiler's own output (otherwise kept in a log file)")

    def error(self, message: str) -> None:  # type: ignore[override]
        where = self.prog.removeprefix("nmsat").strip()
        raise UsageError(f"{where}: {message}" if where else message)


def build_parser(command: str | None = None, *, lazy: bool = False) -> Parser:
    """The ``nmsat`` parser. By default every subcommand's module is imported and its full
    parser registered. With ``lazy``, only ``command``'s module is (none if ``command`` is
    None or unknown): the others are stubs carrying their summary, which is all
    ``nmsat --help`` shows and all an unknown command's error needs."""
    parser = Parser(
        prog="nmsat",
        description="Co-design tool for N:M sparse DNN training and inference on SAT-class "
                    "accelerators: workloads, dataflow, cycle-level simulation, RTL, reports.",
    )
    parser.add_argument("--version", action="version", version=f"nmsat {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name, (module, text) in SUBCOMMANDS.items():
        if lazy and name != command:
            sub.add_parser(name, help=text)
        else:
            importlib.import_module(module).register(sub)
    return parser


def _command(argv: Sequence[str]) -> str | None:
    """The subcommand ``argv`` names: its first word that is not an option (the top level
    has only ``--help`` and ``--version``, which take no value)."""
    return next((a for a in argv if not a.startswith("-")), None)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``nmsat`` with ``argv`` (default: the process's arguments); returns the exit
    status (0, 1 when a check found a difference, 2 for bad input, 130 when interrupted)."""
    if argv is None:
        argv = sys.argv[1:]
    parser = build_parser(_command(argv), lazy=True)
    try:
        args = parser.parse_args(argv)
        quiet, verbose = getattr(args, "quiet", False), getattr(args, "verbose", False)
        if quiet and verbose:
            raise UsageError("--quiet and --verbose cannot be given together")
        log.configure(logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO)
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
