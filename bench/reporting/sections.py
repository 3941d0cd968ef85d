"""The sections of a report per dataset: the table of cells, what each interval is conditional
on (with the variance components of crossed cells), the test of each cell against the paper's
number, the runs that dropped a class or collapsed, and the methods compared within each cell."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from bench import stats
from bench.reporting.failures import CHANCE_FACTOR, DROP_SHARE
from bench.reporting.records import CELL
from bench.reporting.summary import Settings, np_text
from bench.reporting.text import DAGGER, fmt, fmt_p, ours_cell, paper_cell, sd, setting_name, setting_names
from bench.tables import markdown_table


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
        "setting": setting_names(hits),
        "method": hits["label"],
        "runs": [f"{k} of {n}" for k, n in zip(hits["n_dropped"], hits["n"])],
        "seed: classes (first epoch without them)": ["; ".join(f"{s}: {', '.join(map(str, c))} ({int(e)})"
                                                 for s, c, e in zip(seeds, classes, start))
                                       for seeds, classes, start in zip(hits["seeds"], hits["classes"], hits["from_epoch"])],
        "accuracy, these runs": hits["acc_dropped"].map(fmt),
        "accuracy, the others": hits["acc_kept"].map(fmt),
    })
    return head + [f"Runs whose selected set held no sample of some class (by its noisy label) in the last epoch "
                   f"and in at least {DROP_SHARE:.0%} of the epochs: the networks stop learning that class, "
                   f"which costs about one class's share of the test accuracy.", "", markdown_table(shown), ""]


def _collapse_section(found: pd.DataFrame) -> list[str]:
    """The runs that ended at chance level; nothing when none did."""
    hits = found[found["n_collapsed"] > 0]
    if hits.empty:
        return []
    shown = pd.DataFrame({
        "setting": setting_names(hits),
        "method": hits["label"],
        "runs": [f"{k} of {n}" for k, n in zip(hits["n_collapsed"], hits["n"])],
        "seed (at chance from epoch)": ["; ".join(f"{s} ({e})" if e is not None else f"{s}" for s, e in zip(seeds, start))
                                        for seeds, start in zip(hits["seeds"], hits["from_epoch"])],
        "collapse rate [95% CP]": [_rate(k, n) for k, n in zip(hits["n_collapsed"], hits["n"])],
        "accuracy, these runs": hits["acc_collapsed"].map(fmt),
        "accuracy, the others": hits["acc_others"].map(fmt),
        "median, all runs": hits["median"].map(fmt),
    })
    return ["### Runs at chance level", "",
            f"Runs whose accuracy is at most {CHANCE_FACTOR:g} times chance (100/C %): training collapsed and "
            f"the networks do no better than a guess. Such a run is a failure of the method on that seed, not "
            f"spread around the mean; it pulls the cell's mean down and widens its t-interval, past [0, 100] "
            f"with few seeds. Such a cell is bimodal: read its collapse rate (with a Clopper-Pearson interval) "
            f"beside the mean of the runs that did not collapse.", "", markdown_table(shown), ""]


def _rate(k: int, n: int) -> str:
    low, high = stats.clopper_pearson(int(k), int(n))
    return f"{int(k)}/{int(n)} [{low:.2f}, {high:.2f}]"


def _verdict_cell(row: pd.Series) -> str:
    text = row["verdict_text"] or row["verdict"]
    if text in ("", stats.TOO_FEW):
        return text
    if row["paper_n_assumed"] and row["robust"] is False:
        text += f" · assumes n_p = {np_text(row['paper_n_used'])}"
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
    return f"{row['test']}, n_p = {np_text(n_p)}" + (" (assumed)" if row["paper_n_assumed"] else "")


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
    return " / ".join("not attainable" if math.isinf(v) else fmt(v, 0) for v in counts)


def _against_table(data: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    m = f"{settings.margin:g}"
    against = pd.DataFrame({
        "setting": data["setting"], "method": data["label"], "ours [95% CI] (runs)": data.apply(ours_cell, axis=1),
        "BCa 95%": [f"[{fmt(lo)}, {fmt(hi)}]" if np.isfinite(lo) else "" for lo, hi in zip(data["boot_low"], data["boot_high"])],
        "realised noise": data["realised_noise_rate"].map(lambda v: fmt(v, 3)),
        "paper": data.apply(paper_cell, axis=1), "test": data.apply(_test_cell, axis=1),
        "Δ [90% CI]": [f"{fmt(d)} [{fmt(lo)}, {fmt(hi)}]" if np.isfinite(lo) else fmt(d)
                       for d, lo, hi in zip(data["diff"], data["ci90_low"], data["ci90_high"])],
        "equivalent within": data["bound"].map(lambda b: f"±{fmt(b)}" if np.isfinite(b) else ""),
        f"P(|δ| < {m})": data["p_within"].map(fmt),
        "p (Holm)": data["p_holm"].map(fmt_p), "TOST p (Holm)": data["p_tost_holm"].map(fmt_p),
        "verdict": data.apply(_verdict_cell, axis=1),
        "n_p = 2 / 5 / ∞": data.apply(_robust_cell, axis=1),
        f"seeds for equivalence (δ = 0 / {settings.margin / 2:g})": data.apply(_seeds_cell, axis=1),
    })
    drop = [c for c in ("BCa 95%", "n_p = 2 / 5 / ∞") if not against[c].astype(bool).any()]
    return against.drop(columns=drop)


def _sd_text(frame: pd.DataFrame, key: str) -> list[str]:
    """σ with its interval from the variance columns ``key``, ``key_low``, ``key_high``."""
    return [f"{fmt(sd(v), 3)} [{fmt(sd(lo), 3)}, {fmt(sd(hi), 3)}]"
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
                f"{fmt(v)} [{fmt(lo)}, {fmt(hi)}]" for v, lo, hi in
                zip(crossed["draw_share"], crossed["draw_share_low"], crossed["draw_share_high"])],
            "fixed-draw std understates by [95% CI]": [
                f"×{fmt(v)} [{fmt(lo)}, {fmt(hi)}]" for v, lo, hi in
                zip(crossed["understatement"], crossed["understatement_low"], crossed["understatement_high"])],
            "SE of the mean": crossed["se"].map(lambda v: fmt(v, 3)), "df (Satterthwaite)": crossed["df"].map(lambda v: fmt(v, 1)),
        })
        approx = " (≈: unbalanced, I0 in place of I)" if crossed["components_approximate"].fillna(False).any() else ""
        lines += ["Crossed cells (J draws x I seeds; one-way random-effects ANOVA, method of moments; "
                  "SE² = σ²_draw/J + σ²_train/(IJ)). The draw's share is σ²_draw / (σ²_draw + σ²_train); "
                  "a std over seeds at one fixed draw, as a paper reports it, understates the std of runs on "
                  "other draws by 1/sqrt(1 − share). Intervals: σ_train chi-square, the share F (exact when "
                  f"balanced), σ_draw modified large-sample{approx}:", "", markdown_table(shown), ""]
    return lines


def _pairs_table(group: pd.DataFrame) -> pd.DataFrame:
    sign = group["sign_shown"].all()
    shown = pd.DataFrame({
        "a": group["a"], "b": group["b"], "pairs": group["n"].astype(str),
        "mean a − b [95% CI]": [f"{fmt(d)} [{fmt(lo)}, {fmt(hi)}]" if n >= 2 else f"{fmt(d)} {DAGGER}"
                                for d, lo, hi, n in zip(group["mean_diff"], group["ci_low"], group["ci_high"], group["n"])],
        "t-test p (Holm)": group["p_t_holm"].map(fmt_p),
    })
    if sign:
        shown["sign count (exact p)"] = [f"a > b in {w} of {n} seeds ({fmt_p(p)})"
                                         for w, n, p in zip(group["wins"], group["n"], group["p_sign"])]
    else:
        shown["Wilcoxon p (Holm)"] = group["p_wilcoxon_holm"].map(fmt_p)
    shown["P(a > b) paired [95% CP]"] = [f"{fmt(r)} [{fmt(lo)}, {fmt(hi)}]" if np.isfinite(r) else ""
                                         for r, lo, hi in zip(group["win_rate"], group["win_low"], group["win_high"])]
    return shown


PAIRS_TEXT = ("The mean difference, its interval and the t-test pair the runs of a and b by (seed, noise draw). "
              "Where the exact Wilcoxon test cannot reach the Holm level at this many pairs (its smallest p, "
              "2/2^n, is 0.0625 at n = 5), the sign count is shown instead, with its unadjusted exact p (which "
              "cannot go below the same 2/2^n: a count to read, not a test that could reject). P(a > b) is the "
              "paired win rate (ties count one half) with a Clopper-Pearson interval.")


def dataset_section(dataset: str, summary: pd.DataFrame, pairs: pd.DataFrame, settings: Settings,
                     figures: dict[str, Path], drops: pd.DataFrame | None = None,
                     collapsed: pd.DataFrame | None = None) -> list[str]:
    """The sections of one dataset: its table of cells, the draw design, the tests against the
    paper, the class drops and collapses, the methods compared per cell and the curve figures."""
    data = summary[summary["dataset"] == dataset].copy()
    data["setting"] = setting_names(data)
    settings_order = list(dict.fromkeys(data["setting"]))
    matrix = data.assign(cell=data.apply(ours_cell, axis=1)).pivot(index="label", columns="setting", values="cell")
    matrix = matrix.reindex(columns=settings_order).fillna("").reset_index().rename(columns={"label": "method"})
    lines = [f"## {dataset}", "", "Mean test accuracy (%) [95% t-interval] (runs):", "", markdown_table(matrix), ""]
    lines += _design_lines(data)
    against = _against_table(data, settings)
    if not data["paper_mean"].notna().any():  # no paper number here: keep our own columns
        against = against[[c for c in against.columns if c in ("setting", "method", "ours [95% CI] (runs)",
                                                               "BCa 95%", "realised noise")]]
        lines += ["### Intervals (no paper number for this table)", "", markdown_table(against), ""]
    else:
        lines += ["### Against the paper", "", markdown_table(against), ""]
        lines += _attainable_lines(data, settings)
    if drops is not None:
        lines += _drops_section(drops[drops["dataset"] == dataset])
    if collapsed is not None:
        lines += _collapse_section(collapsed[collapsed["dataset"] == dataset])
    cell_pairs = pairs[pairs["dataset"] == dataset] if not pairs.empty else pairs
    if not cell_pairs.empty:
        lines += ["### Methods compared within each cell (paired by seed)", "", PAIRS_TEXT, ""]
        for cell, group in cell_pairs.groupby(CELL[1:], dropna=False, sort=True):
            lines += [f"**{setting_name(*cell)}**", "", markdown_table(_pairs_table(group)), ""]
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
