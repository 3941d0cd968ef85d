"""``noise_draw_mnist``: how much of a reproduction gap can the noise draw explain?

Per (setting, method) cell of J of the suite's draws crossed with I training seeds: sigma_draw
and sigma_train with their intervals (:func:`bench.stats.variance_components`), the draw's
share of a run's variance, by how much a std over seeds at one fixed draw (what a paper reports)
understates the spread on other draws, and the gap between two single-draw means that the draw
alone makes (:func:`bench.stats.draw_gap`: 95% of draw pairs, and the draw's part of the
variance of a gap between two 5-seed means). Where the grid also trained on the official code's
own noisy labels, that draw's mean is set against the suite's draws: its distance from their
grand mean, and the range in which one more draw's mean over as many seeds would fall.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats as sps

from bench import papers, question_figures, stats
from bench.reporting.failures import dropped_classes
from bench.reporting.text import sd
from bench.questions.common import Context, Question, fmt, fmt_p, mean_ci, p_text, settings, table

GAP_SEEDS = 5        # seeds behind each of the two means of a reproduction gap (the papers' usual n)
ALPHA = 0.05
SUITE = "suite"


def _draw_of(runs: pd.DataFrame) -> pd.Series:
    """Each run's sampler: ``suite`` for the suite's own draw, else the official one's name."""
    if "noise_draw" not in runs:
        return pd.Series(SUITE, index=runs.index, dtype=object)
    return runs["noise_draw"].fillna(SUITE).astype(str)


def _interval(value: float, low: float, high: float, digits: int = 2, prefix: str = "") -> str:
    return f"{prefix}{fmt(value, digits)} [{fmt(low, digits)}, {fmt(high, digits)}]"


def _paper_number(g: pd.DataFrame, numbers: pd.DataFrame) -> tuple[float, str]:
    """(the paper's number in ``numbers`` for the cell of runs ``g``, its provenance); NaN and ""
    without one."""
    first = g.iloc[0]
    reference = first.get("reference") if isinstance(first.get("reference"), dict) else {}
    paper = reference.get("paper")
    if not paper:
        return math.nan, ""
    row = papers.lookup(numbers, paper=paper, dataset=first["dataset"],
                        noise_type=first["noise_type"], noise_rate=first["noise_rate"],
                        method=first["method"], protocol=reference.get("protocol") or "last10",
                        table=reference.get("table"))
    return (math.nan, "") if row is None else (float(row["mean"]), str(row["provenance"]))


def _cells(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (setting, method) of the suite's draws: components, gap, and the cell mean."""
    rows = []
    suite = runs[runs["draw"] == SUITE]
    numbers = papers.load_paper_numbers()
    for (where, method), g in suite.groupby(["setting", "method"], sort=True):
        g = g.dropna(subset=["acc"])
        comp = stats.variance_components(g["acc"].to_numpy(dtype=float), list(g["noise_seed"]))
        gap = stats.draw_gap(comp, seeds=GAP_SEEDS)
        cell = stats.estimate_cell(g["acc"].to_numpy(dtype=float), list(g["noise_seed"]))
        paper, provenance = _paper_number(g, numbers)
        rows.append({"setting": where, "method": method, "draws": comp.n_draws, "runs": len(g),
                     "runs_per_draw": comp.runs_per_draw, "comp": comp, "gap": gap, "cell": cell,
                     "paper": paper, "provenance": provenance})
    return pd.DataFrame(rows, columns=["setting", "method", "draws", "runs", "runs_per_draw", "comp",
                                       "gap", "cell", "paper", "provenance"])


def _official(runs: pd.DataFrame, cells: pd.DataFrame) -> list[dict]:
    """The official draw's runs of each cell against the suite's draws of the same cell."""
    out = []
    official = runs[runs["draw"] != SUITE].dropna(subset=["acc"])
    for (where, method, draw), g in official.groupby(["setting", "method", "draw"], sort=True):
        match = cells[(cells["setting"] == where) & (cells["method"] == method)]
        x = g["acc"].to_numpy(dtype=float)
        drops = sum(bool(dropped_classes(m)[0]) for m in g["metrics"]) if "metrics" in g else 0
        row = {"setting": where, "method": method, "draw": draw, "n": x.size, "mean": float(x.mean()),
               "text": mean_ci(x), "diff": math.nan, "range": math.nan, "inside": None, "drops": drops}
        if not match.empty:
            comp, cell = match.iloc[0]["comp"], match.iloc[0]["cell"]
            # one more draw's mean over n seeds, around the suite's grand mean: its variance is
            # sigma2_draw + sigma2_train / n, plus the grand mean's own SE^2 (plug-in, normal)
            var = comp.s2_draw + comp.s2_train / x.size + cell.se ** 2
            if np.isfinite(var):
                row["diff"] = float(x.mean()) - cell.mean
                row["range"] = float(sps.norm.ppf(0.975)) * math.sqrt(var)
                row["inside"] = bool(abs(row["diff"]) <= row["range"])
        out.append(row)
    return out


def _detected(r: pd.Series) -> str:
    """The verdict on sigma2_draw = 0 of a crossed cell, from its Holm-adjusted F-test."""
    c = r["comp"]
    if not np.isfinite(r["p_holm"]):
        return "not tested"
    if r["p_holm"] < ALPHA:
        return f"a draw effect (F-test Holm {p_text(r['p_holm'])})"
    return (f"no draw effect detected (F-test Holm {p_text(r['p_holm'])}; σ_draw at most "
            f"{fmt(sd(c.s2_draw_high))} at 95%)")


def _cell_clause(r: pd.Series) -> str:
    c, g = r["comp"], r["gap"]
    return (f"- {r['method']} at {r['setting']} ({r['draws']} draws, {r['runs']} runs): {_detected(r)}; "
            f"σ_draw {_interval(sd(c.s2_draw), sd(c.s2_draw_low), sd(c.s2_draw_high))} against σ_train "
            f"{_interval(sd(c.s2_train), sd(c.s2_train_low), sd(c.s2_train_high))}; the draw alone "
            f"±{_interval(g.draw_half_width, g.draw_half_width_low, g.draw_half_width_high)} points, "
            f"{_interval(100 * g.fraction, 100 * g.fraction_low, 100 * g.fraction_high, 0)}% of the variance "
            f"of a gap between two {GAP_SEEDS}-seed means; a fixed-draw std understates by "
            f"{_interval(c.understatement, c.understatement_low, c.understatement_high, prefix='×')}")


def _answer(crossed: pd.DataFrame, official: list[dict]) -> list[str]:
    if crossed.empty:
        return ["**Answer:** not yet: no cell has two or more of the suite's draws with several seeds "
                "each.", ""]
    widest = crossed.loc[crossed["gap"].map(lambda g: g.draw_half_width).idxmax()]
    most = crossed.loc[crossed["comp"].map(lambda c: c.understatement).idxmax()]
    g, c = widest["gap"], most["comp"]
    found = int((crossed["p_holm"] < ALPHA).sum())
    text = (f"**Answer:** the noise draw's own variance is detected in {found} of {len(crossed)} "
            f"crossed cell(s) (one-way ANOVA F-test, Holm); between two {GAP_SEEDS}-seed means on "
            f"different noise draws (a paper's and a re-implementation's), the draw alone makes gaps "
            f"of up to ±{_interval(g.draw_half_width, g.draw_half_width_low, g.draw_half_width_high)} "
            f"points (95% of draw pairs; the widest cell, {widest['method']} at {widest['setting']}), "
            f"and a std over seeds at one fixed draw understates the spread on other draws by up to "
            f"{_interval(c.understatement, c.understatement_low, c.understatement_high, prefix='×')} "
            f"({most['method']} at {most['setting']})")
    judged = [o for o in official if o["inside"] is not None]
    if judged:
        inside = sum(o["inside"] for o in judged)
        text += (f"; the official code's own draw lies inside the range of one more of the suite's "
                 f"draws in {inside} of {len(judged)} cell(s)")
        outside = [f"{o['method']} at {o['setting']}, {fmt(o['diff'])} against ±{fmt(o['range'])}, "
                   f"{o['drops']} of its {o['n']} runs dropping a class" for o in judged if not o["inside"]]
        if outside:
            text += f" (outside: {'; '.join(outside)})"
    return [text + ".", "", *(_cell_clause(r) for _, r in crossed.iterrows()), ""]


def _components_table(cells: pd.DataFrame) -> list[str]:
    rows = []
    for _, r in cells.iterrows():  # crossed cells only
        c, g = r["comp"], r["gap"]
        rows.append((r["setting"], r["method"], f"{r['draws']} x {r['runs_per_draw']:.3g}",
                     fmt_p(c.p_draw), fmt_p(r["p_holm"]),
                     _interval(sd(c.s2_draw), sd(c.s2_draw_low), sd(c.s2_draw_high), 3),
                     _interval(sd(c.s2_train), sd(c.s2_train_low), sd(c.s2_train_high), 3),
                     _interval(c.share, c.share_low, c.share_high),
                     _interval(c.understatement, c.understatement_low, c.understatement_high, prefix="×"),
                     _interval(g.draw_half_width, g.draw_half_width_low, g.draw_half_width_high, prefix="±"),
                     f"±{fmt(g.half_width)}",
                     _interval(100 * g.fraction, 100 * g.fraction_low, 100 * g.fraction_high, 0),
                     _paper_gap(r)))
    approx = cells["comp"].map(lambda c: c.approximate).any()
    return ["Per cell of the suite's draws (J draws x I seeds per draw; one-way random-effects ANOVA, "
            "whose F-test of σ²_draw = 0 is Holm-adjusted across the cells; 95% intervals: σ_train "
            "chi-square, the share F, σ_draw modified large-sample"
            + (", ≈ with I0 in place of I where unbalanced" if approx else "") + "). The share is "
            "σ²_draw / (σ²_draw + σ²_train); a std over seeds at one fixed draw understates the std on "
            "other draws by 1/sqrt(1 − share). Between two means on different draws, each over "
            f"{GAP_SEEDS} seeds: the draw alone makes ±1.96·√2·σ_draw (95% of draw pairs), draw and "
            f"training together ±1.96·√(2σ²_draw + 2σ²_train/{GAP_SEEDS}), of whose variance the draw "
            "makes the next column. The last sets the gap to the paper's number (the mean over the "
            "suite's draws less the paper's) beside them; its test, with the paper's SE and the "
            "draw's variance, is the report's table against the paper.", "",
            *table(["setting", "method", "draws x seeds", "F-test p (σ_draw = 0)", "Holm p", "σ_draw",
                    "σ_train", "draw's share",
                    "fixed-draw std understates by", "gap from the draw alone",
                    f"whole gap at {GAP_SEEDS} seeds", "draw's % of the gap variance",
                    "ours − paper (paper's number)"], rows)]


def _paper_gap(r: pd.Series) -> str:
    if not np.isfinite(r["paper"]):
        return "no paper number"
    return f"{fmt(r['cell'].mean - r['paper'])} ({fmt(r['paper'])}, {r['provenance']})"


def _official_table(official: list[dict]) -> list[str]:
    if not official:
        return ["No run on the official code's draw yet.", ""]
    rows = [(o["setting"], o["method"], o["draw"], o["text"], fmt(o["diff"]),
             f"±{fmt(o['range'])}" if np.isfinite(o["range"]) else "n/a",
             {True: "inside", False: "outside", None: "n/a"}[o["inside"]], f"{o['drops']} of {o['n']}")
            for o in official]
    return ["The official code's own noisy labels (one draw, the one the paper's numbers were measured "
            "on) against the suite's draws of the same cell: the difference to their grand mean, and "
            "the 95% range in which one more draw's mean over as many seeds would fall (σ²_draw + "
            "σ²_train / n + the grand mean's SE², plug-in, normal), and its runs whose selection dropped "
            "a whole class (the report's table of dropped classes), which a normal range does not "
            "model.", "",
            *table(["setting", "method", "draw", "accuracy (%) [95% CI] (seeds)",
                    "− suite draws' mean", "one more draw within", "the official draw is",
                    "runs dropping a class"], rows)]


def _body(ctx: Context, acc: pd.Series) -> list[str]:
    runs = ctx.runs.assign(acc=acc, setting=settings(ctx.runs), draw=_draw_of(ctx.runs))
    cells = _cells(runs)
    official = _official(runs, cells)
    split = cells["comp"].map(lambda c: bool(np.isfinite(c.share))) if not cells.empty else pd.Series(dtype=bool)
    crossed, waiting = cells[split], cells[~split]
    crossed = crossed.assign(p_holm=stats.holm(crossed["comp"].map(lambda c: c.p_draw).to_numpy(dtype=float))
                             if not crossed.empty else [])
    lines = _answer(crossed, official)
    if not crossed.empty:
        lines += _components_table(crossed)
    if not waiting.empty:
        lines += ["Not yet crossed (no draw with two seeds, or fewer than two draws): " + ", ".join(
            f"{r['method']} at {r['setting']} ({r['runs']} run(s) on {r['draws']} draw(s))"
            for _, r in waiting.iterrows()) + ".", ""]
    lines += _official_table(official)
    paper = {(r["setting"], r["method"]): r["paper"] for _, r in cells.iterrows() if np.isfinite(r["paper"])}
    return lines + ctx.figure(question_figures.accuracy_by_draw, runs, "question_noise_draw.png",
                              "each run's accuracy per noise draw, per cell", paper=paper)


QUESTION = Question(
    "How much of a reproduction gap can the noise draw explain?",
    "A re-implementation misses a paper's number by some points: how much of such a gap can the noise "
    "draw alone explain, and by how much does a std over seeds at one fixed draw (what the papers "
    "report) understate the spread a re-implementer will see?", "last10", _body)
