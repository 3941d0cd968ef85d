"""What a session shows while it runs: one line per finished run, and a bar (in a terminal)
whose tail names the failed runs and the epoch each running run is at."""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.config import RunSpec

__all__ = ["Tally", "run_line", "running_text", "write"]

PROGRESS_SECONDS = 1.0  # how often the bar shows the epochs of the running runs


@dataclass
class Tally:
    """The runs counted on the bar, and those of them that failed for good."""

    finished: set = field(default_factory=set)
    failed: set = field(default_factory=set)


def run_line(spec: RunSpec, status: str, *, acc: float | None, seconds: float | None,
             note: str = "") -> str:
    """The line of one finished run: label, setting, seed, status, accuracy and wall time."""
    acc_text = f"{acc:6.2f}" if isinstance(acc, (int, float)) else "     -"
    sec_text = f"{seconds:7.1f}s" if isinstance(seconds, (int, float)) else "       -"
    return (f"{spec.label:<24} {spec.dataset:<10} {spec.noise_label:<16} s{spec.seed:<3} "
            f"{status:<6} last10={acc_text} {sec_text}{'  ' + note if note else ''}")


def running_text(spec: RunSpec, info: dict) -> str:
    """A running run on the bar: its label, setting, seed and epoch (from its lock ``info``)."""
    if info.get("epoch"):
        return f"{spec.label} {spec.noise_label} s{spec.seed} {info['epoch']}/{info.get('epochs')}"
    return f"{spec.label} {spec.noise_label} s{spec.seed} starting"


def write(line: str) -> None:
    """Print a line above the bar."""
    from tqdm import tqdm

    tqdm.write(line)
