"""The sections of a report about the whole grid: how to read it, where the runs trained, the
methods ranked across cells, the variants of one paper method, and the paper's claims."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from bench import stats
from bench.reporting.comparisons import Across
from bench.reporting.records import CELL
from bench.reporting.summary import PAPER_METHOD, Settings
from bench.reporting.text import DAGGER, fmt, p_relation, setting_name
from bench.tables import markdown_table


def tested_cd(fr: stats.FriedmanResult) -> float:
    """The Nemenyi critical difference where the Friedman test ran on enough cells, else NaN:
    without the omnibus test, or with fewer than ``stats.MIN_CD_CELLS`` cells to rank on, the CD
    means nothing, so it is neither printed nor drawn."""
    return fr.cd if np.isfinite(fr.statistic) and fr.enough_cells else math.nan


def across_section(across: Across, settings: Settings, figures: dict) -> list[str]:
    """The "Across cells" section: Friedman and Iman-Davenport, average ranks, the critical
    difference where there are enough cells, and the figures across cells."""
    lines = ["## Across cells", ""]
    fr = across.friedman
    if fr is None:
        lines += ["Fewer than two methods or no cell where every method ran: no ranking.", ""]
    else:
        if np.isfinite(fr.statistic):
            test = (f"Friedman χ² = {fmt(fr.statistic)}, p {p_relation(fr.p_value)}; Iman-Davenport F({fr.df1:g}, "
                    f"{fr.df2:g}) = {fmt(fr.f_statistic)}, p {p_relation(fr.f_p_value)}; {fr.n_cells} cells, {fr.k} methods.")
            if np.isfinite(tested_cd(fr)):
                test += f" Nemenyi critical difference (α = {settings.alpha:g}) = {fmt(fr.cd)} ranks."
            else:
                test += (f" No critical difference: {fr.n_cells} cells are too few to rank methods on "
                         f"(at least {stats.MIN_CD_CELLS}); the ranks below describe these cells only.")
        else:
            test = f"Friedman test not run ({fr.note}); {fr.n_cells} cells, {fr.k} methods."
        lines += [test, ""]
        ranks = pd.DataFrame({"method": across.labels, "average rank": [fmt(r) for r in fr.ranks]})
        lines += [markdown_table(ranks.iloc[np.argsort(fr.ranks)]), ""]
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
