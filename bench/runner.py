"""Grid runner (sequential placeholder until the parallel runner lands)."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench import engine
from bench.config import filter_runs, load_grid


def add_subcommands(sub) -> None:
    p = sub.add_parser("run", help="run a grid")
    p.add_argument("grid")
    p.add_argument("--results", default="results")
    p.add_argument("--device", default=None)
    p.add_argument("--only", nargs="*", default=[])
    p.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    grid = load_grid(args.grid)
    runs = filter_runs(grid.runs, args.only)
    out = Path(args.results) / grid.name
    failed = 0
    for spec in runs:
        if (out / spec.filename).exists():
            continue
        rec = engine.run(spec, device=args.device, results_dir=out)
        failed += rec["status"] != "ok"
        print(f"{spec.label} {spec.noise_label} s{spec.seed}: {rec['status']} "
              f"last={rec['test_acc_last']}")
    return 1 if failed else 0
