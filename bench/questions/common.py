"""What every question section shares: its context and question types, the formatting of
numbers, intervals, tables and tests, the reading of runs (accuracy, parameters, metrics,
settings), the two-arm test, and the lines that close a section (compute, noise draws, runs
still pending, records left out).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from bench.reporting import text
from bench.reporting.records import with_accuracy
from bench.stats import arms, t_interval
from bench.tables import markdown_table

VERDICT_TEXT = {arms.DIFFERENT: "a difference",
                arms.SMALL_DIFFERENCE: "a difference, but within ±{m:g} point(s)",
                arms.EQUIVALENT: "equivalent within ±{m:g} point(s)",
                arms.INCONCLUSIVE: "inconclusive (neither a difference nor equivalence within ±{m:g})",
                "": "not tested (fewer than two pairs)"}
PAIRING = ("paired by seed where the two arms trained on each seed's one noise draw (else Welch, marked "
           "in the table)")


@dataclass(frozen=True)
class Context:
    """What a section builder works with: the grid's runs, where its figures go, the generator of
    its bootstrap and sampled tests, the equivalence margin and level, and the run specs the grid
    file expands to (None without a grid file)."""

    runs: pd.DataFrame
    figures_dir: Path
    figures: bool
    rng: np.random.Generator
    margin: float
    alpha: float
    expected: tuple | None

    def figure_link(self, path: Path | None, alt: str) -> list[str]:
        """Markdown lines linking ``path`` from a report beside ``figures_dir``."""
        return [f"![{alt}]({self.figures_dir.name}/{path.name})", ""] if path else []

    def figure(self, draw: Callable[..., Path | None], data: Any, name: str, alt: str,
               **options: Any) -> list[str]:
        """``draw(data, <figures_dir>/<name>, **options)`` when the report draws figures, and
        the markdown lines linking what it wrote."""
        return self.figure_link(draw(data, self.figures_dir / name, **options)
                                if self.figures else None, alt)


@dataclass(frozen=True)
class Question:
    """A grid's question: its title, the question as it was put, the protocol the grid reports
    and the builder of the section's body (answer, tables, figure) from the context and each
    run's accuracy."""

    title: str
    asked: str
    protocol: str
    body: Callable[[Context, pd.Series], list[str]]


# ---- formatting ---------------------------------------------------------------------------


def fmt(value: float, digits: int = 2) -> str:
    """``value`` with ``digits`` decimals, as the report's tables write it; ``n/a`` when missing."""
    return text.fmt(value, digits) or "n/a"


def fmt_p(value: float) -> str:
    """A p-value as the report's tables write it (``<0.001`` below that); ``n/a`` when missing."""
    return text.fmt_p(value) or "n/a"


def p_text(value: float) -> str:
    """A p-value as a sentence writes it: ``p = 0.004``, ``p < 0.001``, ``p = n/a``."""
    shown = fmt_p(value)
    return f"p < {shown[1:]}" if shown.startswith("<") else f"p = {shown}"


def mean_ci(x: Sequence[float] | np.ndarray, digits: int = 2) -> str:
    """``mean [low, high] (n)`` of the finite values of ``x``; no interval below two."""
    values = np.asarray(x, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return "n/a"
    if values.size < 2:
        return f"{values.mean():.{digits}f} (1)"
    low, high = t_interval(values)
    return f"{values.mean():.{digits}f} [{low:.{digits}f}, {high:.{digits}f}] ({values.size})"


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """A markdown table, followed by a blank line."""
    return markdown_table(rows, header, style="compact").splitlines() + [""]


def verdict(test: arms.TwoArmTest) -> str:
    """The verdict of ``test`` in words, with its margin."""
    return VERDICT_TEXT[test.verdict].format(m=test.margin)


def comparison_text(test: arms.TwoArmTest, what: str = "") -> str:
    """``<what>d [low, high] (paired over n seeds, t Holm p = ..., exact sign-flip Holm p = ...):
    verdict`` (or Welch's)."""
    how = (f"paired over {test.n_a} seeds, t Holm {p_text(test.p_holm)}, exact sign-flip Holm "
           f"{p_text(test.p_exact_holm)}" if test.kind == "paired" else
           f"Welch over {test.n_a} and {test.n_b} runs, Holm {p_text(test.p_holm)}")
    return (f"{what}{fmt(test.diff)} [{fmt(test.ci_low)}, {fmt(test.ci_high)}] ({how}): "
            f"{verdict(test)}")


def tests_table(rows: Sequence[tuple[str, arms.TwoArmTest]]) -> list[str]:
    """One row per (comparison, test): the difference, every p-value and the verdict."""
    header = ["comparison", "pairs / runs", "difference [95% CI]", "t p", "t Holm p",
              "sign-flip p", "sign-flip Holm p", "Wilcoxon p", "TOST Holm p", "verdict"]
    body = [(name, f"{t.n_a}" if t.kind == "paired" else f"{t.n_a} vs {t.n_b} (Welch)",
             f"{fmt(t.diff)} [{fmt(t.ci_low)}, {fmt(t.ci_high)}]", fmt_p(t.p_t), fmt_p(t.p_holm),
             fmt_p(t.p_exact), fmt_p(t.p_exact_holm), fmt_p(t.p_wilcoxon), fmt_p(t.p_tost_holm),
             t.verdict or "not tested")
            for name, t in rows]
    return table(header, body)


# ---- reading runs -------------------------------------------------------------------------


def _report_protocols(runs: pd.DataFrame) -> set[str]:
    """The protocols behind the report's ``acc`` (a checkpoint chosen on validation loss aside)."""
    return set(runs["acc_protocol"]) - {"val_loss"} if "acc_protocol" in runs else set()


def accuracy(runs: pd.DataFrame, protocol: str) -> pd.Series:
    """The accuracy of each run under the question's ``protocol``: the report's ``acc`` where the
    report used that protocol, else the record's ``test_acc_<protocol>`` (or its curve)."""
    if "acc" in runs and _report_protocols(runs) <= {protocol}:
        return pd.to_numeric(runs["acc"], errors="coerce").astype(float)
    if "metrics" in runs:
        return with_accuracy(runs, protocol)["acc"]
    col = f"test_acc_{protocol}"
    if col in runs:
        return pd.to_numeric(runs[col], errors="coerce").astype(float)
    return pd.Series(np.nan, index=runs.index, dtype=float)


def protocol_line(runs: pd.DataFrame, protocol: str) -> list[str]:
    """Where the question's protocol differs from the report's: which accuracy the section uses."""
    used = _report_protocols(runs)
    if used <= {protocol}:
        return []
    return [f"Accuracy in this section: protocol `{protocol}` ({text.PROTOCOL_TEXT[protocol]}), not the "
            f"report's `{'`, `'.join(sorted(used))}`.", ""]


def param(runs: pd.DataFrame, name: str) -> pd.Series:
    """The method parameter ``name`` of each run (None where the run has none)."""
    return runs["method_params"].map(lambda m: (m or {}).get(name) if isinstance(m, dict) else None)


def metric(record: pd.Series, *keys: str) -> np.ndarray:
    """``metrics[keys[0]][keys[1]]...`` of one run as a float array (None -> NaN)."""
    value: Any = record.get("metrics") or {}
    for key in keys:
        value = (value or {}).get(key) if isinstance(value, dict) else None
    return np.array([np.nan if v is None else v for v in (value or [])], dtype=float)


def setting(noise_type: Any, noise_rate: Any) -> str:
    """``<noise type> <rate>%``, or the type alone without a rate."""
    rate = float(noise_rate) if noise_rate is not None and np.isfinite(float(noise_rate)) else math.nan
    return f"{noise_type} {rate * 100:g}%" if np.isfinite(rate) else str(noise_type)


def settings(runs: pd.DataFrame) -> pd.Series:
    """The noise setting of each run (:func:`setting`)."""
    return pd.Series([setting(t, r) for t, r in zip(runs["noise_type"], runs["noise_rate"])],
                     index=runs.index, dtype=object)


def stack(curves: Sequence[np.ndarray]) -> np.ndarray:
    """(runs, epochs) of curves of possibly unequal length, padded with NaN."""
    if not curves:
        return np.empty((0, 0))
    width = max(c.size for c in curves)
    return np.array([np.pad(c, (0, width - c.size), constant_values=np.nan) for c in curves])


# ---- two arms -----------------------------------------------------------------------------


def pair_on_seed(a: pd.DataFrame, b: pd.DataFrame, value: str = "acc") -> tuple[np.ndarray, np.ndarray] | None:
    """(a's values, b's values) on the seeds both arms ran on the same noise draw; None when the
    arms do not share their draws seed by seed (they are then compared by Welch)."""
    left = a[["seed", "noise_seed", value]].dropna()
    right = b[["seed", "noise_seed", value]].dropna()
    both = left.merge(right, on="seed", suffixes=("_a", "_b"))
    if both.empty or not (both["noise_seed_a"] == both["noise_seed_b"]).all():
        return None
    both = both.sort_values("seed")
    return both[f"{value}_a"].to_numpy(dtype=float), both[f"{value}_b"].to_numpy(dtype=float)


def two_arm_test(a: pd.DataFrame, b: pd.DataFrame, *, margin: float, rng: np.random.Generator,
                 value: str = "acc") -> arms.TwoArmTest:
    """Arm a against arm b: paired on the seed where they share draws, else Welch."""
    pairs = pair_on_seed(a, b, value)
    if pairs is not None:
        return arms.paired_test(*pairs, margin=margin, rng=rng)
    return arms.welch_test(a[value].dropna().to_numpy(dtype=float), b[value].dropna().to_numpy(dtype=float),
                             margin=margin)


# ---- the lines that close a section -------------------------------------------------------


def _reused(runs: pd.DataFrame) -> pd.Series:
    """Whether each run's record was copied from another grid's (``reused_from``)."""
    if "reused_from" not in runs:
        return pd.Series(False, index=runs.index)
    return runs["reused_from"].map(lambda r: isinstance(r, dict))


def _device_hours(own: pd.DataFrame) -> list[str]:
    """Per device of the runs trained here: wall hours and, on the CPU, CPU-hours."""
    seconds = pd.to_numeric(own["wall_seconds"], errors="coerce").fillna(0.0)
    device = own.get("device", pd.Series("unknown", index=own.index)).fillna("unknown").astype(str).str.split(":").str[0]
    threads = own.get("env", pd.Series(None, index=own.index)).map(
        lambda e: (e or {}).get("cpu_threads") if isinstance(e, dict) else None)
    threads = pd.to_numeric(threads, errors="coerce").fillna(1.0)
    parts = []
    for name in sorted(device.unique()):
        mine = device == name
        hours = float(seconds[mine].sum()) / 3600
        text = f"{hours:.3g} h wall time on {name} over {int(mine.sum())} runs"
        if name == "cpu":
            text += f" ({float((seconds[mine] * threads[mine]).sum()) / 3600:.3g} CPU-hours)"
        parts.append(text)
    return parts


def compute_line(runs: pd.DataFrame) -> str:
    """The compute the records took, summed from their timings: wall hours per device and, on
    the CPU, CPU-hours (wall time x the run's torch threads); reused records counted apart."""
    if runs.empty or "wall_seconds" not in runs:
        return "Compute: no timings in the records."
    reused = _reused(runs)
    parts = _device_hours(runs[~reused])
    line = "Compute: " + ("; ".join(parts) if parts else "no run trained for this grid")
    if reused.any():
        grids = ", ".join(sorted({str(r.get("grid")) for r in runs.loc[reused, "reused_from"]}))
        line += f"; {int(reused.sum())} run(s) reused from grid {grids}, trained there"
    return line + "."


def draw_lines(runs: pd.DataFrame) -> list[str]:
    """A note when every run trained on one noise draw: the intervals are then conditional on it."""
    draws = runs[["dataset", "noise_type", "noise_rate", "noise_seed"]].astype(str).drop_duplicates()
    per_setting = draws.drop(columns="noise_seed").drop_duplicates()
    if len(draws) != len(per_setting):
        return []
    seeds = ", ".join(sorted(set(draws["noise_seed"])))
    return [f"Every run of a setting trained on one noise draw (noise_seed {seeds}): the intervals cover the "
            "training seeds and are conditional on that draw.", ""]


def expected_runs(grid: str, grids_dir: Path) -> tuple | None:
    """The run specs the grid file ``<grids_dir>/<grid>.yaml`` expands to; None without the file."""
    from bench.config import load_grid

    path = grids_dir / f"{grid}.yaml"
    return load_grid(path).runs if path.is_file() else None


def in_grid(runs: pd.DataFrame, expected: tuple | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs of configurations the grid file expands to, the others); all runs without a file."""
    if expected is None or "run_id" not in runs:
        return runs, runs.iloc[:0]
    inside = runs["run_id"].isin({spec.run_id for spec in expected})
    return runs[inside], runs[~inside]


def pending_lines(runs: pd.DataFrame, expected: tuple | None) -> list[str]:
    """What the grid file expands to that has no record yet, per arm and setting, with seeds (and
    noise seeds, as ``seed/noise seed``, where a grid crosses several draws with its seeds)."""
    if expected is None:
        return ["Pending: no grid file to compare the records with.", ""]
    have = set(runs["run_id"]) if "run_id" in runs else set()
    missing: dict[tuple[str, str], list[tuple[int, Any]]] = {}
    for spec in expected:
        if spec.run_id not in have:
            missing.setdefault((spec.label, setting(spec.noise_type, spec.noise_rate)), []).append(
                (spec.seed, spec.noise_seed))
    if not missing:
        return [f"Pending: nothing; all {len(expected)} runs of the grid have a record.", ""]
    crossed = any(len({seed for seed, _ in pairs}) < len(pairs) for pairs in missing.values())
    n = sum(len(s) for s in missing.values())
    rows = [(label, where, len(pairs), ", ".join(f"{seed}/{noise}" if crossed else str(seed)
                                                   for seed, noise in sorted(pairs)))
            for (label, where), pairs in missing.items()]
    return [f"Pending: {n} of the grid's {len(expected)} runs have no record yet; the numbers "
            "above are over the runs that have one.", "",
            *table(["arm", "setting", "runs missing", "seed/noise seed" if crossed else "seeds"], rows)]


def left_out_lines(outside: pd.DataFrame) -> list[str]:
    """A line naming the labels of the records whose configuration the grid does not expand to."""
    if not len(outside):
        return []
    return [f"Left out of this section: {len(outside)} record(s) whose configuration the grid file does "
            "not expand to (" + ", ".join(sorted(set(outside["label"].astype(str)))) + ").", ""]
