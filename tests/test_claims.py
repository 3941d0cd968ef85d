"""The claims registry loads and agrees with the paper numbers; the evaluator judges claims right."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.multitest import multipletests

from bench.claims import HOLDS, NO_RUNS, NOT_SHOWN, OUTCOMES, REVERSED, claims_markdown, evaluate_claims
from bench.papers import CLAIM_COLUMNS, PROVENANCES, load_claims, load_paper_numbers, lookup

SUITE_METHODS = {"standard", "f_correction", "decoupling", "coteaching", "coteaching_plus", "jocor", "mentornet",
                 "dividemix", "rsl", "rsl_wm", "self_learning"}


@pytest.fixture(scope="module")
def claims() -> pd.DataFrame:
    return load_claims()


def test_registry_loads(claims: pd.DataFrame) -> None:
    assert list(claims.columns) == list(CLAIM_COLUMNS)
    assert len(claims) > 100
    assert set(claims["better"]) | set(claims["worse"]) <= SUITE_METHODS
    assert not claims.duplicated(["paper", "table", "dataset", "noise_type", "noise_rate", "better", "worse",
                                  "protocol"]).any()
    assert claims.apply(lambda r: r["table"] in r["source"], axis=1).all()


def test_claims_agree_with_the_paper_numbers(claims: pd.DataFrame) -> None:
    papers = load_paper_numbers()
    rank = {p: i for i, p in enumerate(PROVENANCES)}
    checked = 0
    for _, c in claims.iterrows():
        rate = None if math.isnan(c["noise_rate"]) else c["noise_rate"]
        kw = dict(paper=c["paper"], dataset=c["dataset"], noise_type=c["noise_type"], noise_rate=rate,
                  protocol=c["protocol"], table=c["table"])
        hi, lo = lookup(papers, method=c["better"], **kw), lookup(papers, method=c["worse"], **kw)
        if hi is None or lo is None:
            continue
        assert hi["mean"] > lo["mean"], c.to_dict()
        assert c["provenance"] == max(hi["provenance"], lo["provenance"], key=rank.get), c.to_dict()
        checked += 1
    assert checked == len(claims) - 1  # the one exception: JoCoR MNIST Co-teaching asym-40, "90.??"


def test_jocor_mnist_claims(claims: pd.DataFrame) -> None:
    mnist = claims[(claims["paper"] == "jocor") & (claims["dataset"] == "mnist")]
    got = set(zip(mnist["noise_type"], mnist["noise_rate"], mnist["better"], mnist["worse"]))
    settings = [("symmetric", 0.2), ("symmetric", 0.5), ("symmetric", 0.8), ("asymmetric", 0.4)]
    baselines = ["standard", "f_correction", "decoupling", "coteaching", "coteaching_plus"]
    assert got == {(t, r, "jocor", b) for t, r in settings for b in baselines}
    unreadable = mnist[(mnist["worse"] == "coteaching") & (mnist["noise_type"] == "asymmetric")].iloc[0]
    assert "90.??" in unreadable["source"] and unreadable["provenance"] == "recalled"
    # The textual claim of the JoCoR issue tracker: Co-teaching+ far below Co-teaching at CIFAR-10 sym-50.
    text = claims[(claims["better"] == "coteaching") & (claims["worse"] == "coteaching_plus")
                  & (claims["paper"] == "jocor")]
    assert len(text) == 1 and "issue #7" in text.iloc[0]["source"]


HEADER = ",".join(CLAIM_COLUMNS) + "\n"
GOOD = "jocor,Table 2,mnist,symmetric,0.8,jocor,coteaching_plus,last10,recalled,JoCoR Table 2,\n"


def test_validation_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "claims.csv"
    path.write_text(HEADER + GOOD)
    assert len(load_claims(path)) == 1
    cases = {
        GOOD.replace("recalled", "remembered"): "provenance 'remembered' is not one of",
        GOOD.replace("last10", "final"): "protocol 'final' is not one of",
        GOOD.replace("0.8", "80"): "noise_rate 80.0 is outside [0, 1]",
        GOOD.replace("0.8", "high"): "noise_rate 'high' is not a number",
        GOOD.replace("jocor,coteaching_plus", "jocor,jocor"): "better and worse are both 'jocor'",
        GOOD.replace("JoCoR Table 2", ""): "source is empty",
    }
    for bad, words in cases.items():
        path.write_text(HEADER + GOOD + bad)
        with pytest.raises(ValueError, match=r"claims.csv: line 3: " + re.escape(words)):
            load_claims(path)
    path.write_text(HEADER.replace(",source", "") + "x\n")
    with pytest.raises(ValueError, match="line 1: missing columns source"):
        load_claims(path)


# --------------------------------------------------------------------------------------------
# The evaluator
# --------------------------------------------------------------------------------------------


def _claim(better: str, worse: str, *, table: str = "Table 2", rate: float = 0.5) -> dict:
    return dict(paper="jocor", table=table, dataset="mnist", noise_type="symmetric", noise_rate=rate,
                better=better, worse=worse, protocol="last10", provenance="recalled", source=table, note="")


def _runs(method: str, acc, *, rate: float = 0.5, seeds=None, noise_seeds=None) -> pd.DataFrame:
    acc = np.asarray(acc, dtype=float)
    seeds = np.arange(1, acc.size + 1) if seeds is None else seeds
    noise_seeds = np.zeros(acc.size, dtype=int) if noise_seeds is None else noise_seeds
    return pd.DataFrame(dict(method=method, dataset="mnist", noise_type="symmetric", noise_rate=rate,
                             seed=seeds, noise_seed=noise_seeds, acc=acc))


def test_outcomes_on_hand_made_runs() -> None:
    rng = np.random.default_rng(1)
    base = 90 + rng.normal(0, 1, 5)
    runs = pd.concat([
        _runs("a", base + 3 + rng.normal(0, 0.1, 5)),
        _runs("b", base),
        _runs("c", base + rng.normal(0, 1, 5)),
        _runs("d", [80.0]),
    ])
    claims = pd.DataFrame([_claim("a", "b"), _claim("b", "a", table="T2"), _claim("c", "b", table="T3"),
                           _claim("a", "z", table="T4"), _claim("a", "d", table="T5"),
                           _claim("a", "b", table="T6", rate=0.2)])
    out = evaluate_claims(claims, runs)
    assert list(out["outcome"]) == [HOLDS, REVERSED, NOT_SHOWN, NO_RUNS, NOT_SHOWN, NO_RUNS]
    assert out.loc[0, "n"] == 5 and out.loc[0, "mean_diff"] == pytest.approx(3, abs=0.2)
    assert out.loc[1, "mean_diff"] == pytest.approx(-out.loc[0, "mean_diff"])
    assert out.loc[0, "ci_low"] > 2.5 and out.loc[0, "ci_high"] < 3.5
    assert out.loc[3, "reason"] == "no runs of z"
    assert out.loc[4, "reason"] == "1 shared (seed, noise_seed): not tested" and math.isnan(out.loc[4, "p_value"])
    assert set(out["outcome"]) <= set(OUTCOMES)


def test_pairs_by_seed_and_noise_seed() -> None:
    # A large per-seed effect shared by both methods: only the paired test sees the +1 gap.
    shared = np.array([60.0, 70.0, 80.0, 90.0, 95.0])
    gap = np.array([1.0, 1.1, 0.9, 1.05, 0.95])
    runs = pd.concat([_runs("a", (shared + gap)[::-1], seeds=np.arange(5, 0, -1)), _runs("b", shared)])
    out = evaluate_claims(pd.DataFrame([_claim("a", "b")]), runs)
    assert out.loc[0, "outcome"] == HOLDS and out.loc[0, "mean_diff"] == pytest.approx(gap.mean())
    # Same seeds but other noise draws: nothing to pair.
    runs = pd.concat([_runs("a", shared + gap, noise_seeds=np.ones(5, dtype=int)), _runs("b", shared)])
    out = evaluate_claims(pd.DataFrame([_claim("a", "b")]), runs)
    assert out.loc[0, "outcome"] == NOT_SHOWN and out.loc[0, "n"] == 0
    # Two runs of one method on one (seed, noise_seed) are not paired silently.
    runs = pd.concat([_runs("a", shared + gap), _runs("a", shared), _runs("b", shared)])
    out = evaluate_claims(pd.DataFrame([_claim("a", "b")]), runs)
    assert out.loc[0, "outcome"] == NOT_SHOWN and "share a (seed, noise_seed)" in out.loc[0, "reason"]


def test_variants_and_labels_are_not_the_method() -> None:
    shared = np.array([60.0, 70.0, 80.0, 90.0, 95.0])
    a = _runs("a", shared + 2).assign(label="a", noise_variant="")
    a_variant = _runs("a", shared - 5).assign(label="a_lambda0.5", noise_variant="")
    b = _runs("b", shared + 0.01 * np.arange(5)).assign(label="b", noise_variant="")
    b_other_noise = _runs("b", shared - 9).assign(label="b", noise_variant="estimated_t")
    out = evaluate_claims(pd.DataFrame([_claim("a", "b")]), pd.concat([a, a_variant, b, b_other_noise]))
    assert out.loc[0, "outcome"] == HOLDS and out.loc[0, "n"] == 5


def test_holm_within_a_table_only() -> None:
    rng = np.random.default_rng(3)
    base = 90 + rng.normal(0, 1, 6)
    runs = pd.concat([_runs(m, base + shift + rng.normal(0, 0.5, 6)) for m, shift in
                      (("a", 0.8), ("b", 0.0), ("c", 0.5), ("d", 0.3))])
    claims = pd.DataFrame([_claim("a", "b"), _claim("c", "b"), _claim("d", "b", table="Table 3")])
    out = evaluate_claims(claims, runs)
    expected = multipletests(out.loc[:1, "p_value"], method="holm")[1]
    np.testing.assert_allclose(out.loc[:1, "p_holm"], expected)
    assert out.loc[2, "p_holm"] == pytest.approx(out.loc[2, "p_value"])


def _simulate(gap: float, n_sim: int, rng: np.random.Generator, n_seeds: int = 5) -> pd.Series:
    """``n_sim`` claims a > b, each in its own table, with a shared per-seed effect and a true ``gap``."""
    shared = 80 + rng.normal(0, 2, (n_sim, 1))
    acc_a, acc_b = shared + gap + rng.normal(0, 1, (n_sim, n_seeds)), shared + rng.normal(0, 1, (n_sim, n_seeds))
    names = np.arange(n_sim).repeat(n_seeds)
    seeds = np.tile(np.arange(1, n_seeds + 1), n_sim)
    runs = pd.concat([_runs("x", acc.ravel(), seeds=seeds).assign(method=[f"{m}{i}" for i in names])
                      for m, acc in (("a", acc_a), ("b", acc_b))])
    claims = pd.DataFrame([_claim(f"a{i}", f"b{i}", table=f"T{i}") for i in range(n_sim)])
    return evaluate_claims(claims, runs)["outcome"]


@pytest.mark.parametrize("n_sim, tol", [(600, 0.03), pytest.param(2000, 0.015, marks=pytest.mark.slow)])
def test_simulated_error_rate_and_power(n_sim: int, tol: float) -> None:
    """At no true gap a claim is judged (holds or reversed) alpha of the time, each way half of it."""
    rng = np.random.default_rng(7)
    null = _simulate(0.0, n_sim, rng)
    judged = null.isin([HOLDS, REVERSED]).mean()
    assert abs(judged - 0.05) <= tol, judged  # tol ~3.4 binomial sds
    assert abs((null == HOLDS).mean() - (null == REVERSED).mean()) <= tol
    # A gap of 3 paired-difference sds at 5 seeds: the t-test's power is above 0.97.
    assert (_simulate(3 * math.sqrt(2), 200, rng) == HOLDS).mean() > 0.93


def test_markdown_section() -> None:
    runs = pd.concat([_runs("a", [91, 92, 93, 94.0]), _runs("b", [90, 90.5, 91.2, 92.1])])
    claims = pd.DataFrame([_claim("a", "b"), _claim("a", "b", table="Table 3", rate=0.8)])
    lines = claims_markdown(evaluate_claims(claims, runs))
    assert lines[0] == "## Claims of the paper"
    text = "\n".join(lines)
    assert "`recalled`" in text and "(seed, noise_seed)" in text
    assert "2 claims: holds 1, reversed 0, not shown 0, no runs 1." in text
    table = [line for line in lines if line.startswith("| Table")]
    assert len(table) == 1 and table[0].startswith("| Table 2 | mnist symmetric 50% | a > b | recalled | 4 | +")
    assert table[0].endswith("| holds |")
    # p-values as every other table writes them: three decimals, "<0.001" below that
    assert re.fullmatch(r"<0\.001|0\.\d{3}", table[0].split("|")[7].strip()), table[0]
    assert "- No runs for 1 claims of jocor Table 3: mnist symmetric 80%." in lines
    empty = claims_markdown(evaluate_claims(claims.iloc[:0], runs))
    assert empty[:2] == ["## Claims of the paper", ""] and "no claim" in empty[2]


def test_markdown_section_without_a_judged_claim_has_no_empty_table() -> None:
    runs = _runs("a", [91, 92, 93, 94.0])
    lines = claims_markdown(evaluate_claims(pd.DataFrame([_claim("a", "b", rate=0.8)]), runs))
    assert "1 claims: holds 0, reversed 0, not shown 0, no runs 1." in lines
    assert not any(line.startswith("| table |") for line in lines), lines
    assert "- No runs for 1 claims of jocor Table 2: mnist symmetric 80%." in lines
