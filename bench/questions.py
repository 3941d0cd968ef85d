"""Report sections that answer the question a grid was built to ask.

Some grids ask one question of their own arms rather than of a paper's table: whether Deep
Self-Learning's later correction start removes its dip (``self_learning_start``), which JoCoR
co_lambda is best and whether the default 0.1 loses (``jocor_lambda_mnist``), whether RSL's
class-wise selection beats plain small-loss selection at its budget (``rsl_vs_smallloss_mnist``)
and whether DivideMix's accuracy follows its kept set's noise rate (``dividemix_threshold``).
:func:`question_sections` gives the markdown of the grid's section (nothing for another grid).
Each section opens with the question as it was put, answers it in one sentence with its numbers,
intervals and verdict, shows the tables and the figure behind the answer, and ends with the
compute the records took and the runs of the grid that have no record yet.

``runs`` is one row per record, as :func:`bench.report.load_grid_runs` gives them (``acc``, the
accuracy under the report's protocol, when present; else the grid protocol's ``test_acc_*``).
Intervals are 95% t-intervals over seeds; arms are paired on the seed where the grid gives each
seed one noise draw shared by the arms (:mod:`bench.paired`), and Holm runs over the tests that
answer one question. Verdicts (:func:`bench.paired.holm_verdicts`): ``different`` (Holm p <
0.05), ``different, within the margin`` (and TOST within ±``margin`` points after Holm),
``equivalent`` (TOST only), else ``inconclusive``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from bench import paired, question_figures
from bench.left_out import GRIDS_DIR
from bench.stats import t_interval

__all__ = ["QUESTIONS", "Question", "Context", "question_sections", "compute_line", "draw_lines",
           "pending_lines", "pair_on_seed", "two_arm_test"]

VERDICT_TEXT = {paired.DIFFERENT: "a difference",
                paired.SMALL_DIFFERENCE: "a difference, but within ±{m:g} point(s)",
                paired.EQUIVALENT: "equivalent within ±{m:g} point(s)",
                paired.INCONCLUSIVE: "inconclusive (neither a difference nor equivalence within ±{m:g})",
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


@dataclass(frozen=True)
class Question:
    """A grid's question: its title, the question as it was put, the protocol the grid reports
    and the builder of the section's body (answer, tables, figure)."""

    title: str
    asked: str
    protocol: str
    body: Callable[[Context, pd.Series], list[str]]


# ---- shared pieces ------------------------------------------------------------------------


def _fmt(value: float, digits: int = 2) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def _p(value: float) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.3g}"


def _mean_ci(x: Sequence[float] | np.ndarray, digits: int = 2) -> str:
    """``mean [low, high] (n)`` of the finite values of ``x``; no interval below two."""
    values = np.asarray(x, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return "n/a"
    if values.size < 2:
        return f"{values.mean():.{digits}f} (1)"
    low, high = t_interval(values)
    return f"{values.mean():.{digits}f} [{low:.{digits}f}, {high:.{digits}f}] ({values.size})"


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(v) for v in row) + " |" for row in rows] + [""]


def _verdict(test: paired.TwoArmTest) -> str:
    return VERDICT_TEXT[test.verdict].format(m=test.margin)


def _test_text(test: paired.TwoArmTest, what: str = "") -> str:
    """``<what>d [low, high] (paired over n seeds, t Holm p = ..., exact sign-flip Holm p = ...):
    verdict`` (or Welch's)."""
    how = (f"paired over {test.n_a} seeds, t Holm p = {_p(test.p_holm)}, exact sign-flip Holm p = "
           f"{_p(test.p_exact_holm)}" if test.kind == "paired" else
           f"Welch over {test.n_a} and {test.n_b} runs, Holm p = {_p(test.p_holm)}")
    return (f"{what}{_fmt(test.diff)} [{_fmt(test.ci_low)}, {_fmt(test.ci_high)}] ({how}): "
            f"{_verdict(test)}")


def _tests_table(rows: Sequence[tuple[str, paired.TwoArmTest]]) -> list[str]:
    header = ["comparison", "pairs / runs", "difference [95% CI]", "t p", "t Holm p",
              "sign-flip p", "sign-flip Holm p", "Wilcoxon p", "TOST Holm p", "verdict"]
    body = [(name, f"{t.n_a}" if t.kind == "paired" else f"{t.n_a} vs {t.n_b} (Welch)",
             f"{_fmt(t.diff)} [{_fmt(t.ci_low)}, {_fmt(t.ci_high)}]", _p(t.p_t), _p(t.p_holm),
             _p(t.p_exact), _p(t.p_exact_holm), _p(t.p_wilcoxon), _p(t.p_tost_holm),
             t.verdict or "not tested")
            for name, t in rows]
    return _table(header, body)


def _accuracy(runs: pd.DataFrame, protocol: str) -> pd.Series:
    """The accuracy of each run: the report's ``acc`` when present, else ``test_acc_<protocol>``."""
    if "acc" in runs:
        return pd.to_numeric(runs["acc"], errors="coerce").astype(float)
    col = f"test_acc_{protocol}"
    if col in runs:
        return pd.to_numeric(runs[col], errors="coerce").astype(float)
    return pd.Series(np.nan, index=runs.index, dtype=float)


def _param(runs: pd.DataFrame, name: str) -> pd.Series:
    return runs["method_params"].map(lambda m: (m or {}).get(name) if isinstance(m, dict) else None)


def _metric(record: pd.Series, *keys: str) -> np.ndarray:
    """``metrics[keys[0]][keys[1]]...`` of one run as a float array (None -> NaN)."""
    value: Any = record.get("metrics") or {}
    for key in keys:
        value = (value or {}).get(key) if isinstance(value, dict) else None
    return np.array([np.nan if v is None else v for v in (value or [])], dtype=float)


def _setting(noise_type: Any, noise_rate: Any) -> str:
    rate = float(noise_rate) if noise_rate is not None and np.isfinite(float(noise_rate)) else math.nan
    return f"{noise_type} {rate * 100:g}%" if np.isfinite(rate) else str(noise_type)


def _settings(runs: pd.DataFrame) -> pd.Series:
    return pd.Series([_setting(t, r) for t, r in zip(runs["noise_type"], runs["noise_rate"])],
                     index=runs.index, dtype=object)


def _stack(curves: Sequence[np.ndarray]) -> np.ndarray:
    """(runs, epochs) of curves of possibly unequal length, padded with NaN."""
    if not curves:
        return np.empty((0, 0))
    width = max(c.size for c in curves)
    return np.array([np.pad(c, (0, width - c.size), constant_values=np.nan) for c in curves])


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
                 value: str = "acc") -> paired.TwoArmTest:
    """Arm a against arm b: paired on the seed where they share draws, else Welch."""
    pairs = pair_on_seed(a, b, value)
    if pairs is not None:
        return paired.paired_test(*pairs, margin=margin, rng=rng)
    return paired.welch_test(a[value].dropna().to_numpy(dtype=float), b[value].dropna().to_numpy(dtype=float),
                             margin=margin)


def compute_line(runs: pd.DataFrame) -> str:
    """The compute the records took, summed from their timings: wall hours per device and, on
    the CPU, CPU-hours (wall time x the run's torch threads); reused records counted apart."""
    if runs.empty or "wall_seconds" not in runs:
        return "Compute: no timings in the records."
    reused = runs["reused_from"].map(lambda r: isinstance(r, dict)) if "reused_from" in runs \
        else pd.Series(False, index=runs.index)
    own = runs[~reused]
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
    line = "Compute: " + ("; ".join(parts) if parts else "no run trained for this grid")
    if reused.any():
        grids = ", ".join(sorted({str(r.get("grid")) for r in runs.loc[reused, "reused_from"]}))
        line += f"; {int(reused.sum())} run(s) reused from grid {grids}, trained there"
    return line + "."


def draw_lines(runs: pd.DataFrame) -> list[str]:
    """A note when every run trained on one noise draw: the intervals are then conditional on it."""
    draws = runs[["dataset", "noise_type", "noise_rate", "noise_seed"]].astype(str).drop_duplicates()
    settings = draws.drop(columns="noise_seed").drop_duplicates()
    if len(draws) != len(settings):
        return []
    seeds = ", ".join(sorted(set(draws["noise_seed"])))
    return [f"Every run of a setting trained on one noise draw (noise_seed {seeds}): the intervals cover the "
            "training seeds and are conditional on that draw.", ""]


def pending_lines(runs: pd.DataFrame, expected: tuple | None) -> list[str]:
    """What the grid file expands to that has no record yet, per arm and setting, with seeds."""
    if expected is None:
        return ["Pending: no grid file to compare the records with.", ""]
    have = set(runs["run_id"]) if "run_id" in runs else set()
    missing: dict[tuple[str, str], list[int]] = {}
    for spec in expected:
        if spec.run_id not in have:
            missing.setdefault((spec.label, _setting(spec.noise_type, spec.noise_rate)), []).append(spec.seed)
    if not missing:
        return [f"Pending: nothing; all {len(expected)} runs of the grid have a record.", ""]
    n = sum(len(s) for s in missing.values())
    rows = [(label, setting, len(seeds), ", ".join(str(s) for s in sorted(seeds)))
            for (label, setting), seeds in missing.items()]
    return [f"Pending: {n} of the grid's {len(expected)} runs have no record yet; the numbers "
            "above are over the runs that have one.", "",
            *_table(["arm", "setting", "runs missing", "seeds"], rows)]


# ---- self_learning_start ------------------------------------------------------------------


def _start_arm(runs: pd.DataFrame) -> pd.Series:
    start = _param(runs, "correction_start_epoch")
    return pd.Series([f"start {int(s)}" if m == "self_learning" and s is not None else "standard CE"
                      for m, s in zip(runs["method"], start)], index=runs.index, dtype=object)


def _with_dips(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` with each run's test curve, its dip (:func:`bench.paired.largest_dip`: depth,
    the accuracy it fell to, the epoch counted from 1) and its corrected-label accuracy curve."""
    curves = [_metric(r, "test_acc") for _, r in runs.iterrows()]
    dips = [paired.largest_dip(c) for c in curves]
    corrected = [_metric(r, "extra", "corrected_label_acc") for _, r in runs.iterrows()]
    return runs.assign(curve=curves, dip=[d.depth for d in dips], trough=[d.trough for d in dips],
                       dip_epoch=[d.position + 1 for d in dips], corrected=corrected,
                       corrected_last=[c[-1] if c.size else np.nan for c in corrected])


def _against(by_arm: dict[str, pd.DataFrame], arms: list[str], reference: str, ctx: Context, value: str
             ) -> list[paired.TwoArmTest]:
    """Each of ``arms`` against ``reference`` on ``value``, Holm over them."""
    return paired.holm_verdicts([two_arm_test(by_arm[a], by_arm[reference], margin=ctx.margin, rng=ctx.rng,
                                              value=value) for a in arms], alpha=ctx.alpha)


def _self_learning_body(ctx: Context, acc: pd.Series) -> list[str]:
    runs = _with_dips(ctx.runs.assign(acc=acc, arm=_start_arm(ctx.runs)))
    arms = sorted(runs["arm"].unique(), key=lambda a: (a == "standard CE", a))
    by_arm = {a: runs[runs["arm"] == a] for a in arms}
    later = [a for a in arms if a.startswith("start ") and a != "start 1"] if "start 1" in by_arm else []
    final_tests, dip_tests = _against(by_arm, later, "start 1", ctx, "acc"), _against(by_arm, later, "start 1", ctx, "dip")
    lines = [_self_learning_answer(by_arm, later, final_tests), ""]
    lines += ["Per arm over seeds: the final test accuracy; the dip, the largest fall of the test "
              "accuracy below its running maximum before the last epoch (0 when it never falls), the "
              "accuracy it fell to and the epoch (median); the accuracy of the corrected labels at the "
              "last epoch (against the clean labels).", ""]
    lines += _table(["arm", "final accuracy (%)", "dip (points)", "fell to (%)", "dip epoch",
                     "corrected labels (%)"],
                    [(a, _mean_ci(g["acc"]), _mean_ci(g["dip"]), _mean_ci(g["trough"]),
                      _fmt(float(g["dip_epoch"].median()), 0), _mean_ci(g["corrected_last"]))
                     for a, g in by_arm.items()])
    if later:
        lines += [f"Later starts against start 1, {PAIRING}; Holm within each of the two families (final "
                  "accuracy, dip):", ""]
        lines += _tests_table([(f"final accuracy, {a} − start 1", t) for a, t in zip(later, final_tests)]
                              + [(f"dip, {a} − start 1", t) for a, t in zip(later, dip_tests)])
    corrected = {a: _stack(list(g["corrected"])) for a, g in by_arm.items() if a != "standard CE"}
    lines += _corrected_table(corrected)
    path = question_figures.curves_with_bands(
        [("test accuracy", "test accuracy (%)", {a: _stack(list(g["curve"])) for a, g in by_arm.items()}),
         ("corrected labels", "accuracy of the corrected labels (%)", corrected)],
        ctx.figures_dir / "question_self_learning_start.png",
        markers={a: int(a.split()[1]) + 0.5 for a in arms if a.startswith("start ")}) if ctx.figures else None
    return lines + ctx.figure_link(path, "test accuracy and corrected-label accuracy per epoch, band over seeds")


def _self_learning_answer(by_arm: dict, later: list[str], tests: list[paired.TwoArmTest]) -> str:
    if "start 1" not in by_arm:
        return "**Answer:** not yet: no run starts the correction at epoch 1."
    base = by_arm["start 1"]
    dips = "; ".join(f"{a} {_mean_ci(g['dip'], 1)}" for a, g in by_arm.items() if a.startswith("start "))
    finals = "; ".join(_test_text(t, f"{a} − start 1 = ") for a, t in zip(later, tests)) or \
        "no later start has runs yet"
    return (f"**Answer:** the dip (points below the running maximum, mean [95% CI] (seeds)) is {dips}; "
            f"the final accuracy of start 1 is {_mean_ci(base['acc'])}%, and a later start changes it by "
            f"{finals}.")


def _corrected_table(corrected: dict[str, np.ndarray]) -> list[str]:
    if not corrected or not any(v.size for v in corrected.values()):
        return []
    epochs = max(v.shape[1] for v in corrected.values() if v.size)
    rows = []
    for e in range(epochs):
        rows.append([str(e + 1)] + [_mean_ci(v[:, e], 1) if v.size and e < v.shape[1] else "n/a"
                                    for v in corrected.values()])
    return ["Accuracy of the corrected labels per epoch (%, mean [95% CI] (seeds); n/a before the "
            "correction starts):", "", *_table(["epoch", *corrected], rows)]


# ---- jocor_lambda_mnist -------------------------------------------------------------------

DEFAULT_LAMBDA = 0.1


def _best_value(group: pd.DataFrame) -> float:
    """The parameter value of highest mean accuracy, among those with two runs where any has."""
    means = group.groupby("value")["acc"].agg(["mean", "count"])
    eligible = means[means["count"] >= 2] if (means["count"] >= 2).any() else means
    return float(eligible["mean"].idxmax())


def _lambda_answer(setting: str, best: float, best_acc: pd.Series, test: paired.TwoArmTest | None,
                   has_default: bool) -> str:
    text = f"at {setting} the best co_lambda is {best:g} with {_mean_ci(best_acc)}%"
    if test is not None:
        return text + "; " + _test_text(test, f"co_lambda {DEFAULT_LAMBDA:g} − best = ")
    if best == DEFAULT_LAMBDA:
        return text + f" (the default {DEFAULT_LAMBDA:g} is the best)"
    return text + ("" if has_default else f"; no run at co_lambda {DEFAULT_LAMBDA:g} yet")


def _lambda_body(ctx: Context, acc: pd.Series) -> list[str]:
    runs = ctx.runs.assign(acc=acc, value=pd.to_numeric(_param(ctx.runs, "co_lambda"), errors="coerce"),
                           setting=_settings(ctx.runs)).dropna(subset=["value"])
    groups = dict(list(runs.groupby("setting", sort=True)))
    best = {s: _best_value(g) for s, g in groups.items()}
    compared = [s for s, g in groups.items() if best[s] != DEFAULT_LAMBDA and (g["value"] == DEFAULT_LAMBDA).any()]
    tests = dict(zip(compared, paired.holm_verdicts(
        [two_arm_test(groups[s][groups[s]["value"] == DEFAULT_LAMBDA], groups[s][groups[s]["value"] == best[s]],
                      margin=ctx.margin, rng=ctx.rng) for s in compared], alpha=ctx.alpha)))
    parts = [_lambda_answer(s, best[s], g.loc[g["value"] == best[s], "acc"], tests.get(s),
                            bool((g["value"] == DEFAULT_LAMBDA).any())) for s, g in groups.items()]
    lines = ["**Answer:** " + ("; ".join(parts) if parts else "no run has a co_lambda yet") + ".", "",
             "The best co_lambda is the one of highest mean accuracy over its seeds (with at least two "
             "where any has two), chosen on the same runs it is tested with: its interval and the "
             "difference to the default lean in its favour.", ""]
    lines += _table(["setting", "co_lambda", "accuracy (%) [95% CI] (seeds)", ""],
                    [(s, f"{v:g}", _mean_ci(cell["acc"]), "best" if v == best[s] else "")
                     for s, g in groups.items() for v, cell in g.groupby("value")])
    if tests:
        lines += [f"co_lambda {DEFAULT_LAMBDA:g} against the best, per setting (Holm across the settings):", ""]
        lines += _tests_table([(f"{s}: {DEFAULT_LAMBDA:g} − {best[s]:g}", t) for s, t in tests.items()])
    path = question_figures.accuracy_by_parameter(
        runs, ctx.figures_dir / "question_jocor_lambda.png", parameter="co_lambda",
        ylabel="test accuracy (%)") if ctx.figures else None
    return lines + ctx.figure_link(path, "accuracy against co_lambda per noise setting, band over seeds")


# ---- rsl_vs_smallloss_mnist ---------------------------------------------------------------


def _final_entry(record: pd.Series, key: str) -> Any:
    values = [v for v in ((record.get("metrics") or {}).get(key) or []) if v is not None]
    return values[-1] if values else None


def _class_counts(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, noisy class): the selected count of the run's last epoch."""
    rows = []
    for _, record in runs.iterrows():
        counts = _final_entry(record, "selected_per_class")
        for cls, count in enumerate(counts or []):
            rows.append({"setting": record["setting"], "arm": record["arm"], "run_id": record["run_id"],
                         "seed": record["seed"], "cls": cls, "count": float(count)})
    return pd.DataFrame(rows, columns=["setting", "arm", "run_id", "seed", "cls", "count"])


def _rsl_body(ctx: Context, acc: pd.Series) -> list[str]:
    runs = ctx.runs.assign(acc=acc, arm=_param(ctx.runs, "selection").fillna("classwise"),
                           setting=_settings(ctx.runs))
    runs = runs.assign(size=[_final_entry(r, "selected_count") for _, r in runs.iterrows()],
                       precision=[_final_entry(r, "label_precision") for _, r in runs.iterrows()])
    runs["size"] = pd.to_numeric(runs["size"], errors="coerce")
    runs["noise"] = 100 * (1 - pd.to_numeric(runs["precision"], errors="coerce"))
    settings = sorted(runs["setting"].unique())
    tests = paired.holm_verdicts([
        two_arm_test(runs[(runs["setting"] == s) & (runs["arm"] == "classwise")],
                     runs[(runs["setting"] == s) & (runs["arm"] == "global")], margin=ctx.margin, rng=ctx.rng)
        for s in settings], alpha=ctx.alpha)
    answer = "; ".join(_test_text(t, f"at {s}, classwise − global = ") for s, t in zip(settings, tests))
    lines = [f"**Answer:** {answer or 'no runs yet'} (final test accuracy, points).", ""]
    lines += _table(["setting", "arm", "final accuracy (%)", "selected", "label noise of the selected set (%)"],
                    [(s, a, _mean_ci(g["acc"]), _mean_ci(g["size"], 0), _mean_ci(g["noise"], 1))
                     for (s, a), g in runs.groupby(["setting", "arm"], sort=True)])
    if tests:
        lines += [f"Class-wise against global selection, {PAIRING}; Holm across the settings:", ""]
        lines += _tests_table([(f"{s}: classwise − global", t) for s, t in zip(settings, tests)])
    counts = _class_counts(runs)
    lines += _class_table(counts)
    path = question_figures.per_class_bars(counts, ctx.figures_dir / "question_rsl_per_class.png") \
        if ctx.figures else None
    return lines + ctx.figure_link(path, "selected samples per noisy class, class-wise against global")


def _class_table(counts: pd.DataFrame) -> list[str]:
    if counts.empty:
        return ["No run recorded its per-class selection.", ""]
    means = counts.groupby(["setting", "cls", "arm"])["count"].mean().unstack("arm")
    arms = list(means.columns)
    rows = []
    for (setting, cls), row in means.iterrows():
        diff = row["classwise"] - row["global"] if {"classwise", "global"} <= set(arms) else math.nan
        rows.append((setting, cls, *(_fmt(row[a], 0) for a in arms), _fmt(diff, 0)))
    return ["Selected samples per noisy class at the last epoch (the set the final network trains on; "
            "mean over seeds): where the two rules spend the same budget differently.", "",
            *_table(["setting", "noisy class", *arms, "classwise − global"], rows)]


# ---- dividemix_threshold ------------------------------------------------------------------


def _threshold_cells(table: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (setting, value), g in table.groupby(["setting", "p_threshold"], sort=True):
        noise, acc = 100 * g["noise_kept"].to_numpy(dtype=float), g["acc"].to_numpy(dtype=float)
        n_low, n_high = t_interval(noise[np.isfinite(noise)]) if np.isfinite(noise).sum() >= 2 else (math.nan,) * 2
        a_low, a_high = t_interval(acc) if acc.size >= 2 else (math.nan, math.nan)
        rows.append({"setting": setting, "value": value, "noise": float(np.nanmean(noise)), "noise_low": n_low,
                     "noise_high": n_high, "acc": float(acc.mean()), "acc_low": a_low, "acc_high": a_high,
                     "size": _mean_ci(g["size"], 0), "noise_text": _mean_ci(noise, 1), "acc_text": _mean_ci(acc)})
    return pd.DataFrame(rows)


def _seed_matrix(table: pd.DataFrame, column: str) -> np.ndarray:
    """(cells, seeds) of ``column``, cells (setting, p) in sorted order, NaN where missing."""
    return table.pivot_table(index=["setting", "p_threshold"], columns="seed", values=column).to_numpy(dtype=float)


def _follows(c: paired.Correlation) -> str:
    if not np.isfinite(c.ci_low):
        return "not tested"
    if c.ci_high < 0:
        return "follows it (accuracy falls as the kept set's noise rises)"
    if c.ci_low > 0:
        return "rises with it (the opposite of following it)"
    return "not shown (the interval includes 0)"


def _dividemix_body(ctx: Context, acc: pd.Series) -> list[str]:
    from bench.selection import trained_threshold_table

    table = trained_threshold_table(ctx.runs.assign(acc=acc))
    if table.empty:
        return ["**Answer:** not yet: no run recorded the kept set of the threshold it trained with.", ""]
    table = table.assign(setting=_settings(table))
    cells = _threshold_cells(table)
    groups = [("all cells", table), *((s, g) for s, g in table.groupby("setting", sort=True))]
    corr = [(name, paired.spearman_bootstrap(_seed_matrix(g, "noise_kept"), _seed_matrix(g, "acc"),
                                             rng=ctx.rng)) for name, g in groups]
    overall = corr[0][1]
    lines = [f"**Answer:** across the {overall.n_cells} cells (setting x p_threshold) Spearman's rho "
             f"between the kept set's label noise and the accuracy is {_fmt(overall.rho)} [95% bootstrap "
             f"CI {_fmt(overall.ci_low)}, {_fmt(overall.ci_high)}] over {overall.n_seeds} seeds: the "
             f"accuracy {_follows(overall)}.", ""]
    lines += ["Per p_threshold, at each run's last epoch: the size of net1's kept (labelled) set at the "
              "threshold it trained with, that set's label noise (1 − precision against the clean labels) "
              "and the accuracy; mean [95% CI] (seeds).", ""]
    lines += _table(["setting", "p_threshold", "kept", "label noise of the kept set (%)", "accuracy (%)"],
                    [(r["setting"], f"{r['value']:g}", r["size"], r["noise_text"], r["acc_text"])
                     for _, r in cells.iterrows()])
    lines += ["Spearman's rho between the cells' mean kept-set noise and mean accuracy; the interval "
              "resamples the seeds (each seed one noise draw, shared by the thresholds of a setting), "
              f"{overall.n_boot} resamples (percentile).", ""]
    lines += _table(["cells", "n", "rho [95% CI]", "p (cells as independent)", "accuracy"],
                    [(name, c.n_cells, f"{_fmt(c.rho)} [{_fmt(c.ci_low)}, {_fmt(c.ci_high)}]", _p(c.p_value),
                      _follows(c)) for name, c in corr])
    path = question_figures.accuracy_vs_kept_noise(
        cells, ctx.figures_dir / "question_dividemix_threshold.png",
        ylabel="test accuracy (%)") if ctx.figures else None
    return lines + ctx.figure_link(path, "accuracy against the kept set's label noise per p_threshold")


# ---- the registry and the entry point -----------------------------------------------------

QUESTIONS: dict[str, Question] = {
    "self_learning_start": Question(
        "Does a later label-correction start remove Deep Self-Learning's dip?",
        "A re-implementer saw accuracy fall to about 30% after correcting from epoch 1, and a later "
        "start remove the dip without changing the final accuracy, and could not tell seed variance "
        "from the effect.", "last", _self_learning_body),
    "jocor_lambda_mnist": Question(
        "Which JoCoR co_lambda is best, and does the default 0.1 lose?",
        "The best lambda depends on dataset, noise and network, between 0.5 and 0.9; a user who kept "
        "the default 0.1 got 76% against 79.41 on CIFAR-10.", "last10", _lambda_body),
    "rsl_vs_smallloss_mnist": Question(
        "Does RSL's class-wise selection beat small-loss selection at the same budget?",
        "RSL ranks each noisy class by its samples' mean loss and keeps num(i) of it; is that better "
        "than vanilla small-loss selection of the same total budget over the whole set (MNIST, "
        "asymmetric 40%, symmetric 50% and 80%)?", "last", _rsl_body),
    "dividemix_threshold": Question(
        "Does DivideMix's accuracy follow its clean set's noise rate?",
        "Trying p_threshold by hand, the clean set shrank and its noise fell with p while the accuracy "
        "did not follow: does accuracy follow the clean set's noise rate?", "best", _dividemix_body),
}


def _expected(grid: str, grids_dir: Path) -> tuple | None:
    from bench.config import load_grid

    path = grids_dir / f"{grid}.yaml"
    return load_grid(path).runs if path.is_file() else None


def question_sections(grid: str, runs: pd.DataFrame | None, figures_dir: str | Path, *,
                      figures: bool = True, grids_dir: str | Path = GRIDS_DIR, seed: int = 0,
                      margin: float = 1.0, alpha: float = 0.05) -> list[str]:
    """Markdown lines of the grid's question section ([] for a grid without a question).

    ``runs``: the grid's records, one row per run (None or empty: the section says there are
    none); figures are written into ``figures_dir`` and linked as from a report beside it;
    ``seed`` seeds the bootstrap and the sampled sign-flip tests.
    """
    question = QUESTIONS.get(grid)
    if question is None:
        return []
    expected = _expected(grid, Path(grids_dir))
    lines = [f"## Question: {question.title}", "", f"> {question.asked}", ""]
    if runs is None or runs.empty:
        total = f" (all {len(expected)} runs of the grid are pending)" if expected is not None else ""
        return lines + [f"No records of this grid yet{total}.", ""]
    runs, outside = _in_grid(runs, expected)
    if runs.empty:
        return lines + [f"No records of this grid's configurations yet; {len(outside)} record(s) of other "
                        "configurations left out.", ""]
    ctx = Context(runs, Path(figures_dir), figures, np.random.default_rng(seed), margin, alpha, expected)
    lines += question.body(ctx, _accuracy(runs, question.protocol))
    lines += draw_lines(runs) + [compute_line(runs), ""] + pending_lines(runs, expected)
    if len(outside):
        lines += [f"Left out of this section: {len(outside)} record(s) whose configuration the grid file does "
                  "not expand to (" + ", ".join(sorted(set(outside["label"].astype(str)))) + ").", ""]
    return lines


def _in_grid(runs: pd.DataFrame, expected: tuple | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs of configurations the grid file expands to, the others); all runs without a file."""
    if expected is None or "run_id" not in runs:
        return runs, runs.iloc[:0]
    inside = runs["run_id"].isin({spec.run_id for spec in expected})
    return runs[inside], runs[~inside]
