"""Command-line plumbing shared by ``python -m bench`` and ``python -m bench.report``: option
types that reject bad values at parse time, a parser whose errors are one line, and the exit
codes (listed in docs/running-grids.md)."""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any, Callable, NoReturn

EXIT_OK = 0
EXIT_RUNS_FAILED = 1     # the grid ran, some runs failed
EXIT_BAD_INPUT = 2       # a bad option, grid file or record folder, or an unusable environment
EXIT_INTERRUPTED = 130   # SIGINT (Ctrl-C)
EXIT_PIPE_CLOSED = 141   # the reader of the output went away (``| head``)
EXIT_TERMINATED = 143    # SIGTERM or SIGHUP (a batch scheduler, a closed terminal)


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (``prog: error: ...``, exit 2), without the
    usage block; ``--help`` still shows it."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see --help)\n")


def _number(kind: type, minimum: float, *, strict: bool) -> Callable[[str], Any]:
    relation = ">" if strict else ">="
    noun = "an integer" if kind is int else "a number"

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{noun} {relation} {minimum:g} expected, "
                                             f"got {text!r}") from None
        if not math.isfinite(value) or value < minimum or (strict and value == minimum):
            raise argparse.ArgumentTypeError(f"{noun} {relation} {minimum:g} expected, "
                                             f"got {text!r}")
        return value

    parse.__name__ = f"{kind.__name__} {relation} {minimum:g}"  # argparse names it in errors
    return parse


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer >= ``minimum``."""
    return _number(int, minimum, strict=False)


def float_at_least(minimum: float) -> Callable[[str], float]:
    """An argparse type: a finite number >= ``minimum``."""
    return _number(float, minimum, strict=False)


def float_above(minimum: float) -> Callable[[str], float]:
    """An argparse type: a finite number > ``minimum``."""
    return _number(float, minimum, strict=True)


def quiet_broken_pipe() -> int:
    """After a BrokenPipeError on stdout (``status | head``): silence the interpreter's own
    flush at exit and return the exit code of a closed pipe."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return EXIT_PIPE_CLOSED


def first_line(text: str | None) -> str:
    """The first line of an error text, at most 160 characters: what a one-line message quotes."""
    return (text or "").strip().splitlines()[0][:160] if text and text.strip() else ""
