"""Statistics for benchmark results: intervals, tests against papers, comparisons of methods.

Everything here is a pure function of numpy arrays. Anything random takes an explicit
``numpy.random.Generator`` so that a report is reproducible from its seed. Accuracies are in
percent, so a ``margin`` of 1.0 means one accuracy point.

Conventions:

* one *cell* is a (dataset, noise type, noise rate, noise variant) setting, one *run* is a seed;
* ``x`` of shape ``(n_seeds,)`` holds one accuracy per run of one method in one cell;
* cells with fewer than two runs are described but never tested.

Modules: :mod:`bench.stats.cells` (one method in one cell), :mod:`bench.stats.paper` (against a
paper's number), :mod:`bench.stats.comparisons` (methods against each other) and
:mod:`bench.stats.arms` (the tests a grid's question makes of its own arms: paired, Welch, TOST,
exact sign-flip and Wilcoxon, Holm verdicts, dips, Spearman over cells).
"""

from __future__ import annotations

from bench.stats.cells import (CROSSED, DESIGNS, DRAW_PER_RUN, MIN_BOOT_N, ONE_DRAW, CellEstimate, Description,
                               DrawGap, VarianceComponents, describe, draw_gap, estimate_cell, estimate_from_summary, pd_codes,
                               satterthwaite_df, t_interval, variance_components)
from bench.stats.comparisons import (MIN_CD_CELLS, NEMENYI_Q05, FriedmanResult, PairedComparison, average_ranks,
                                     clopper_pearson, critical_difference, friedman, iman_davenport, iqm,
                                     iqm_interval, nemenyi_q, paired_comparison, probability_of_improvement,
                                     seeds_needed, sign_test)
from bench.stats.paper import (ABOVE, BELOW, HIGHER, INCONCLUSIVE, LOWER, NO_PAPER, POWER, REPRODUCED, SIGMA_UCB,
                               TOO_FEW, VERDICTS, PaperTest, apply_holm, compare_to_paper, holm, paper_se,
                               seeds_for_equivalence, test_against_paper, tost_power, verdict, verdict_text)

__all__ = [
    "Description", "CellEstimate", "VarianceComponents", "DrawGap", "PaperTest", "PairedComparison", "FriedmanResult",
    "VERDICTS", "DESIGNS", "NEMENYI_Q05", "MIN_BOOT_N", "MIN_CD_CELLS",
    "ONE_DRAW", "DRAW_PER_RUN", "CROSSED",
    "REPRODUCED", "LOWER", "HIGHER", "BELOW", "ABOVE", "INCONCLUSIVE", "TOO_FEW", "NO_PAPER", "SIGMA_UCB", "POWER",
    "describe", "t_interval", "estimate_cell", "estimate_from_summary", "satterthwaite_df", "variance_components",
    "draw_gap",
    "pd_codes",
    "compare_to_paper", "test_against_paper", "paper_se", "verdict", "verdict_text", "holm", "apply_holm",
    "tost_power", "seeds_for_equivalence", "paired_comparison", "probability_of_improvement",
    "clopper_pearson", "sign_test", "average_ranks", "friedman", "iman_davenport", "nemenyi_q",
    "critical_difference", "iqm", "iqm_interval", "seeds_needed",
]
