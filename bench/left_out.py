"""The records a report leaves out of its cells, and why; nothing is dropped silently.

A record never joins a cell when

* its run failed (the first line of its error is listed),
* it was written under an older record schema (``schema_version`` below the store's),
* its configuration is no longer one the grid file expands to (its ``run_id`` is not among the
  grid's): a setting of the grid changed after it ran, so pooling it would mix two settings;
* its file is damaged: the store skips such files and lists them in the loaded frame's
  ``attrs["left_out"]`` as (path, reason) pairs; they are listed here apart from the rest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import pandas as pd

from bench.tables import markdown_table

__all__ = ["GRIDS_DIR", "split_runs", "left_out_lines"]

GRIDS_DIR = Path(__file__).with_name("grids")
COLUMNS = ["record", "label", "setting", "seed", "why"]


def _first_line(text: object) -> str:
    lines = str(text or "").strip().splitlines()
    return lines[0] if lines else "no error text"


def _grid_ids(grid: str, grids_dir: Path) -> set[str] | None:
    """The run_ids the grid file expands to; None when there is no grid file to compare with."""
    from bench.config import load_grid

    path = grids_dir / f"{grid}.yaml"
    if not path.is_file():
        return None
    return {run.run_id for run in load_grid(path).runs}


def _reason(rec: pd.Series, schema: int, ids: set[str] | None) -> str:
    if rec.get("status") != "ok":
        return f"failed: {_first_line(rec.get('error'))}"
    version = rec.get("schema_version")
    if pd.isna(version) or int(version) < schema:
        return f"older record schema ({'none' if pd.isna(version) else int(version)}, now {schema})"
    if ids is not None and rec.get("run_id") not in ids:
        return "configuration no longer in the grid file"
    return ""


def split_runs(records: pd.DataFrame, grid: str, *, grids_dir: Path = GRIDS_DIR) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs that join cells, runs left out with a ``why`` column) of one grid's records.

    ``records`` is every record of the grid, failed ones included. Without a grid file the
    configurations are not checked (and the left-out frame's ``attrs["unchecked"]`` says so).
    """
    from bench.store import SCHEMA_VERSION

    ids = _grid_ids(grid, grids_dir)
    why = records.apply(lambda rec: _reason(rec, SCHEMA_VERSION, ids), axis=1) if len(records) else \
        pd.Series([], dtype=str)
    kept = records[why == ""].copy()
    left = records[why != ""].assign(why=why[why != ""])
    kept.attrs, left.attrs = {}, {"unchecked": ids is None}
    return kept, left


def _setting(rec: pd.Series) -> str:
    rate = rec.get("noise_rate")
    rate_text = f" {float(rate) * 100:g}%" if isinstance(rate, (int, float)) and not pd.isna(rate) else ""
    return f"{rec.get('dataset')}, {rec.get('noise_type')}{rate_text}"


def left_out_lines(left: pd.DataFrame, damaged: Iterable[tuple[str, str]] = ()) -> list[str]:
    """The report's "Left out" section: always present, so that its absence is never ambiguous."""
    damaged = list(damaged)
    lines = ["## Left out", ""]
    if left.empty and not damaged:
        lines += ["No record was left out: every record of the grid is an ok run of the current schema "
                  "whose configuration the grid file still expands to."
                  + (" (No grid file: configurations were not checked.)" if left.attrs.get("unchecked") else ""), ""]
        return lines
    if not left.empty:
        shown = pd.DataFrame({"record": [Path(str(p)).name for p in left.get("path", pd.Series([""] * len(left)))],
                              "label": left.get("label"), "setting": left.apply(_setting, axis=1),
                              "seed": left.get("seed"), "why": left["why"]})
        lines += ["Records that join no cell:", "", markdown_table(shown), ""]
    if damaged:
        shown = pd.DataFrame({"file": [str(p) for p, _ in damaged], "why": [str(r) for _, r in damaged]})
        lines += ["Damaged record files (not readable; skipped):", "",
                  markdown_table(shown), ""]
    return lines
