"""The statistical report of a grid: ``python -m bench.report``.

For every grid under ``results/`` it writes

* ``reports/<grid>.md``: per dataset the mean accuracy with its 95% interval and run count for
  every method and noise setting, and what that interval is conditional on (one noise draw, a
  draw per run, or J draws crossed with seeds, decomposed into draw and training variance); the
  paper's number with its provenance, the test against it with the paper's own SE (Welch, with
  the run count the paper states or an assumed default, checked at n_p = 2, 5 and inf), Δ with
  its 90% interval, the equivalence bound, P(|δ| < margin), Holm over the paper's whole table, a
  four-way verdict (``provisional`` against a recalled number) and design-based seed counts; the
  methods of each cell compared pairwise on shared (seed, noise draw); Friedman, Iman-Davenport and
  ranks across cells (a critical difference only with enough cells); the records left out;
* ``reports/<grid>/summary.csv``: one row per (cell, method label) with every number above;
* ``reports/<grid>/class_drops.csv``: per (cell, method label) with per-class selection counts,
  the runs whose selected set lost a whole class (see ``dropped_classes``), also listed in the
  markdown: one cause of a bimodal cell at high noise;
* ``reports/<grid>/collapses.csv``: per (cell, method label), the runs whose accuracy ended at
  chance level (see ``collapses``), also listed in the markdown with the collapse rate;
* ``reports/<grid>/*.png``: accuracy against noise rate, test accuracy and label precision per
  epoch, and the critical-difference diagram.

Cells with fewer than two runs are shown, marked with a dagger, and never tested. The verdict
itself is :func:`bench.stats.compare_to_paper`, a pure function any caller can use.

This module assembles the page and is the command line; the sections and the numbers they show
are built in :mod:`bench.reporting`. A grid's further sections are :data:`EXTRA_SECTIONS`.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence, cast

import numpy as np
import pandas as pd

from bench.cli import OneLineParser, float_above, int_at_least
from bench.errors import BenchError
from bench.left_out import GRIDS_DIR, left_out_lines
from bench.papers import DEFAULT_N_RUNS, load_claims, load_paper_numbers
from bench.protocols import PROTOCOLS
from bench.questions import question_sections
from bench.reporting.comparisons import Across, across_cells, pairwise
from bench.reporting.failures import class_drops, collapsed_at, collapses, dropped_classes
from bench.reporting.overview import across_section, claims_lines, compute_text, header_text, tested_cd, \
    variants_lines
from bench.reporting.records import CELL, ReportError, find_grids, grid_protocol, load_grid_runs, load_runs, \
    with_accuracy
from bench.reporting.sections import dataset_section
from bench.reporting.summary import PAPER_METHOD, Settings, draw_note, draw_source, family_size, paper_run_count, \
    summarise
from bench.reporting.text import PROTOCOL_TEXT, setting_name, slug
from bench.selection import selection_section

__all__ = ["ReportError", "Settings", "build_report", "summarise", "pairwise", "across_cells", "load_runs",
           "load_grid_runs", "with_accuracy", "find_grids", "paper_run_count", "family_size", "draw_source",
           "draw_note", "compute_text", "variants_lines", "claims_lines", "dropped_classes", "collapsed_at",
           "PAPER_METHOD", "GridReport", "EXTRA_SECTIONS", "render", "main"]


@dataclass(frozen=True)
class GridReport:
    """What a grid's report is computed from and with: the sections read it."""

    name: str
    runs: pd.DataFrame
    summary: pd.DataFrame
    settings: Settings
    claims: pd.DataFrame
    grid_dir: Path
    figures: bool


# The grid's further sections, in order, placed after the tables and before "Left out": each
# takes the grid's GridReport and returns markdown lines ([] when it has nothing to say).
EXTRA_SECTIONS: tuple[Callable[[GridReport], list[str]], ...] = (
    lambda r: variants_lines(r.summary),
    lambda r: claims_lines(r.runs, r.claims, r.settings),
    lambda r: selection_section(r.runs, r.grid_dir, figures=r.figures),
    lambda r: question_sections(r.name, r.runs, r.grid_dir, figures=r.figures,
                                seed=r.settings.seed, margin=r.settings.margin,
                                alpha=r.settings.alpha),
)


def _intro(grid: str, summary: pd.DataFrame, settings: Settings, compute: str) -> list[str]:
    """The title, the counts, the protocols and where the runs trained."""
    n_runs = int(summary["n"].sum())
    return [
        f"# Report: {grid}", "",
        f"{n_runs} runs, {summary[CELL].drop_duplicates().shape[0]} noise settings, "
        f"{summary['label'].nunique()} methods. Protocol `{settings.protocol}`: {PROTOCOL_TEXT[settings.protocol]}."
        + "".join(f" {', '.join(sorted(set(summary.loc[summary['protocol'] == p, 'label'])))}: protocol `{p}`, "
                  f"{PROTOCOL_TEXT[p]}." for p in sorted(set(summary["protocol"]) - {settings.protocol}))
        + (f" {compute}" if compute else ""), "",
        *header_text(settings),
    ]


def render(grid: str, summary: pd.DataFrame, pairs: pd.DataFrame, across: Across, settings: Settings,
           figures: dict, compute: str = "", drops: pd.DataFrame | None = None,
           collapsed: pd.DataFrame | None = None, left: Sequence[str] = (),
           extra: Sequence[str] = ()) -> str:
    """The markdown report; ``extra`` holds further sections (:data:`EXTRA_SECTIONS`), placed
    before the list of what was left out."""
    lines = _intro(grid, summary, settings, compute)
    for dataset in dict.fromkeys(summary["dataset"]):
        lines += dataset_section(dataset, summary, pairs, settings, figures, drops, collapsed)
    lines += across_section(across, settings, figures)
    lines += list(extra)
    lines += list(left)
    return "\n".join(lines).rstrip() + "\n"


def _draw(grid_dir: Path, runs: pd.DataFrame, summary: pd.DataFrame, across: Across, settings: Settings) -> dict:
    """Draw the grid's figures; figure key -> path of each one drawn."""
    from bench import figures as fig

    out: dict = {}
    path = fig.accuracy_vs_noise(summary, grid_dir / "accuracy_vs_noise.png", protocol=settings.protocol)
    if path:
        out["accuracy_vs_noise"] = path
    for cell, group in runs.groupby(CELL, dropna=False, sort=True):
        name = setting_name(*cell[1:])
        stem = slug(*cell)
        for metric, ylabel, scale in (("test_acc", "test accuracy (%)", 1.0),
                                      ("label_precision", "label precision of the selected set (%)", 100.0)):
            path = fig.epoch_curves(group, grid_dir / f"{metric}_{stem}.png", metric=metric,
                                    title=f"{cell[0]}, {name}", ylabel=ylabel, scale=scale)
            if path:
                key = (metric, *cell)
                out[key] = path
    fr = across.friedman
    if fr is not None and np.isfinite(tested_cd(fr)):
        path = fig.cd_diagram(cast(Sequence[float], fr.ranks), across.labels, cd=fr.cd, path=grid_dir / "cd_diagram.png",
                              title=f"average ranks over {fr.n_cells} cells")
        if path:
            out["cd_diagram"] = path
    return out


def _report_grid(name: str, results_dir: Path, out_dir: Path, *, settings: Settings, protocol: str | None,
                 papers: pd.DataFrame, claims: pd.DataFrame, grids_dir: Path, figures: bool) -> Path:
    """Compute, draw and write the report of one grid; returns its markdown file."""
    runs, left_runs, damaged = load_grid_runs(results_dir, name, grids_dir=grids_dir)
    settings = dataclasses.replace(settings, protocol=protocol or grid_protocol(runs))
    runs = with_accuracy(runs, settings.protocol)
    summary = summarise(runs, papers, settings, rng=np.random.default_rng(settings.seed))
    pairs = pairwise(runs, settings)
    across = across_cells(summary, settings)
    left = left_out_lines(left_runs, damaged)
    grid_dir = out_dir / name
    grid_dir.mkdir(parents=True, exist_ok=True)
    if figures:  # figures of an earlier report that this one would not draw must not linger
        for stale in grid_dir.glob("*.png"):
            stale.unlink()
    drawn = _draw(grid_dir, runs, summary, across, settings) if figures else {}
    summary.to_csv(grid_dir / "summary.csv", index=False)
    drops = class_drops(runs)
    drops.to_csv(grid_dir / "class_drops.csv", index=False)
    collapsed = collapses(runs)
    collapsed.to_csv(grid_dir / "collapses.csv", index=False)
    report = GridReport(name, runs, summary, settings, claims, grid_dir, figures)
    extra = [line for section in EXTRA_SECTIONS for line in section(report)]
    md = out_dir / f"{name}.md"
    md.write_text(render(name, summary, pairs, across, settings, drawn, compute_text(runs), drops, collapsed,
                         left, extra), encoding="utf-8")
    return md


def build_report(results_dir: str | Path, out_dir: str | Path, *, grid: str | None = None,
                 protocol: str | None = None, margin: float = 1.0, seed: int = 0, figures: bool = True,
                 n_boot: int = 2000, papers: pd.DataFrame | None = None, grids_dir: str | Path = GRIDS_DIR,
                 default_paper_runs: int = 5, paper_runs: Mapping[str, int] | None = None,
                 claims: pd.DataFrame | None = None) -> list[Path]:
    """Write the report of each grid (or of ``grid``); returns the markdown files written.

    ``grids_dir`` holds the grid files records are checked against; ``default_paper_runs`` and
    ``paper_runs`` (per paper key; default :data:`bench.papers.DEFAULT_N_RUNS`) are the run counts
    assumed where a paper gives a std but no n; ``claims`` the ordinal claims registry (default
    ``bench/claims.csv``).
    """
    results_dir, out_dir = Path(results_dir), Path(out_dir)
    papers = load_paper_numbers() if papers is None else papers
    claims = load_claims() if claims is None else claims
    paper_runs = DEFAULT_N_RUNS if paper_runs is None else paper_runs
    settings = Settings(protocol="last10", margin=margin, n_boot=n_boot, seed=seed,
                        default_paper_runs=default_paper_runs, paper_runs=dict(paper_runs))
    return [_report_grid(name, results_dir, out_dir, settings=settings, protocol=protocol, papers=papers,
                         claims=claims, grids_dir=Path(grids_dir), figures=figures)
            for name in find_grids(results_dir, grid)]


def _parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m bench.report", description=__doc__.splitlines()[0])
    p.add_argument("--results", default="results", help="folder of run records (default: results)")
    p.add_argument("--out", default="reports", help="folder for the reports (default: reports)")
    p.add_argument("--grid", default=None, help="report on this grid only (default: every grid)")
    p.add_argument("--protocol", choices=PROTOCOLS, default=None,
                   help="accuracy to report (default: the grid's reference.protocol, else last10)")
    p.add_argument("--margin", type=float_above(0), default=1.0, help="equivalence margin in accuracy points (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    p.add_argument("--n-boot", type=int_at_least(100), default=2000, help="bootstrap resamples (default 2000)")
    p.add_argument("--no-figures", action="store_true", help="write no PNG files")
    p.add_argument("--default-paper-runs", type=_at_least_two, default=None,
                   help="run count assumed for every paper that gives a std but no n (default: each "
                        "paper's own, bench.papers.DEFAULT_N_RUNS, else 5)")
    return p


def _at_least_two(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 2:
        raise argparse.ArgumentTypeError(f"a paper's run count must be at least 2, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.report``: write the reports and print their paths; 2 on bad input."""
    args = _parser().parse_args(argv)
    try:
        written = build_report(args.results, args.out, grid=args.grid, protocol=args.protocol,
                               margin=args.margin, seed=args.seed, figures=not args.no_figures,
                               n_boot=args.n_boot, default_paper_runs=args.default_paper_runs or 5,
                               paper_runs=None if args.default_paper_runs is None else {})
    except BenchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a read-only or full --out folder
        print(f"error: cannot write the report: {err.strerror or err}: {err.filename or args.out}",
              file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
