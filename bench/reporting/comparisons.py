"""Methods against each other: every pair of labels within a cell, paired by (seed, noise draw)
and Holm-adjusted within the cell, and Friedman / Iman-Davenport / ranks over the cells where
every label ran."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pandas as pd

from bench import stats
from bench.reporting.records import CELL
from bench.reporting.summary import Settings


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
    """Friedman / Iman-Davenport and ranks of the labels over the cells where every one ran."""
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
