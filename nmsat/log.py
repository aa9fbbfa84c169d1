"""Status, notes and detail on stderr through the standard :mod:`logging` module.

Library code reports long work and notes to the ``nmsat`` logger: :func:`status` (INFO:
progress of a long step, a note the user should see) and :func:`detail` (DEBUG: what
``--verbose`` adds, such as a tool's own output). The command line (``nmsat.commands``)
sets the level from the global ``--quiet`` (WARNING: results and errors only) and
``--verbose`` (DEBUG) flags and writes records to the current ``sys.stderr``; a program
that imports nmsat and configures nothing sees only warnings (Python's default).
"""

from __future__ import annotations

import logging
import sys

__all__ = ["LOGGER", "configure", "detail", "showing_status", "status", "verbose"]

__all__ = ["LOGGER", "configure", "detail", "showing_status", "status", "verbose"]

LOGGER = logging.getLogger("nmsat")


def status(message: str, *args: object) -> None:
    """A progress or status line (shown unless ``--quiet``)."""
    LOGGER.info(message, *args)


def detail(message: str, *args: object) -> None:
    """A line only ``--verbose`` shows."""
    LOGGER.debug(message, *args)


def verbose() -> bool:
    """True when ``--verbose`` asked for detail (tools' own output is then passed through)."""
    return LOGGER.isEnabledFor(logging.DEBUG)


def showing_status() -> bool:
    """True unless ``--quiet`` (progress bars check this)."""
    return LOGGER.isEnabledFor(logging.INFO)


class _Stderr(logging.Handler):
    """Writes each record to the ``sys.stderr`` of the moment (so a redirected or captured
    stderr gets it), one line each."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:  # pragma: no cover - logging's own contract
            self.handleError(record)


_HANDLER = _Stderr()
_HANDLER.setFormatter(logging.Formatter("%(message)s"))


def configure(level: int) -> None:
    """Send the ``nmsat`` logger's records at ``level`` and above to stderr (idempotent)."""
    if _HANDLER not in LOGGER.handlers:
        LOGGER.addHandler(_HANDLER)
    LOGGER.propagate = False
    LOGGER.setLevel(level)
