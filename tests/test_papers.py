"""The paper numbers: the CSV loads, validates, and holds what the papers report."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd
import pytest

from bench.papers import (COLUMNS, DEFAULT_N_RUNS, PROTOCOLS, PROVENANCES, STD_OVER, load_paper_numbers, lookup,
                          paper_runs)

KEY = ["paper", "dataset", "noise_type", "noise_rate", "method", "protocol"]


@pytest.fixture(scope="module")
def papers() -> pd.DataFrame:
    return load_paper_numbers()


def _get(df: pd.DataFrame, **kw: object) -> pd.Series:
    row = lookup(df, **kw)
    assert row is not None, kw
    return row


def test_loads_and_validates(papers: pd.DataFrame) -> None:
    assert list(papers.columns) == list(COLUMNS)
    assert len(papers) > 500
    assert set(papers["provenance"]) == set(PROVENANCES)
    assert set(papers["protocol"]) <= set(PROTOCOLS)
    assert papers["mean"].between(0, 100).all()
    for col in ("noise_rate", "mean", "std", "n_runs"):
        assert pd.api.types.is_float_dtype(papers[col]), col
    assert set(papers["paper"]) == {"coteaching", "jocor", "dividemix", "self_learning", "rsl"}
    assert papers.loc[papers["noise_type"] == "human", "noise_rate"].isna().all()
    assert papers.loc[papers["noise_type"] != "human", "noise_rate"].notna().all()


def test_one_number_per_setting_except_readme(papers: pd.DataFrame) -> None:
    dup = papers[papers.duplicated(KEY, keep=False)]
    # Only Co-teaching has a second copy of its own numbers, from its repository README.
    assert set(dup["paper"]) == {"coteaching"}
    assert set(dup["table"]) == {"README", "Table 4", "Table 5", "Table 6"}


@pytest.mark.parametrize(
    "kw, mean, std, provenance",
    [
        (dict(paper="jocor", dataset="cifar10", noise_type="symmetric", noise_rate=0.5, method="jocor",
              protocol="last10"), 79.41, 0.25, "secondary"),
        (dict(paper="dividemix", dataset="cifar10", noise_type="symmetric_inclusive", noise_rate=0.5,
              method="dividemix", protocol="best"), 94.6, math.nan, "secondary"),
        (dict(paper="dividemix", dataset="cifar100", noise_type="symmetric_inclusive", noise_rate=0.8,
              method="dividemix", protocol="last10"), 59.6, math.nan, "recalled"),
        (dict(paper="rsl", dataset="cifar10", noise_type="symmetric_inclusive", noise_rate=0.5,
              method="standard", protocol="clean_val"), 84.85, math.nan, "verified"),
        (dict(paper="rsl", dataset="cifar10", noise_type="asymmetric", noise_rate=0.4, method="rsl_wm",
              protocol="last"), 90.63, math.nan, "verified"),
        (dict(paper="rsl", dataset="cifar100", noise_type="pairflip", noise_rate=0.4, method="truncated_lq",
              protocol="clean_val"), 46.89, math.nan, "verified"),
        (dict(paper="coteaching", dataset="cifar10", noise_type="symmetric", noise_rate=0.5, method="coteaching",
              protocol="last10"), 74.02, 0.04, "secondary"),
        (dict(paper="coteaching", dataset="mnist", noise_type="pairflip", noise_rate=0.45, method="mentornet",
              protocol="last10"), 80.88, 4.45, "recalled"),
        (dict(paper="jocor", dataset="mnist", noise_type="symmetric", noise_rate=0.2, method="standard",
              protocol="last10"), 79.56, 0.44, "recalled"),
        (dict(paper="jocor", dataset="cifar100", noise_type="asymmetric", noise_rate=0.4, method="jocor",
              protocol="last10"), 32.79, 0.35, "secondary"),
        (dict(paper="jocor", dataset="clothing1m", noise_type="human", noise_rate=None, method="jocor",
              protocol="best"), 70.30, math.nan, "secondary"),
        (dict(paper="dividemix", dataset="clothing1m", noise_type="human", noise_rate=None, method="dividemix",
              protocol="best"), 74.76, math.nan, "verified"),
        (dict(paper="self_learning", dataset="clothing1m", noise_type="human", noise_rate=None,
              method="self_learning", protocol="last"), 74.45, math.nan, "verified"),
        (dict(paper="self_learning", dataset="food101n", noise_type="human", noise_rate=None,
              method="self_learning", protocol="last"), 85.11, math.nan, "recalled"),
        (dict(paper="rsl", dataset="webvision", noise_type="human", noise_rate=None, method="rsl_wm",
              protocol="best"), 66.56, math.nan, "verified"),
    ],
)
def test_spot_values(papers: pd.DataFrame, kw: dict, mean: float, std: float, provenance: str) -> None:
    row = _get(papers, **kw)
    assert row["mean"] == pytest.approx(mean)
    assert (math.isnan(row["std"]) and math.isnan(std)) or row["std"] == pytest.approx(std)
    assert row["provenance"] == provenance


def test_notes_record_assumptions(papers: pd.DataFrame) -> None:
    fc = _get(papers, paper="jocor", dataset="cifar10", noise_type="symmetric", noise_rate=0.5,
              method="f_correction", protocol="last10")
    assert fc["mean"] == pytest.approx(42.19) and "42.71" in fc["note"] and fc["provenance"] == "recalled"
    dm = _get(papers, paper="dividemix", dataset="cifar10", noise_type="symmetric_inclusive", noise_rate=0.5,
              method="dividemix", protocol="best")
    assert "45.0% actual noise" in dm["note"]
    jc = _get(papers, paper="jocor", dataset="cifar100", noise_type="asymmetric", noise_rate=0.4,
              method="jocor", protocol="last10")
    assert "32.70" in jc["note"]
    # "90.??" is unreadable: no row
    assert lookup(papers, paper="jocor", dataset="mnist", noise_type="asymmetric", noise_rate=0.4,
                  method="coteaching", protocol="last10") is None


def test_lookup_tolerance_and_misses(papers: pd.DataFrame) -> None:
    kw = dict(paper="JoCoR", dataset="cifar10", noise_type="symmetric", method="jocor", protocol="last10")
    assert _get(papers, noise_rate=0.2 + 1e-9, **kw)["mean"] == pytest.approx(85.73)
    assert lookup(papers, noise_rate=0.25, **kw) is None
    assert lookup(papers, noise_rate=0.2, **{**kw, "protocol": "best"}) is None
    assert lookup(papers, noise_rate=0.2, **{**kw, "paper": ""}) is None


def test_lookup_prefers_the_paper_table_over_readme(papers: pd.DataFrame) -> None:
    kw = dict(paper="coteaching", dataset="cifar100", noise_type="pairflip", noise_rate=0.45,
              method="coteaching", protocol="last10")
    assert _get(papers, **kw)["mean"] == pytest.approx(34.81)
    readme = _get(papers, table="README", **kw)
    assert readme["mean"] == pytest.approx(34.40) and readme["provenance"] == "verified"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "numbers.csv"
    path.write_text(text)
    return path


HEADER = ",".join(COLUMNS) + "\n"
GOOD = "jocor,Table 3,jocor,cifar10,symmetric,0.5,cnn6,last10,79.41,0.25,,runs,secondary,\n"


def test_validation_names_the_line(tmp_path: Path) -> None:
    assert len(load_paper_numbers(_write(tmp_path, HEADER + GOOD))) == 1
    cases = {
        GOOD.replace("secondary", "remembered"): "provenance",
        GOOD.replace("last10", "final"): "protocol",
        GOOD.replace("79.41", "179.41"): "outside [0, 100]",
        GOOD.replace("79.41", "n/a"): "not a number",
        GOOD.replace("jocor,Table 3", ",Table 3"): "paper is empty",
        GOOD.replace(",runs,", ",trials,"): "std_over 'trials' is not one of runs, epochs, unknown",
        GOOD.replace(",runs,", ",,"): "std_over '' is not one of",
        GOOD.replace("0.25,,runs", ",,runs"): "std_over 'runs' is given without a std",
        GOOD.replace("0.25,,runs", "0.25,2.5,runs"): "n_runs 2.5 is not a whole number >= 1",
        GOOD.replace("0.25,,runs", "0.25,0,runs"): "n_runs 0 is not a whole number >= 1",
    }
    for bad, words in cases.items():
        with pytest.raises(ValueError, match=r"line 3: .*" + re.escape(words)):
            load_paper_numbers(_write(tmp_path, HEADER + GOOD + bad))
    with pytest.raises(ValueError, match="missing columns provenance"):
        load_paper_numbers(_write(tmp_path, HEADER.replace(",provenance", "") + "x\n"))


def test_uncertainty_columns(papers: pd.DataFrame) -> None:
    has_std = papers["std"].notna()
    assert set(papers.loc[has_std, "std_over"]) <= set(STD_OVER)
    assert (papers.loc[~has_std, "std_over"] == "").all()
    stated = papers[papers["n_runs"].notna()]
    assert ((stated["n_runs"] >= 1) & (stated["n_runs"] % 1 == 0)).all()
    # Where a source states the run count, the note says where; elsewhere it says what is assumed.
    assert stated["note"].str.contains("issue #1").all()
    assert papers.loc[papers["n_runs"].isna(), "note"].str.contains("assumed").all()
    # The JoCoR and Co-teaching tables give mean ± std over runs (as recalled) with no stated count.
    tables = papers[papers["paper"].isin(["jocor", "coteaching"]) & has_std]
    assert (tables["std_over"] == "runs").all() and tables["n_runs"].isna().all()


def test_paper_runs_stated_or_default(papers: pd.DataFrame) -> None:
    assert set(papers["paper"]) <= set(DEFAULT_N_RUNS)
    dm = _get(papers, paper="dividemix", dataset="clothing1m", noise_type="human", noise_rate=None,
              method="dividemix", protocol="best")
    assert paper_runs(dm) == (1.0, False)
    jc = _get(papers, paper="jocor", dataset="mnist", noise_type="symmetric", noise_rate=0.8, method="jocor",
              protocol="last10")
    assert paper_runs(jc) == (5.0, True)
    rsl = _get(papers, paper="rsl", dataset="cifar10", noise_type="asymmetric", noise_rate=0.4, method="rsl_wm",
               protocol="last")
    assert paper_runs(rsl) == (1.0, True)
    assert paper_runs({"paper": "jocor", "n_runs": 3.0}) == (3.0, False)
    with pytest.raises(ValueError, match="'newpaper' states no run count"):
        paper_runs({"paper": "newpaper", "n_runs": math.nan})
