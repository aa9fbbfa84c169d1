"""Exceptions that the CLI turns into one line on stderr and exit status 2."""

__all__ = ["ConfigError", "NmsatError", "OutputError"]


class NmsatError(Exception):
    """Bad user input: a malformed file, an impossible setting, a missing resource.

    Library code raises this (or ``ValueError``) with a message that names the
    offending field and value; only :mod:`nmsat.commands` prints it.
    """


class ConfigError(NmsatError, ValueError):
    """An accelerator configuration field has an invalid value or an unknown name."""


class OutputError(NmsatError, OSError):
    """An output file or folder cannot be written (the message names the path and why)."""
