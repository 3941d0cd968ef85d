"""Errors that reach the user as one line, never as a traceback."""

from __future__ import annotations


class BenchError(Exception):
    """Base class: the CLI prints ``str(error)`` and exits with status 2."""


class UnknownNameError(BenchError, KeyError):
    """A method, dataset, network or noise type that is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class ConfigError(BenchError, ValueError):
    """A grid file or run spec that cannot be used."""


class DataError(BenchError):
    """A dataset whose files are missing or corrupt."""
