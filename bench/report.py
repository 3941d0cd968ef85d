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
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from bench import stats
from bench.cli import OneLineParser, float_above, int_at_least
from bench.errors import BenchError
from bench.left_out import GRIDS_DIR, left_out_lines, split_runs
from bench.papers import DEFAULT_N_RUNS, load_claims, load_paper_numbers, lookup
from bench.protocols import PROTOCOLS, clean_val_index
from bench.selection import selection_section

__all__ = ["ReportError", "Settings", "build_report", "summarise", "pairwise", "across_cells", "load_runs",
           "load_grid_runs", "paper_run_count", "family_size", "draw_source", "draw_note", "main"]

CELL = ["dataset", "noise_type", "noise_rate", "noise_variant"]
PROTOCOL_TEXT = {
    "last": "test accuracy at the last epoch",
    "best": "best test accuracy over all epochs",
    "last10": "mean test accuracy over the last ten epochs",
    "clean_val": "test accuracy at the epoch of best accuracy on a clean validation set held out "
                 "of the training images",
    "val_loss": "test accuracy of the last stage's epoch of lowest loss on a noisy validation split",
}
# methods that run a paper's method under another protocol, tested against its number
PAPER_METHOD = {"f_correction_patrini": "f_correction"}
DAGGER = "†"
DROP_SHARE = 0.5  # a class is dropped when unselected in at least this share of epochs
CHANCE_FACTOR = 1.5  # a run has collapsed when its accuracy is at most this multiple of chance


class ReportError(BenchError):
    """Bad input for a report (no records, unknown grid); printed as one line, exit status 2."""


@dataclass(frozen=True)
class Settings:
    """What a report computes with. ``default_paper_runs`` is the run count assumed for a paper
    number that has a std but no ``n_runs``; ``paper_runs`` maps a paper key to its own default."""

    protocol: str
    margin: float = 1.0
    alpha: float = 0.05
    confidence: float = 0.95
    n_boot: int = 2000
    seed: int = 0
    default_paper_runs: int = 5
    paper_runs: Mapping[str, int] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Reading the records
# --------------------------------------------------------------------------------------------


def find_grids(results_dir: Path, grid: str | None = None) -> list[str]:
    """The grids to report on: ``grid`` if it has records, else every folder with records."""
    known = sorted(p.name for p in results_dir.iterdir() if p.is_dir() and any(p.glob("*.json"))) \
        if results_dir.is_dir() else []
    if grid is not None:
        if grid in known:
            return [grid]
        if (results_dir / grid).is_dir():
            raise ReportError(f"no run records in {results_dir / grid}")
        listed = ", ".join(known) if known else "none"
        raise ReportError(f"unknown grid {grid!r}: grids with records in {results_dir}: {listed}")
    if not known:
        raise ReportError(f"no run records in {results_dir} (run a grid first)")
    return known


def _from_curve(metrics: object, protocol: str) -> float:
    curve = np.array([np.nan if v is None else v for v in (metrics or {}).get("test_acc", [])], dtype=float) \
        if isinstance(metrics, dict) else np.array([])
    if curve.size == 0:
        return math.nan
    if protocol == "clean_val":   # records made with a clean split carry test_acc_clean_val
        pos = clean_val_index(metrics.get("val_acc", []))
        return math.nan if pos is None else float(curve[pos])
    if protocol == "val_loss":
        return _at_lowest_val_loss(metrics, curve)
    return float({"last": curve[-1], "best": np.nanmax(curve), "last10": np.nanmean(curve[-10:])}[protocol])


def _at_lowest_val_loss(metrics: dict, curve: np.ndarray) -> float:
    """Test accuracy at the first epoch of lowest ``extra.val_loss`` within the last ``extra.stage``
    (Keras' ``ModelCheckpoint(monitor='val_loss', save_best_only=True)``); NaN without a val_loss."""
    extra = metrics.get("extra") or {}
    val = np.array([np.nan if v is None else v for v in extra.get("val_loss") or []], dtype=float)
    if val.size != curve.size or np.isnan(val).all():
        return math.nan
    stage = np.array([np.nan if v is None else v for v in extra.get("stage") or [1.0] * val.size], dtype=float)
    val[stage != np.nanmax(stage)] = np.nan
    return float(curve[int(np.nanargmin(val))])


def load_runs(results_dir: Path, grid: str) -> pd.DataFrame:
    """The runs of one grid that join its cells, one row per run (see :func:`load_grid_runs`);
    ``attrs["left_out"]`` lists the damaged files skipped, as (path, reason) pairs."""
    runs, _, damaged = load_grid_runs(results_dir, grid)
    runs.attrs["left_out"] = damaged
    return runs


def load_grid_runs(results_dir: Path, grid: str, *, grids_dir: Path = GRIDS_DIR) -> tuple[pd.DataFrame, pd.DataFrame, list]:
    """(runs that join cells, with the cell columns normalised; records left out, with ``why``;
    damaged files as (path, reason), from the store's ``attrs["left_out"]``)."""
    from bench.store import load_records

    try:
        records = load_records(results_dir, grid, include_failed=True)
        runs, left = split_runs(records, grid, grids_dir=grids_dir)
    except (OSError, ValueError, BenchError) as err:
        raise ReportError(f"cannot read the records of grid {grid!r}: {err}") from None
    damaged = list(records.attrs.get("left_out") or [])
    if "smoke" in runs:  # smoke runs check that a path trains; they are never reported
        runs = runs[runs["smoke"].ne(True)]
    if runs.empty:
        why = f": {len(left)} left out, e.g. {left['why'].iloc[0]}" if len(left) else ""
        if damaged:
            why += (f" ({len(damaged)} damaged record(s) left out, e.g. {damaged[0][0]}: "
                    f"{damaged[0][1]})")
        raise ReportError(f"no successful runs in {results_dir / grid}{why}")
    for path, reason in damaged:
        print(f"warning: record left out of the report: {path}: {reason}", file=sys.stderr)
    runs = runs.copy()
    for col, default in (("label", None), ("paper", None), ("protocol", None), ("noise_variant", None),
                         ("noise_seed", 0), ("seed", 0), ("metrics", None), ("realised_noise_rate", np.nan),
                         ("noise_draw", "suite")):
        if col not in runs:
            runs[col] = default
    runs["label"] = runs["label"].fillna(runs["method"])
    runs["grid"] = grid
    runs["noise_rate"] = pd.to_numeric(runs["noise_rate"], errors="coerce").astype(float)
    # "" rather than None so that groupby keeps cells without a variant together.
    runs["noise_variant"] = runs["noise_variant"].fillna("").astype(str)
    runs.attrs = {}
    return runs, left, damaged


def grid_protocol(runs: pd.DataFrame) -> str:
    """The grid's ``reference.protocol`` (the most common one), else ``last10``."""
    values = runs["protocol"].dropna()
    values = values[values.isin(PROTOCOLS)]
    return str(values.mode().iloc[0]) if not values.empty else "last10"


def with_accuracy(runs: pd.DataFrame, protocol: str) -> pd.DataFrame:
    """Add ``acc``: the accuracy the protocol reports, from the record or else its curve."""
    col = f"test_acc_{protocol}"
    acc = pd.to_numeric(runs[col], errors="coerce") if col in runs else pd.Series(np.nan, index=runs.index)
    fallback = runs["metrics"].map(lambda m: _from_curve(m, protocol))
    # a method that selects its reported checkpoint on validation loss is reported at it
    selected = runs["metrics"].map(lambda m: _from_curve(m, "val_loss"))
    return runs.assign(acc=selected.fillna(acc.fillna(fallback)).astype(float),
                       acc_protocol=np.where(selected.notna(), "val_loss", protocol))


# --------------------------------------------------------------------------------------------
# Numbers
# --------------------------------------------------------------------------------------------


def _first(values: pd.Series) -> object:
    values = values.dropna()
    return values.iloc[0] if not values.empty else None


def paper_run_count(prow: pd.Series, settings: Settings) -> tuple[float, bool, str]:
    """(n_p used, whether it is assumed, the std's basis) for a paper row.

    A std over epochs (``std_over: epochs``) is the wobble of one run's last epochs, not the
    spread of the paper's runs: it is not an SE, so the paper's mean is taken as exact (n_p inf)
    and the row says so. A std without a run count uses the paper's default run count
    (``Settings.paper_runs``, else ``default_paper_runs``) and the verdict is marked as assuming it.
    """
    over = str(prow.get("std_over") or "unknown").strip() or "unknown"
    if not np.isfinite(prow["std"]):
        return math.inf, False, "no std"
    if over == "epochs":
        return math.inf, False, over
    if np.isfinite(prow["n_runs"]):
        return float(prow["n_runs"]), False, over
    return float(settings.paper_runs.get(str(prow["paper"]), settings.default_paper_runs)), True, over


def family_size(papers: pd.DataFrame, prow: pd.Series) -> int:
    """The number of numbers in the paper's table (one dataset, one protocol): the Holm family."""
    same = (papers["paper"] == prow["paper"]) & (papers["table"] == prow["table"]) & \
        (papers["dataset"] == prow["dataset"]) & (papers["protocol"] == prow["protocol"])
    return int(same.sum())


def draw_source(group: pd.DataFrame) -> str:
    """``paper`` when every run's record says its noisy labels are the official code's own default
    draw (its ``noise_draw`` at the code's seed, :func:`bench.noise.is_papers_draw`), else
    ``suite``: a field the report does not know is not taken as the paper's draw."""
    from bench.noise import is_papers_draw

    if len(group) and "noise_draw" in group and all(
            is_papers_draw(d, s) for d, s in zip(group["noise_draw"], group["noise_seed"])):
        return "paper"
    return "suite"


def draw_note(design: str, source: str, n_draws: int) -> str:
    """What a cell's interval is conditional on, in words."""
    if design == stats.ONE_DRAW:
        return ("one draw, the paper's own: the interval is conditional on it, as the paper's number is"
                if source == "paper" else "one draw, not the paper's: the interval is conditional on it")
    if design == stats.CROSSED:
        return f"{n_draws} draws crossed with seeds: the SE separates draw and training variance"
    return "a draw per run: the interval covers the draw's variance"


def _cell_row(key: tuple, group: pd.DataFrame, settings: Settings, rng: np.random.Generator) -> tuple[dict, stats.CellEstimate]:
    dataset, noise_type, noise_rate, variant, label = key
    group = group[group["acc"].notna()]
    x = group["acc"].to_numpy(dtype=float)
    # a record without its noise_seed counts as sharing one unknown draw: never as its own draw
    draws = group["noise_seed"].astype(object).where(group["noise_seed"].notna(), "unknown")
    est = stats.estimate_cell(x, list(draws))
    desc = stats.describe(x, confidence=settings.confidence, n_boot=settings.n_boot, rng=rng)
    ci_low, ci_high = est.interval(settings.confidence) if est.n >= 2 else (math.nan, math.nan)
    source = draw_source(group)
    row = {"grid": group["grid"].iloc[0] if len(group) else None, "dataset": dataset, "noise_type": noise_type,
           "noise_rate": noise_rate, "noise_variant": variant, "method": str(group["method"].iloc[0]) if len(group) else None,
           "label": label,
           "protocol": _first(group["acc_protocol"]) if "acc_protocol" in group else settings.protocol,
           **{k: v for k, v in desc.as_dict().items() if k != "note"}, "mean": est.mean if est.n else math.nan,
           "ci_low": ci_low, "ci_high": ci_high, "design": est.design, "n_draws": est.n_draws,
           "draw_source": source, "draw_note": draw_note(est.design, source, est.n_draws),
           "se": est.se, "df": est.df, "s2_draw": est.s2_draw, "s2_train": est.s2_train,
           "realised_noise_rate": float(pd.to_numeric(group["realised_noise_rate"], errors="coerce").mean()),
           "paper": _first(group["paper"]), "note": desc.note}
    row.update(_components(x, list(draws), est, settings))
    return row, est


def _components(x: np.ndarray, draws: list, est: stats.CellEstimate, settings: Settings) -> dict:
    """The crossed cell's variance components with intervals (columns of the summary)."""
    keys = ("s2_draw_low", "s2_draw_high", "s2_train_low", "s2_train_high", "draw_share", "draw_share_low",
            "draw_share_high", "understatement", "understatement_low", "understatement_high")
    if est.design != stats.CROSSED:
        return {**dict.fromkeys(keys, math.nan), "components_approximate": None}
    c = stats.variance_components(x, draws, confidence=settings.confidence)
    return {"s2_draw_low": c.s2_draw_low, "s2_draw_high": c.s2_draw_high, "s2_train_low": c.s2_train_low,
            "s2_train_high": c.s2_train_high, "draw_share": c.share, "draw_share_low": c.share_low,
            "draw_share_high": c.share_high, "understatement": c.understatement,
            "understatement_low": c.understatement_low, "understatement_high": c.understatement_high,
            "components_approximate": c.approximate}


def paper_draw_var(est: stats.CellEstimate) -> float:
    """The variance the paper's own noise draw adds to Δ, where the cell can estimate it.

    A crossed cell's draws are the suite's, not the paper's, and the paper's mean sits on one
    draw of its own: Δ's variance gains σ²_draw. Elsewhere σ²_draw is not separable from the
    training variance and nothing is added (a one-draw cell says its interval is conditional)."""
    return float(est.s2_draw) if est.design == stats.CROSSED and np.isfinite(est.s2_draw) else 0.0


PAPER_COLUMNS = {"paper_table": None, "paper_mean": np.nan, "paper_std": np.nan, "paper_n": np.nan,
                 "paper_n_used": np.nan, "paper_n_assumed": False, "std_over": None, "provenance": None,
                 "family_size": np.nan, "test": None, "diff": np.nan, "diff_se": np.nan, "diff_df": np.nan,
                 "ci90_low": np.nan, "ci90_high": np.nan, "bound": np.nan, "p_within": np.nan,
                 "p_value": np.nan, "p_holm": np.nan, "p_tost": np.nan, "p_tost_holm": np.nan,
                 "attainable": None, "verdict": "", "verdict_text": "", "provisional": False,
                 "robust": None, "verdicts_by_np": "", "seeds_needed": np.nan, "seeds_needed_at": np.nan,
                 "delta_planned": np.nan}
ROBUST_NP = (2.0, 5.0, math.inf)  # the paper run counts a verdict that assumes one is checked at


def summarise(runs: pd.DataFrame, papers: pd.DataFrame, settings: Settings, *, rng: np.random.Generator) -> pd.DataFrame:
    """One row per (cell, label): description, the paper's number and the test against it.

    Tests are Holm-adjusted within each paper table (all of its numbers count, tested here or
    not); the verdict uses the adjusted p-values. Where the paper's run count is assumed, the
    verdict is also computed at n_p = 2, 5 and inf, and ``robust`` says whether all agree.
    """
    rows, cases = [], []
    for key, group in runs.groupby(CELL + ["label"], dropna=False, sort=True):
        row, est = _cell_row(key, group, settings, rng)
        row.update(PAPER_COLUMNS)
        if est.n < 2:
            row["verdict"] = row["verdict_text"] = stats.TOO_FEW
        method = row["method"]
        prow = lookup(papers, paper=row["paper"], dataset=key[0], noise_type=key[1], noise_rate=key[2],
                      method=PAPER_METHOD.get(method, method), protocol=settings.protocol) if row["paper"] else None
        case = None
        if prow is not None:
            n_used, assumed, over = paper_run_count(prow, settings)
            fam = max(family_size(papers, prow), 1)
            row.update(paper_table=prow["table"], paper_mean=prow["mean"], paper_std=prow["std"],
                       paper_n=prow["n_runs"], paper_n_used=n_used, paper_n_assumed=assumed, std_over=over,
                       provenance=prow["provenance"], family_size=fam,
                       provisional=prow["provenance"] == "recalled")
            scenarios = {n_used: None, **({n: None for n in ROBUST_NP} if assumed else {})}
            for n_p in scenarios:
                scenarios[n_p] = stats.compare_to_paper(
                    est, paper_mean=prow["mean"], paper_std=prow["std"], paper_n=n_p, margin=settings.margin,
                    alpha=settings.alpha, family_size=fam, draw_var=paper_draw_var(est))
            case = ((prow["paper"], prow["table"], key[0]), fam, n_used, scenarios)
        rows.append(row)
        cases.append(case)
    summary = pd.DataFrame(rows)
    _adjust(summary, cases, settings)
    return summary


def _adjust(summary: pd.DataFrame, cases: list, settings: Settings) -> None:
    """Holm within each paper table: once with every row's own n_p, and once per n_p of
    ``ROBUST_NP`` with the rows whose n_p is assumed set to it (the others keep theirs)."""
    families: dict = {}
    for i, case in enumerate(cases):
        if case is not None:
            families.setdefault(case[0], []).append(i)
    for members in families.values():
        fam = cases[members[0]][1]

        def adjusted(n_p: float | None, members: list[int] = members, fam: int = fam) -> list[dict]:
            tests = [cases[i][3].get(n_p, cases[i][3][cases[i][2]]) for i in members]
            return stats.apply_holm(tests, alpha=settings.alpha, family_size=fam)

        main = adjusted(None)
        robust = {n_p: adjusted(n_p) for n_p in ROBUST_NP}
        for pos, i in enumerate(members):
            kinds = {n_p: rows[pos]["verdict"] for n_p, rows in robust.items()} if summary.at[i, "paper_n_assumed"] else {}
            _fill(summary, i, cases[i][3][cases[i][2]], main[pos], kinds)


def _fill(summary: pd.DataFrame, i: int, test: stats.PaperTest, adj: dict, kinds: dict) -> None:
    values = {"test": test.test, "diff": test.diff, "diff_se": test.se, "diff_df": test.df,
              "ci90_low": test.ci90_low, "ci90_high": test.ci90_high, "bound": test.bound,
              "p_within": test.p_within, "p_value": test.p_value, "p_tost": test.p_tost,
              "p_holm": adj["p_holm"], "p_tost_holm": adj["p_tost_holm"], "attainable": test.attainable,
              "verdict": adj["verdict"], "verdict_text": stats.verdict_text(adj["verdict"], test.diff),
              "seeds_needed": test.seeds_needed, "seeds_needed_at": test.seeds_needed_at,
              "delta_planned": test.delta_planned}
    if summary.at[i, "paper_n_assumed"] and kinds:
        values["robust"] = len(set(kinds.values())) == 1
        values["verdicts_by_np"] = "; ".join(f"{_np_text(n)}: {v}" for n, v in kinds.items())
    for col, value in values.items():
        summary.at[i, col] = value


def _np_text(n_p: float) -> str:
    return "∞" if math.isinf(n_p) else f"{n_p:g}"


def _by_seed(group: pd.DataFrame) -> pd.Series:
    # A rerun of the same (seed, noise_seed) is averaged so that pairs stay one-to-one; runs on
    # another sampler's draw (noise_draw) never pair, whatever their noise_seed.
    return group.assign(noise_seed=group["noise_seed"].astype(object).where(group["noise_seed"].notna(), "unknown"),
                        noise_draw=group["noise_draw"].fillna("suite")) \
        .groupby(["seed", "noise_seed", "noise_draw"])["acc"].mean().dropna()


def pairwise(runs: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """Every pair of labels within each cell, paired by (seed, noise_seed); Holm within a cell.

    ``sign_shown`` marks the cells where the exact Wilcoxon test cannot reach the Holm level of
    its smallest p (its minimum attainable p exceeds alpha / m): the sign count is shown instead.
    """
    out = []
    for cell, group in runs.groupby(CELL, dropna=False, sort=True):
        per_label = {label: _by_seed(g) for label, g in group.groupby("label", sort=True)}
        rows = []
        for a, b in itertools.combinations(sorted(per_label), 2):
            joined = pd.concat([per_label[a], per_label[b]], axis=1, join="inner")
            draws = list(joined.index.get_level_values("noise_seed"))
            res = stats.paired_comparison(joined.iloc[:, 0].to_numpy(), joined.iloc[:, 1].to_numpy(),
                                          confidence=settings.confidence, draws=draws)
            rows.append({**dict(zip(CELL, cell)), "a": a, "b": b, **res.as_dict()})
        if not rows:
            continue
        frame = pd.DataFrame(rows)
        frame["p_t_holm"] = stats.holm(frame["p_t"])
        frame["p_wilcoxon_holm"] = stats.holm(frame["p_wilcoxon"])
        frame["sign_shown"] = frame["p_wilcoxon_min"] > settings.alpha / len(frame)
        out.append(frame)
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


@dataclass
class Across:
    """Friedman / Iman-Davenport / ranks / CD over the cells where every label ran."""

    labels: list[str]
    n_cells: int
    friedman: stats.FriedmanResult | None
    note: str


def across_cells(summary: pd.DataFrame, settings: Settings) -> Across:
    # A string key per cell: NaN rates (real-world noise) would otherwise vanish from the index.
    keyed = summary.assign(cell=["|".join(map(str, key)) for key in summary[CELL].itertuples(index=False)])
    matrix = keyed.pivot(index="cell", columns="label", values="mean")
    complete = matrix.dropna()
    note = ""
    if len(complete) < len(matrix):
        note = f"{len(matrix) - len(complete)} of {len(matrix)} cells left out: not every method ran there"
    labels = [str(c) for c in complete.columns]
    result = stats.friedman(complete.to_numpy(), alpha=settings.alpha) \
        if len(labels) >= 2 and len(complete) >= 1 else None
    return Across(labels, len(complete), result, note)


def _per_class_counts(metrics: object) -> tuple[list, list]:
    """(epochs, per-class selected counts) of the epochs that have counts (none without selection)."""
    if not isinstance(metrics, dict):
        return [], []
    per_class = metrics.get("selected_per_class") or []
    kept = [(e, row) for e, row in zip(metrics.get("epoch") or range(1, len(per_class) + 1), per_class) if row]
    return [e for e, _ in kept], [row for _, row in kept]


def dropped_classes(metrics: object) -> tuple[list[int], int | None]:
    """Classes a run's selection dropped, and the first epoch in which none of them was selected.

    A class counts as dropped when the selected set held none of its (noisy-labelled) samples in
    the last epoch and in at least half of the epochs with per-class counts: a network that never
    trains on a class again cannot predict it, which costs about 1/C of the test accuracy. Classes
    that empty out only at the end (disagreement sets shrinking late, as in Decoupling) do not count.
    """
    epochs, rows = _per_class_counts(metrics)
    if not rows:
        return [], None
    zero = np.asarray(rows) == 0
    classes = [c for c in range(zero.shape[1]) if zero[-1, c] and zero[:, c].mean() >= DROP_SHARE]
    if not classes:
        return [], None
    first = int(np.argmax(zero[:, classes].all(axis=1)))  # first epoch with none of them selected
    return classes, int(epochs[first])


def class_drops(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (cell, method label) with per-class selection counts: the runs that dropped a class."""
    counted = runs["metrics"].map(lambda m: bool(_per_class_counts(m)[1]))
    runs = runs[counted.astype(bool)]
    found = [dropped_classes(m) for m in runs["metrics"]]
    runs = runs.assign(dropped=[f[0] for f in found], from_epoch=[f[1] for f in found])
    rows = []
    for key, group in runs.groupby([*CELL, "label"], dropna=False, sort=True):
        hit = group["dropped"].map(bool)
        bad, good = group[hit].sort_values("seed"), group[~hit]
        rows.append({**dict(zip([*CELL, "label"], key)), "n": len(group), "n_dropped": int(hit.sum()),
                     "seeds": bad["seed"].tolist(), "classes": bad["dropped"].tolist(),
                     "from_epoch": bad["from_epoch"].tolist(),
                     "acc_dropped": float(bad["acc"].mean()) if len(bad) else math.nan,
                     "acc_kept": float(good["acc"].mean()) if len(good) else math.nan})
    return pd.DataFrame(rows, columns=[*CELL, "label", "n", "n_dropped", "seeds", "classes", "from_epoch",
                                       "acc_dropped", "acc_kept"])


def num_classes(record: pd.Series) -> int | None:
    """The number of classes of a run: the side of its realised transition matrix, else the width
    of its per-class selection counts; None when the record holds neither."""
    matrix = record.get("transition_matrix")
    if isinstance(matrix, list) and len(matrix) >= 2:
        return len(matrix)
    rows = _per_class_counts(record.get("metrics"))[1]
    return len(rows[0]) if rows and len(rows[0]) >= 2 else None


def collapsed_at(metrics: object, threshold: float) -> int | None:
    """First epoch from which a run's test accuracy stays at or below ``threshold`` to the end."""
    if not isinstance(metrics, dict) or not metrics.get("test_acc"):
        return None
    curve = np.array([np.nan if v is None else v for v in metrics["test_acc"]], dtype=float)
    above = np.flatnonzero(~(curve <= threshold))  # NaN counts as not collapsed
    start = 0 if above.size == 0 else int(above[-1]) + 1
    if start >= curve.size:
        return None
    epochs = metrics.get("epoch") or range(1, curve.size + 1)
    return int(list(epochs)[start])


def collapses(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (cell, method label): the runs whose reported accuracy is at most CHANCE_FACTOR x chance.

    Such a run has stopped learning (typically the networks predict one class and the loss sits
    near log C): a failure of the method on that seed, not noise around the cell's mean, so the cell's
    mean and t-interval are shown next to its median and the mean of the other runs.
    """
    chance = 100.0 / runs.apply(num_classes, axis=1).astype(float)
    runs = runs.assign(chance=chance, threshold=CHANCE_FACTOR * chance)
    runs["collapsed"] = (runs["acc"] <= runs["threshold"]).fillna(False).astype(bool)
    rows = []
    for key, group in runs.groupby([*CELL, "label"], dropna=False, sort=True):
        bad, good = group[group["collapsed"]].sort_values("seed"), group[~group["collapsed"]]
        rows.append({**dict(zip([*CELL, "label"], key)), "n": len(group), "n_collapsed": len(bad),
                     "chance": float(group["chance"].iloc[0]),
                     "seeds": bad["seed"].tolist(),
                     "from_epoch": [collapsed_at(m, t) for m, t in zip(bad["metrics"], bad["threshold"])],
                     "acc_collapsed": float(bad["acc"].mean()) if len(bad) else math.nan,
                     "acc_others": float(good["acc"].mean()) if len(good) else math.nan,
                     "median": float(group["acc"].median())})
    return pd.DataFrame(rows, columns=[*CELL, "label", "n", "n_collapsed", "chance", "seeds", "from_epoch",
                                       "acc_collapsed", "acc_others", "median"])


# --------------------------------------------------------------------------------------------
# Text
# --------------------------------------------------------------------------------------------


def _f(x: object, digits: int = 2) -> str:
    return f"{x:.{digits}f}" if isinstance(x, (int, float, np.floating)) and np.isfinite(x) else ""


def _p(p: object) -> str:
    if not isinstance(p, (int, float, np.floating)) or not np.isfinite(p):
        return ""
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def setting_name(noise_type: str, noise_rate: float, variant: str = "") -> str:
    rate = f" {noise_rate * 100:g}%" if isinstance(noise_rate, float) and np.isfinite(noise_rate) else ""
    return f"{noise_type}{rate}" + (f" ({variant})" if variant else "")


def _settings(frame: pd.DataFrame) -> list[str]:
    """The setting name of each row of a frame with the noise columns of CELL."""
    return [setting_name(t, r, v) for t, r, v in zip(frame["noise_type"], frame["noise_rate"], frame["noise_variant"])]


def _slug(dataset: str, noise_type: str, noise_rate: float, variant: str) -> str:
    rate = f"_{noise_rate:g}" if np.isfinite(noise_rate) else ""
    return f"{dataset}_{noise_type}{rate}" + (f"_{variant}" if variant else "")


def _ours(row: pd.Series) -> str:
    if row["n"] < 2:
        return f"{_f(row['mean'])} ({row['n']}) {DAGGER}"
    return f"{_f(row['mean'])} [{_f(row['ci_low'])}, {_f(row['ci_high'])}] ({row['n']})"


def _paper(row: pd.Series) -> str:
    if not np.isfinite(row["paper_mean"]):
        return ""
    std = f" ± {_f(row['paper_std'])}" if np.isfinite(row["paper_std"]) else ""
    return f"{_f(row['paper_mean'])}{std} ({row['provenance']})"


def _p_eq(p: object) -> str:
    """A p-value after its relation: "= 0.003", "< 0.001"."""
    text = _p(p)
    return f"< {text[1:]}" if text.startswith("<") else f"= {text}"


def _table(frame: pd.DataFrame) -> str:
    return frame.to_markdown(index=False, disable_numparse=True)


def _drops_section(drops: pd.DataFrame) -> list[str]:
    """The runs whose selection dropped a whole class, or one line saying that none did."""
    if drops.empty:
        return []
    head = ["### Classes dropped by the selection", ""]
    hits = drops[drops["n_dropped"] > 0]
    if hits.empty:
        return head + [f"No run's selected set lost a whole class (none of its samples selected in the last "
                       f"epoch and in at least {DROP_SHARE:.0%} of the epochs).", ""]
    shown = pd.DataFrame({
        "setting": _settings(hits),
        "method": hits["label"],
        "runs": [f"{k} of {n}" for k, n in zip(hits["n_dropped"], hits["n"])],
        "seed: classes (first epoch without them)": ["; ".join(f"{s}: {', '.join(map(str, c))} ({int(e)})"
                                                 for s, c, e in zip(seeds, classes, start))
                                       for seeds, classes, start in zip(hits["seeds"], hits["classes"], hits["from_epoch"])],
        "accuracy, these runs": hits["acc_dropped"].map(_f),
        "accuracy, the others": hits["acc_kept"].map(_f),
    })
    return head + [f"Runs whose selected set held no sample of some class (by its noisy label) in the last epoch "
                   f"and in at least {DROP_SHARE:.0%} of the epochs: the networks stop learning that class, "
                   f"which costs about one class's share of the test accuracy.", "", _table(shown), ""]


def _collapse_section(found: pd.DataFrame) -> list[str]:
    """The runs that ended at chance level; nothing when none did."""
    hits = found[found["n_collapsed"] > 0]
    if hits.empty:
        return []
    shown = pd.DataFrame({
        "setting": _settings(hits),
        "method": hits["label"],
        "runs": [f"{k} of {n}" for k, n in zip(hits["n_collapsed"], hits["n"])],
        "seed (at chance from epoch)": ["; ".join(f"{s} ({e})" if e is not None else f"{s}" for s, e in zip(seeds, start))
                                        for seeds, start in zip(hits["seeds"], hits["from_epoch"])],
        "collapse rate [95% CP]": [_rate(k, n) for k, n in zip(hits["n_collapsed"], hits["n"])],
        "accuracy, these runs": hits["acc_collapsed"].map(_f),
        "accuracy, the others": hits["acc_others"].map(_f),
        "median, all runs": hits["median"].map(_f),
    })
    return ["### Runs at chance level", "",
            f"Runs whose accuracy is at most {CHANCE_FACTOR:g} times chance (100/C %): training collapsed and "
            f"the networks do no better than a guess. Such a run is a failure of the method on that seed, not "
            f"spread around the mean; it pulls the cell's mean down and widens its t-interval, past [0, 100] "
            f"with few seeds. Such a cell is bimodal: read its collapse rate (with a Clopper-Pearson interval) "
            f"beside the mean of the runs that did not collapse.", "", _table(shown), ""]


def _rate(k: int, n: int) -> str:
    low, high = stats.clopper_pearson(int(k), int(n))
    return f"{int(k)}/{int(n)} [{low:.2f}, {high:.2f}]"


def _verdict_cell(row: pd.Series) -> str:
    text = row["verdict_text"] or row["verdict"]
    if text in ("", stats.TOO_FEW):
        return text
    if row["paper_n_assumed"] and row["robust"] is False:
        text += f" · assumes n_p = {_np_text(row['paper_n_used'])}"
    if row["provisional"]:
        text += " · provisional"
    return text


def _test_cell(row: pd.Series) -> str:
    if not row["test"] or row["test"] == "none":
        return ""
    n_p = row["paper_n_used"]
    if row["std_over"] == "epochs":
        return f"{row['test']} (paper std over epochs: not an SE)"
    if not np.isfinite(row["paper_std"]):
        return f"{row['test']} (no paper std)"
    return f"{row['test']}, n_p = {_np_text(n_p)}" + (" (assumed)" if row["paper_n_assumed"] else "")


def _robust_cell(row: pd.Series) -> str:
    if row["robust"] is None or (isinstance(row["robust"], float) and math.isnan(row["robust"])):
        return ""
    return "robust" if row["robust"] else row["verdicts_by_np"]


def _seeds_cell(row: pd.Series) -> str:
    if row["verdict"] != stats.INCONCLUSIVE:
        return ""
    counts = (row["seeds_needed"], row["seeds_needed_at"])
    if row["attainable"] is False or all(math.isinf(v) for v in counts):
        return "not attainable"
    return " / ".join("not attainable" if math.isinf(v) else _f(v, 0) for v in counts)


def _against_table(data: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    m = f"{settings.margin:g}"
    against = pd.DataFrame({
        "setting": data["setting"], "method": data["label"], "ours [95% CI] (runs)": data.apply(_ours, axis=1),
        "BCa 95%": [f"[{_f(lo)}, {_f(hi)}]" if np.isfinite(lo) else "" for lo, hi in zip(data["boot_low"], data["boot_high"])],
        "realised noise": data["realised_noise_rate"].map(lambda v: _f(v, 3)),
        "paper": data.apply(_paper, axis=1), "test": data.apply(_test_cell, axis=1),
        "Δ [90% CI]": [f"{_f(d)} [{_f(lo)}, {_f(hi)}]" if np.isfinite(lo) else _f(d)
                       for d, lo, hi in zip(data["diff"], data["ci90_low"], data["ci90_high"])],
        "equivalent within": data["bound"].map(lambda b: f"±{_f(b)}" if np.isfinite(b) else ""),
        f"P(|δ| < {m})": data["p_within"].map(_f),
        "p (Holm)": data["p_holm"].map(_p), "TOST p (Holm)": data["p_tost_holm"].map(_p),
        "verdict": data.apply(_verdict_cell, axis=1),
        "n_p = 2 / 5 / ∞": data.apply(_robust_cell, axis=1),
        f"seeds for equivalence (δ = 0 / {settings.margin / 2:g})": data.apply(_seeds_cell, axis=1),
    })
    drop = [c for c in ("BCa 95%", "n_p = 2 / 5 / ∞") if not against[c].astype(bool).any()]
    return against.drop(columns=drop)


def _sd_text(frame: pd.DataFrame, key: str) -> list[str]:
    """σ with its interval from the variance columns ``key``, ``key_low``, ``key_high``."""
    root = lambda v: math.sqrt(v) if np.isfinite(v) and v >= 0 else math.nan  # noqa: E731
    return [f"{_f(root(v), 3)} [{_f(root(lo), 3)}, {_f(root(hi), 3)}]"
            for v, lo, hi in zip(frame[key], frame[f"{key}_low"], frame[f"{key}_high"])]


def _design_lines(data: pd.DataFrame) -> list[str]:
    """What each cell's interval is conditional on, and the variance decomposition of crossed cells."""
    notes = data.drop_duplicates("draw_note")["draw_note"].tolist()
    if len(notes) == 1:
        lines = [f"Noise draws: {notes[0]}.", ""]
    else:  # designs differ between cells: say which cell is which
        lines = ["Noise draws:", ""] + [f"- {note}: " + ", ".join(f"{s} {m}" for s, m in zip(g["setting"], g["label"]))
                                        for note, g in data.groupby("draw_note", sort=False)] + [""]
    crossed = data[data["design"] == stats.CROSSED]
    if not crossed.empty:
        shown = pd.DataFrame({
            "setting": crossed["setting"], "method": crossed["label"], "draws x runs": [
                f"{j} x {n}" for j, n in zip(crossed["n_draws"], crossed["n"])],
            "σ_draw [95% CI]": _sd_text(crossed, "s2_draw"), "σ_train [95% CI]": _sd_text(crossed, "s2_train"),
            "draw's share of the variance [95% CI]": [
                f"{_f(v)} [{_f(lo)}, {_f(hi)}]" for v, lo, hi in
                zip(crossed["draw_share"], crossed["draw_share_low"], crossed["draw_share_high"])],
            "fixed-draw std understates by [95% CI]": [
                f"×{_f(v)} [{_f(lo)}, {_f(hi)}]" for v, lo, hi in
                zip(crossed["understatement"], crossed["understatement_low"], crossed["understatement_high"])],
            "SE of the mean": crossed["se"].map(lambda v: _f(v, 3)), "df (Satterthwaite)": crossed["df"].map(lambda v: _f(v, 1)),
        })
        approx = " (≈: unbalanced, I0 in place of I)" if crossed["components_approximate"].fillna(False).any() else ""
        lines += ["Crossed cells (J draws x I seeds; one-way random-effects ANOVA, method of moments; "
                  "SE² = σ²_draw/J + σ²_train/(IJ)). The draw's share is σ²_draw / (σ²_draw + σ²_train); "
                  "a std over seeds at one fixed draw, as a paper reports it, understates the std of runs on "
                  "other draws by 1/sqrt(1 − share). Intervals: σ_train chi-square, the share F (exact when "
                  f"balanced), σ_draw modified large-sample{approx}:", "", _table(shown), ""]
    return lines


def _pairs_table(group: pd.DataFrame) -> pd.DataFrame:
    sign = group["sign_shown"].all()
    shown = pd.DataFrame({
        "a": group["a"], "b": group["b"], "pairs": group["n"].astype(str),
        "mean a − b [95% CI]": [f"{_f(d)} [{_f(lo)}, {_f(hi)}]" if n >= 2 else f"{_f(d)} {DAGGER}"
                                for d, lo, hi, n in zip(group["mean_diff"], group["ci_low"], group["ci_high"], group["n"])],
        "t-test p (Holm)": group["p_t_holm"].map(_p),
    })
    if sign:
        shown["sign count (exact p)"] = [f"a > b in {w} of {n} seeds ({_p(p)})"
                                         for w, n, p in zip(group["wins"], group["n"], group["p_sign"])]
    else:
        shown["Wilcoxon p (Holm)"] = group["p_wilcoxon_holm"].map(_p)
    shown["P(a > b) paired [95% CP]"] = [f"{_f(r)} [{_f(lo)}, {_f(hi)}]" if np.isfinite(r) else ""
                                         for r, lo, hi in zip(group["win_rate"], group["win_low"], group["win_high"])]
    return shown


PAIRS_TEXT = ("The mean difference, its interval and the t-test pair the runs of a and b by (seed, noise draw). "
              "Where the exact Wilcoxon test cannot reach the Holm level at this many pairs (its smallest p, "
              "2/2^n, is 0.0625 at n = 5), the sign count is shown instead, with its unadjusted exact p (which "
              "cannot go below the same 2/2^n: a count to read, not a test that could reject). P(a > b) is the "
              "paired win rate (ties count one half) with a Clopper-Pearson interval.")


def _dataset_section(dataset: str, summary: pd.DataFrame, pairs: pd.DataFrame, settings: Settings,
                     figures: dict[str, Path], drops: pd.DataFrame | None = None,
                     collapsed: pd.DataFrame | None = None) -> list[str]:
    data = summary[summary["dataset"] == dataset].copy()
    data["setting"] = _settings(data)
    settings_order = list(dict.fromkeys(data["setting"]))
    matrix = data.assign(cell=data.apply(_ours, axis=1)).pivot(index="label", columns="setting", values="cell")
    matrix = matrix.reindex(columns=settings_order).fillna("").reset_index().rename(columns={"label": "method"})
    lines = [f"## {dataset}", "", "Mean test accuracy (%) [95% t-interval] (runs):", "", _table(matrix), ""]
    lines += _design_lines(data)
    against = _against_table(data, settings)
    if not data["paper_mean"].notna().any():  # no paper number here: keep our own columns
        against = against[[c for c in against.columns if c in ("setting", "method", "ours [95% CI] (runs)",
                                                               "BCa 95%", "realised noise")]]
        lines += ["### Intervals (no paper number for this table)", "", _table(against), ""]
    else:
        lines += ["### Against the paper", "", _table(against), ""]
        lines += _attainable_lines(data, settings)
    if drops is not None:
        lines += _drops_section(drops[drops["dataset"] == dataset])
    if collapsed is not None:
        lines += _collapse_section(collapsed[collapsed["dataset"] == dataset])
    cell_pairs = pairs[pairs["dataset"] == dataset] if not pairs.empty else pairs
    if not cell_pairs.empty:
        lines += ["### Methods compared within each cell (paired by seed)", "", PAIRS_TEXT, ""]
        for cell, group in cell_pairs.groupby(CELL[1:], dropna=False, sort=True):
            lines += [f"**{setting_name(*cell)}**", "", _table(_pairs_table(group)), ""]
    curves = [(key[0], key[1:], path) for key, path in figures.items()
              if isinstance(key, tuple) and key[1] == dataset]
    if curves:
        lines.append("Per-epoch curves (mean and 95% band): " + ", ".join(
            f"[{kind.replace('_', ' ')}, {setting_name(*cell[1:])}]({path.parent.name}/{path.name})" for kind, cell, path in curves))
        lines.append("")
    return lines


def _attainable_lines(data: pd.DataFrame, settings: Settings) -> list[str]:
    never = data[data["attainable"] == False]  # noqa: E712 (object column: None where untested)
    if never.empty:
        return []
    cells = ", ".join(f"{s} {m}" for s, m in zip(never["setting"], never["label"]))
    return [f"Equivalence within ±{settings.margin:g} is not attainable at any number of seeds for {cells}: "
            f"at the Bonferroni level of the paper's table, the paper's own SE (std/sqrt(n_p), on n_p − 1 df) "
            f"and the draw variance alone keep the TOST interval wider than the margin.", ""]


def _tested_cd(fr: stats.FriedmanResult) -> float:
    """The Nemenyi critical difference where the Friedman test ran on enough cells, else NaN:
    without the omnibus test, or with fewer than ``stats.MIN_CD_CELLS`` cells to rank on, the CD
    means nothing, so it is neither printed nor drawn."""
    return fr.cd if np.isfinite(fr.statistic) and fr.enough_cells else math.nan


def _across_section(across: Across, settings: Settings, figures: dict) -> list[str]:
    lines = ["## Across cells", ""]
    fr = across.friedman
    if fr is None:
        lines += ["Fewer than two methods or no cell where every method ran: no ranking.", ""]
    else:
        if np.isfinite(fr.statistic):
            test = (f"Friedman χ² = {_f(fr.statistic)}, p {_p_eq(fr.p_value)}; Iman-Davenport F({fr.df1:g}, "
                    f"{fr.df2:g}) = {_f(fr.f_statistic)}, p {_p_eq(fr.f_p_value)}; {fr.n_cells} cells, {fr.k} methods.")
            if np.isfinite(_tested_cd(fr)):
                test += f" Nemenyi critical difference (α = {settings.alpha:g}) = {_f(fr.cd)} ranks."
            else:
                test += (f" No critical difference: {fr.n_cells} cells are too few to rank methods on "
                         f"(at least {stats.MIN_CD_CELLS}); the ranks below describe these cells only.")
        else:
            test = f"Friedman test not run ({fr.note}); {fr.n_cells} cells, {fr.k} methods."
        lines += [test, ""]
        ranks = pd.DataFrame({"method": across.labels, "average rank": [_f(r) for r in fr.ranks]})
        lines += [_table(ranks.iloc[np.argsort(fr.ranks)]), ""]
    if across.note:
        lines += [f"({across.note}.)", ""]
    lines += ["No interquartile mean across cells: pooled raw accuracies weight cells by where their accuracy "
              "lies, not by the method (it kept only two cells' runs for most methods).", ""]
    for key, title in (("accuracy_vs_noise", "Accuracy against noise rate"), ("cd_diagram", "Critical-difference diagram")):
        if key in figures:
            path = figures[key]
            lines += [f"![{title}]({path.parent.name}/{path.name})", ""]
    return lines


def compute_text(runs: pd.DataFrame) -> str:
    """Where the runs trained and for how long (runs copied from another grid counted apart)."""
    if "wall_seconds" not in runs or "device" not in runs:
        return ""
    reused = runs["reused_from"].notna() if "reused_from" in runs else pd.Series(False, index=runs.index)
    own = runs[~reused]
    parts = []
    for device, group in own.groupby(own["device"].fillna("unknown").astype(str).str.split(":").str[0]):
        hours = pd.to_numeric(group["wall_seconds"], errors="coerce").sum() / 3600.0
        parts.append(f"{hours:.1f} h on {device} over {_plural(len(group), 'run')} "
                     f"({hours * 60 / max(len(group), 1):.1f} min per run)")
    text = "Compute (run wall time): " + "; ".join(parts) if parts else ""
    if reused.any():
        sources = ", ".join(sorted({str(r.get("grid")) for r in runs.loc[reused, "reused_from"]}))
        n = int(reused.sum())
        text += (f"{'; ' if text else 'Compute: '}{_plural(n, 'run')} "
                 f"{'is an identical configuration' if n == 1 else 'are identical configurations'} "
                 f"trained for grid {sources} and reused here")
    return text + "." if text else ""


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def header_text(settings: Settings) -> list[str]:
    """What the intervals, tests and verdicts mean, in a few lines."""
    m = f"{settings.margin:g}"
    return [
        "How to read it: a cell's 95% interval covers the training seeds, and the noise draw only where each "
        "run has its own draw (or J draws are crossed with seeds); with one shared draw it is conditional on "
        "that draw (the cell says whose). Δ = ours − paper; its 90% interval adds the paper's SE, std/sqrt(n_p), "
        f"and, for crossed cells, σ²_draw for the paper's own single draw, with Satterthwaite df. Tests: Welch when the paper gives a std (n_p from the paper, else an assumed "
        f"default run count, {settings.default_paper_runs}), one-sample when it gives none; equivalence by TOST "
        f"within ±{m}; p-values Holm-adjusted over the paper's whole table.",
        "",
        f"Verdicts: **reproduced** (equivalent within ±{m}); **reproduced, reliably lower / higher by x** "
        f"(equivalent and significantly different); **below** / **above** (different and not within the margin); "
        f"**inconclusive** (neither); **{stats.TOO_FEW}** ({DAGGER}). Adjusting never turns a verdict into "
        f"below/above that was within the margin before. *provisional*: against a recalled number (from memory "
        f"of the literature, a lead only). Where n_p is assumed, the verdict at n_p = 2, 5 and ∞ is shown "
        f"(robust when all agree). 'Equivalent within' is the smallest margin at which TOST passes; "
        f"P(|δ| < {m}) is from a flat-prior t posterior with the same SE. Seeds for equivalence: design-based, "
        f"at the Bonferroni level of the paper's table, a {stats.SIGMA_UCB:.0%} upper confidence bound for the "
        f"per-run std and power {stats.POWER:g}.",
        "",
    ]


def render(grid: str, summary: pd.DataFrame, pairs: pd.DataFrame, across: Across, settings: Settings,
           figures: dict, compute: str = "", drops: pd.DataFrame | None = None,
           collapsed: pd.DataFrame | None = None, left: Sequence[str] = (),
           extra: Sequence[str] = ()) -> str:
    """The markdown report; ``extra`` holds further sections (claims, selection curves), placed
    before the list of what was left out."""
    n_runs = int(summary["n"].sum())
    lines = [
        f"# Report: {grid}", "",
        f"{n_runs} runs, {summary[CELL].drop_duplicates().shape[0]} noise settings, "
        f"{summary['label'].nunique()} methods. Protocol `{settings.protocol}`: {PROTOCOL_TEXT[settings.protocol]}."
        + "".join(f" {', '.join(sorted(set(summary.loc[summary['protocol'] == p, 'label'])))}: protocol `{p}`, "
                  f"{PROTOCOL_TEXT[p]}." for p in sorted(set(summary["protocol"]) - {settings.protocol}))
        + (f" {compute}" if compute else ""), "",
        *header_text(settings),
    ]
    for dataset in dict.fromkeys(summary["dataset"]):
        lines += _dataset_section(dataset, summary, pairs, settings, figures, drops, collapsed)
    lines += _across_section(across, settings, figures)
    lines += list(extra)
    lines += list(left)
    return "\n".join(lines).rstrip() + "\n"


# --------------------------------------------------------------------------------------------
# Figures and the whole report
# --------------------------------------------------------------------------------------------


def _draw(grid_dir: Path, runs: pd.DataFrame, summary: pd.DataFrame, across: Across, settings: Settings) -> dict:
    from bench import figures as fig

    out: dict = {}
    path = fig.accuracy_vs_noise(summary, grid_dir / "accuracy_vs_noise.png", protocol=settings.protocol)
    if path:
        out["accuracy_vs_noise"] = path
    for cell, group in runs.groupby(CELL, dropna=False, sort=True):
        name = setting_name(*cell[1:])
        slug = _slug(*cell)
        for metric, ylabel, scale in (("test_acc", "test accuracy (%)", 1.0),
                                      ("label_precision", "label precision of the selected set (%)", 100.0)):
            path = fig.epoch_curves(group, grid_dir / f"{metric}_{slug}.png", metric=metric,
                                    title=f"{cell[0]}, {name}", ylabel=ylabel, scale=scale)
            if path:
                out[(metric, *cell)] = path
    fr = across.friedman
    if fr is not None and np.isfinite(_tested_cd(fr)):
        path = fig.cd_diagram(fr.ranks, across.labels, cd=fr.cd, path=grid_dir / "cd_diagram.png",
                              title=f"average ranks over {fr.n_cells} cells")
        if path:
            out["cd_diagram"] = path
    return out


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
    written = []
    for name in find_grids(results_dir, grid):
        runs, left_runs, damaged = load_grid_runs(results_dir, name, grids_dir=Path(grids_dir))
        settings = Settings(protocol=protocol or grid_protocol(runs), margin=margin, n_boot=n_boot, seed=seed,
                            default_paper_runs=default_paper_runs, paper_runs=dict(paper_runs))
        runs = with_accuracy(runs, settings.protocol)
        rng = np.random.default_rng(seed)
        summary = summarise(runs, papers, settings, rng=rng)
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
        md = out_dir / f"{name}.md"
        drops = class_drops(runs)
        drops.to_csv(grid_dir / "class_drops.csv", index=False)
        collapsed = collapses(runs)
        collapsed.to_csv(grid_dir / "collapses.csv", index=False)
        extra = variants_lines(summary) + claims_lines(runs, claims, settings) \
            + selection_section(runs, grid_dir, figures=figures)
        md.write_text(render(name, summary, pairs, across, settings, drawn, compute_text(runs), drops, collapsed,
                             left, extra), encoding="utf-8")
        written.append(md)
    return written


def variants_lines(summary: pd.DataFrame) -> list[str]:
    """"Variants against the paper's number": where a grid runs one paper method in several
    variants (parameters, protocols), which of them the verdict calls reproduced, per setting."""
    tested = summary[summary["paper_mean"].notna()]
    if tested.empty:
        return []
    tested = tested.assign(_paper_method=tested["method"].map(lambda m: PAPER_METHOD.get(m, m)))
    lines = []
    for key, group in tested.groupby(CELL + ["_paper_method"], dropna=False, sort=True):
        if group["label"].nunique() < 2:
            continue
        kinds = ", ".join(f"{row.label} {row.verdict_text} (Δ {row.diff:+.2f})" for row in group.itertuples())
        landed = group.loc[group["verdict"].astype(str).str.startswith(stats.REPRODUCED), "label"]
        answer = (f"reproduced by {', '.join(landed)}" if len(landed) else "no variant reproduces it")
        lines.append(f"- {setting_name(key[1], key[2], key[3])}, {key[4]} "
                     f"(paper {group['paper_mean'].iloc[0]:.2f}): {answer}; {kinds}.")
    if not lines:
        return []
    return ["## Variants against the paper's number", "",
            "Where the grid runs one method of the paper in several variants, the verdict of each "
            "against the paper's number (as in the tables above).", "", *lines, ""]


def claims_lines(runs: pd.DataFrame, claims: pd.DataFrame, settings: Settings) -> list[str]:
    """The "Claims of the paper" section for the grid's paper table, or nothing for a grid that
    reproduces no paper table. Claims are read under the report's protocol."""
    from bench.claims import claims_markdown, evaluate_claims

    refs = [r for r in runs["reference"] if isinstance(r, dict) and r.get("paper")] \
        if "reference" in runs else []
    if not refs:
        return []
    paper = pd.Series([r["paper"] for r in refs]).mode().iloc[0]
    table = pd.Series([r.get("table") for r in refs if r["paper"] == paper]).mode()
    mine = (claims["paper"] == paper) & (claims["protocol"] == settings.protocol)
    if not table.empty:
        mine &= claims["table"] == table.iloc[0]
    return claims_markdown(evaluate_claims(claims[mine], runs, alpha=settings.alpha), alpha=settings.alpha)


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
