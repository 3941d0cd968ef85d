"""Stopping a grid by a signal: Ctrl-C (SIGINT), SIGTERM or SIGHUP all stop it the same way.

Within :func:`stop_on_signals`, SIGTERM and SIGHUP raise :class:`Interrupted`, a
KeyboardInterrupt, so that joblib and the run session stop a grid on a batch scheduler's SIGTERM
exactly as on Ctrl-C. :data:`signalled` records the signals received, so that a worker killed by
the same signal is not mistaken for a crash.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

from bench.cli import EXIT_INTERRUPTED, EXIT_TERMINATED

# what a batch scheduler (SLURM, systemd, docker) or a closed terminal sends
STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n))

signalled: list[int] = []  # the stop signals received by this process


class Interrupted(KeyboardInterrupt):
    """The runner was stopped by a signal: Ctrl-C (SIGINT), SIGTERM or SIGHUP.

    A subclass of KeyboardInterrupt, so that joblib and the runner stop a grid on SIGTERM
    exactly as on Ctrl-C. ``exit_code``: 130 for SIGINT, 143 for SIGTERM and SIGHUP.
    """

    def __init__(self, signum: int, message: str = "") -> None:
        self.signum = signum
        self.exit_code = EXIT_INTERRUPTED if signum == signal.SIGINT else EXIT_TERMINATED
        super().__init__(message or f"interrupted by {signal.Signals(signum).name}")


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise :class:`Interrupted` in the main thread (once;
    a repeated signal during the clean-up is ignored). Outside the main thread, a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame) -> None:
        first = not signalled
        signalled.append(signum)
        if first:
            raise Interrupted(signum)

    previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
