"""``python -m bench status`` and the table of a dry run: done / failed / running / pending per
cell of a grid, the damaged records, the runs in progress and the runs another grid recorded."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from bench.config import RunSpec
from bench.grid.estimates import estimate_lines, recorded_lines
from bench.grid.state import GridState, find_twin
from bench.tables import markdown_table

__all__ = ["cell_counts", "print_status"]

COLUMNS = ["dataset", "noise", "method", "done", "failed", "running", "pending"]


def cell_counts(runs: list[RunSpec], states: dict[str, str]) -> list[dict[str, Any]]:
    """One row per cell (dataset x noise setting x method label), counts over seeds."""
    rows: dict[tuple, dict[str, Any]] = {}
    for spec in runs:
        key = (spec.dataset, spec.noise_label, spec.label)
        row = rows.setdefault(key, {"dataset": key[0], "noise": key[1], "method": key[2],
                                    "done": 0, "failed": 0, "running": 0, "pending": 0,
                                    "to run": 0})
        s = states[spec.run_id]
        row[{"ok": "done", "retry": "failed"}.get(s, s)] += 1
        row["to run"] += s in ("pending", "retry")
    return list(rows.values())


def _counts_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """The per-cell counts with a total row."""
    totals = {c: sum(r[c] for r in rows) for c in columns[3:]}
    table = [[r[c] for c in columns] for r in rows]
    table.append(["total", "", f"{len(rows)} cells"] + [totals[c] for c in columns[3:]])
    return markdown_table(table, columns, style="plain")


def _damaged_lines(damaged: Iterable[tuple[Path, str]]) -> list[str]:
    found = sorted(damaged)
    if not found:
        return []
    return [f"left out: {len(found)} damaged record(s), counted as pending (`run` moves "
            f"them aside and trains their runs again):"] + [f"  {path}: {reason}" for path, reason in found]


def _running_lines(runs: list[RunSpec], states: dict[str, str], live: dict[str, dict]) -> list[str]:
    lines = []
    for spec in runs:
        info = live.get(spec.run_id)
        if info is not None and states[spec.run_id] == "running":
            epoch = info.get("epoch")
            progress = f"epoch {epoch}/{info.get('epochs')}" if epoch else "starting"
            lines.append(f"  running: {spec.label} {spec.dataset} {spec.noise_label} s{spec.seed} on "
                         f"{info.get('host')} pid {info.get('pid')} {info.get('device') or ''} "
                         f"({progress})")
    return lines


def _twins(state: GridState, runs: list[RunSpec], states: dict[str, str]) -> set[str]:
    """The pending runs that another grid under the same results folder recorded."""
    pending = [s for s in runs if states[s.run_id] == "pending"]
    return {s.run_id for s in pending if find_twin(state.grid_dir, s.run_id) is not None}


def print_status(grid_name: str, runs: list[RunSpec], *, results: Path, retries: int,
                 stale_minutes: float, dry_run: bool, reuse: bool = True, threads: int = 1) -> int:
    """Print the grid's state; for a dry run also what would run and what it would cost."""
    state = GridState(Path(results) / grid_name, max_attempts=retries + 1,
                      stale_seconds=stale_minutes * 60.0)
    states = state.states(runs)
    columns = COLUMNS + (["to run"] if dry_run else [])
    print(f"grid {grid_name} ({Path(results) / grid_name}): {len(runs)} runs")
    print(_counts_table(cell_counts(runs, states), columns))
    for line in _damaged_lines(state.damaged.values()) + _running_lines(runs, states, state.live_locks()):
        print(line)
    twins = _twins(state, runs, states)
    if twins:
        print(f"  {len(twins)} pending run(s) have an identical record in another grid's folder: "
              + ("`run` copies them instead of training them (--no-reuse trains them)" if reuse
                 else "with --no-reuse they train again"))
    copied = twins if reuse else set()
    to_run = [s for s in runs if states[s.run_id] in ("pending", "retry") and s.run_id not in copied]
    if dry_run:
        print(f"{len(to_run)} run(s) would run")
        for line in estimate_lines(to_run, threads=threads, results=Path(results)):
            print(line)
    else:   # what is left, from the finished runs alone (no calibration)
        for line in recorded_lines(to_run, None, Path(results)):
            print(line)
    return 0
