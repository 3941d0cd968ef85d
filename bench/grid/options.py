"""The options of a grid run, each defined once: its flag, type, default and help.

Every field of :class:`RunnerOptions` that the command line sets carries its :class:`Flag`
(:func:`option`); the arguments of ``python -m bench run`` and ``status``
(:func:`add_run_arguments`, :func:`add_status_arguments`) and the options a parsed command line
gives (:func:`options_from_args`) are derived from the fields. :func:`check_options` holds the
rules that tie options together, for the command line and for callers of
:func:`bench.runner.run_grid` alike.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from bench.cli import float_at_least, int_at_least
from bench.config import SMOKE_RESULTS
from bench.errors import ConfigError

__all__ = ["BACKENDS", "MIN_STALE_LOCK_MINUTES", "Flag", "RunnerOptions", "add_run_arguments",
           "add_status_arguments", "options_from_args", "check_options"]

BACKENDS = ("loky", "dask", "ray")
DEVICES = ("cpu", "cuda", "auto")
# a lock without heartbeat this long is dead; under two heartbeats, live runs would be taken over
MIN_STALE_LOCK_MINUTES = 1.0


@dataclass(frozen=True)
class Flag:
    """How one field of :class:`RunnerOptions` is given on the command line.

    ``negated``: a switch ``--no-...`` that sets the field to False. ``convert`` turns the parsed
    text into the field's value; such a flag parses to None when absent, which stands for the
    field's default. ``status``: also a flag of ``status``, with ``status_help`` where the help
    differs there.
    """

    names: tuple[str, ...]
    help: str
    type: Callable[[str], Any] | None = None
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    negated: bool = False
    convert: Callable[[Any], Any] | None = None
    status: bool = False
    status_help: str | None = None

    @property
    def dest(self) -> str:
        """The attribute the parsed command line holds the flag in."""
        return self.names[0].lstrip("-").replace("-", "_")


def option(default: Any, *names: str, help: str, **flag: Any) -> Any:
    """A field of :class:`RunnerOptions` with its default and its command-line :class:`Flag`."""
    return field(default=default, metadata={"flag": Flag(names, help, **flag)})


def _devices(text: str) -> tuple[str, ...]:
    devices = tuple(d.strip() for d in text.split(",") if d.strip())
    for d in devices:
        if not re.fullmatch(r"cuda(:\d+)?|cpu", d):
            raise ConfigError(f"--devices takes names such as cuda:0,cuda:1, got {d!r}")
    return devices


@dataclass(frozen=True)
class RunnerOptions:
    """Options of :func:`bench.runner.run_grid` (the ``run`` subcommand's flags)."""

    jobs: int | None = option(
        None, "--jobs", "-j", type=int_at_least(1), metavar="N",
        help="runs in parallel (default 1, or one per GPU slot)")
    devices: tuple[str, ...] = option(
        (), "--devices", convert=_devices,
        help="GPU pool, comma-separated (e.g. cuda:0,cuda:1); runs take slots round-robin")
    runs_per_device: int | None = option(
        None, "--runs-per-device", type=int_at_least(1), metavar="N",
        help="concurrent runs per GPU of the pool (default: jobs / GPUs)")
    device: str = option(
        "auto", "--device", choices=DEVICES, help="auto: every visible GPU, else the CPU")
    backend: str = option(
        "loky", "--backend", choices=BACKENDS,
        help="joblib backend: loky (this machine), dask or ray (a cluster)")
    scheduler: str | None = option(
        None, "--scheduler",
        help="dask scheduler address (tcp://host:8786) or ray address; without it a local dask "
             "cluster / local ray")
    retries: int = option(
        1, "--retries", type=int_at_least(0), metavar="N",
        help="retry a failed run up to N times (default 1)", status=True,
        status_help="as given to `run` (failed runs with attempts left count as to run)")
    results: Path = option(
        Path("results"), "--results", convert=Path, status=True,
        help=f"records go to RESULTS/<grid>/ (default results, or {SMOKE_RESULTS} for smoke runs)",
        status_help="records are read from RESULTS/<grid>/ (default results)")
    checkpoints: Path | None = option(
        None, "--checkpoints", convert=Path,
        help="checkpoint folder (default: checkpoints/<grid> beside RESULTS)")
    checkpoint_every: int = option(
        10, "--checkpoint-every", type=int_at_least(1), metavar="EPOCHS",
        help="checkpoint a run's full state every N epochs (default 10)")
    threads: int | None = option(
        None, "--threads", type=int_at_least(1), metavar="N",
        help="torch threads per run (default: $OMP_NUM_THREADS if set, else CPU cores // jobs)")
    data_root: str | None = option(
        None, "--data-root", help="dataset folder (default: $DATA_ROOT)")
    stale_lock_minutes: float = option(
        10.0, "--stale-lock-minutes", type=float_at_least(MIN_STALE_LOCK_MINUTES), metavar="MIN",
        status=True,
        help="a run lock without heartbeat this long belongs to a dead runner "
             f"(default 10, at least {MIN_STALE_LOCK_MINUTES:g})")
    wait: bool = option(
        True, "--no-wait", negated=True,
        help="at the end, do not wait for runs another runner is still training")
    fuse_seeds: bool = option(
        False, "--fuse-seeds",
        help="train the seeds of each cell together as one fused model (batch-loop methods: "
             "standard, mentornet, coteaching, coteaching_plus, decoupling, jocor; without "
             "augmentation; pays on a GPU, not on a CPU)")
    compile: bool = option(
        False, "--compile",
        help="compile the networks with torch.compile (each run first spends seconds to minutes "
             "compiling; pays on long GPU runs)")
    reuse: bool = option(
        True, "--no-reuse", negated=True,
        help="train every run even when another grid under RESULTS recorded the identical "
             "configuration (same run_id); by default that record is copied")
    progress: bool = option(True, "--no-progress", negated=True, help="no progress bar")
    heartbeat_seconds: float = 30.0  # how often a run's lock is refreshed


def _flags(*, status: bool) -> list[tuple[dataclasses.Field, Flag]]:
    found = [(f, f.metadata["flag"]) for f in dataclasses.fields(RunnerOptions) if "flag" in f.metadata]
    return [(f, flag) for f, flag in found if flag.status or not status]


def _add(parser: argparse.ArgumentParser, f: dataclasses.Field, flag: Flag, help: str) -> None:
    if isinstance(f.default, bool):
        parser.add_argument(*flag.names, dest=flag.dest, action="store_true", help=help)
        return
    default = None if flag.convert is not None else f.default
    typed: dict[str, Any] = {"type": flag.type} if flag.type is not None else {}
    parser.add_argument(*flag.names, dest=flag.dest, default=default, metavar=flag.metavar,
                        choices=flag.choices, help=help, **typed)


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Every option of :class:`RunnerOptions` as a flag of ``run``."""
    for f, flag in _flags(status=False):
        _add(parser, f, flag, flag.help)


def add_status_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that ``status`` reads the grid's state with, as its flags."""
    for f, flag in _flags(status=True):
        _add(parser, f, flag, flag.status_help or flag.help)


def _value(args: argparse.Namespace, f: dataclasses.Field, flag: Flag) -> Any:
    parsed = getattr(args, flag.dest)
    if flag.negated:
        return not parsed
    if flag.convert is not None:
        return f.default if parsed is None else flag.convert(parsed)
    return parsed


def options_from_args(args: argparse.Namespace) -> RunnerOptions:
    """The options a parsed ``run`` or ``status`` command line gives; a ConfigError for
    options that do not go together."""
    values = {f.name: _value(args, f, flag) for f, flag in _flags(status=False) if hasattr(args, flag.dest)}
    options = RunnerOptions(**values)
    if options.scheduler is not None and options.backend == "loky":
        raise ConfigError("--scheduler needs --backend dask or ray")
    if options.backend == "dask" and options.scheduler is not None and not re.fullmatch(
            r"([a-z]+://)?[\w.\-\[\]:]+:\d+", options.scheduler):
        raise ConfigError(f"--scheduler takes an address such as tcp://host:8786, "
                          f"got {options.scheduler!r}")
    return options


def check_options(options: RunnerOptions) -> None:
    """Stop with a ConfigError on options a session cannot run with."""
    if options.backend not in BACKENDS:
        raise ConfigError(f"--backend must be one of {', '.join(BACKENDS)}")
    if options.device not in DEVICES:
        raise ConfigError(f"--device must be cpu, cuda or auto, got {options.device!r}")
    if options.retries < 0 or options.checkpoint_every < 1:
        raise ConfigError("--retries must be >= 0 and --checkpoint-every >= 1")
    if options.stale_lock_minutes * 60.0 < 2 * options.heartbeat_seconds:
        raise ConfigError(f"--stale-lock-minutes {options.stale_lock_minutes:g} is under two "
                          f"heartbeats ({options.heartbeat_seconds:g} s): live runs would be "
                          "taken over and trained twice")
