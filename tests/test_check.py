"""``python -m bench check``: a user's runs against the paper and the suite's records."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from bench import stats
from bench.__main__ import main
from bench.check import CheckError, judge, parse_noise, read_accuracies, summary_sample

JOCOR_C10 = ["check", "--paper", "jocor", "--method", "jocor", "--dataset", "cifar10", "--noise", "symmetric:0.5"]


def _run(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def _table_row(out: str, prefix: str) -> list[str]:
    rows = [line for line in out.splitlines() if line.startswith(f"| {prefix}")]
    assert len(rows) == 1, out
    return [cell.strip() for cell in rows[0].strip("|").split("|")]


def test_summary_sample_has_the_given_mean_std_and_n() -> None:
    x = summary_sample(76.0, 0.8, 5)
    assert x.size == 5 and x.mean() == pytest.approx(76.0) and x.std(ddof=1) == pytest.approx(0.8)
    assert summary_sample(70.0, 0.0, 1).tolist() == [70.0]
    with pytest.raises(CheckError, match="std >= 0"):
        summary_sample(70.0, -1.0, 3)


def test_judge_is_the_suite_test_and_its_90_interval() -> None:
    x = np.array([75.2, 76.1, 76.8, 75.5, 76.4])
    j = judge(x, ref_mean=79.41, ref_std=0.25, ref_n=5.0, n_assumed=True)
    pt = stats.test_against_paper(x, paper_mean=79.41, paper_std=0.25, paper_n=5.0)
    assert (j.test, j.verdict, j.p_value, j.p_tost) == (pt.test, pt.verdict, pt.p_value, pt.p_tost)
    se = math.sqrt(x.var(ddof=1) / 5 + 0.25**2 / 5)
    half = float(sps.t.ppf(0.95, pt.df)) * se
    assert (j.ci_low, j.ci_high) == pytest.approx((pt.diff - half, pt.diff + half))
    one = judge(x, ref_mean=79.41, ref_std=math.nan, ref_n=math.nan)
    assert one.test == "one-sample"
    assert one.ci_high - one.ci_low == pytest.approx(2 * float(sps.t.ppf(0.95, 4)) * x.std(ddof=1) / math.sqrt(5))


def test_mean_std_n_against_the_paper(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    # The "cannot reproduce" case of the JoCoR tracker: 76% against the paper's 79.41 ± 0.25.
    rc, out, err = _run(JOCOR_C10 + ["--mean", "76.0", "--std", "0.8", "--n", "5", "--results", str(tmp_path)], capsys)
    assert rc == 0 and err == ""
    row = _table_row(out, "paper")
    assert row[:6] == ["paper, Table 3", "79.41 ± 0.25", "secondary", "5 (assumed)", "welch", "-3.41"]
    assert row[7] == "below"
    assert "n = 5 is assumed" in out and "no records of this setting" in out


def test_csv_equals_its_summary_and_meets_the_records(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    acc = [84.9, 85.3, 84.7, 85.6, 85.0]
    path = tmp_path / "runs.csv"
    path.write_text("seed,acc\n" + "".join(f"{i},{a}\n" for i, a in enumerate(acc, 1)))
    results = tmp_path / "results"
    (results / "mygrid").mkdir(parents=True)
    ours = [85.1, 85.4, 84.8, 85.2, 85.5]
    for seed, a in enumerate(ours, 1):
        metrics = {"epoch": [1], "test_acc": [a], "test_acc_networks": {}, "train_loss": [0.5],
                   "selected_count": [None], "label_precision": [None], "label_recall": [None],
                   "selected_per_class": [None], "extra": {}}
        record = dict(schema_version=1, run_id=f"r{seed}", grid="mygrid", label="jocor", method="jocor",
                      method_params={}, dataset="mnist", network="mlp", noise_type="symmetric", noise_rate=0.8,
                      noise_variant=None, noise_seed=0, seed=seed, epochs=2, train={},
                      reference={"paper": "jocor", "protocol": "last10"}, realised_noise_rate=0.8,
                      transition_matrix=None, metrics=metrics, test_acc_last=a, test_acc_best=a,
                      test_acc_last10=a, wall_seconds=1.0, device="cpu", env={}, status="ok", error=None)
        (results / "mygrid" / f"r{seed}.json").write_text(json.dumps(record))
    base = ["check", "--paper", "jocor", "--method", "jocor", "--dataset", "mnist", "--noise", "symmetric:0.8",
            "--results", str(results)]
    rc, out, _ = _run(base + ["--csv", str(path)], capsys)
    assert rc == 0
    mine = _table_row(out, "suite")
    assert mine[:4] == ["suite, mygrid", f"{np.mean(ours):.2f} ± {np.std(ours, ddof=1):.2f}", "5 records", "5"]
    j = judge(np.array(acc), ref_mean=float(np.mean(ours)), ref_std=float(np.std(ours, ddof=1)), ref_n=5.0)
    assert mine[4:] == ["welch", f"{j.diff:+.2f}", f"[{j.ci_low:+.2f}, {j.ci_high:+.2f}]", j.verdict]
    paper = _table_row(out, "paper")
    assert paper[1] == "84.89 ± 4.55" and paper[2] == "recalled" and "only recalled" in out
    # The same runs given as mean, std and n: the same table.
    rc, again, _ = _run(base + ["--mean", str(np.mean(acc)), "--std", str(np.std(acc, ddof=1)), "--n", "5"], capsys)
    assert rc == 0 and again.splitlines()[3:] == out.splitlines()[3:]


def test_read_accuracies(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("accuracy\n70.5\n71\n")
    assert read_accuracies(path).tolist() == [70.5, 71.0]
    path.write_text("seed,top1\n1,70\n2,72\n")
    assert read_accuracies(path, column="top1").tolist() == [70.0, 72.0]


@pytest.mark.parametrize("argv_tail, files, message", [
    (["--noise", "symmetric", "--mean", "1", "--std", "1", "--n", "2"], {},
     "no paper number of jocor and no records under {results} for jocor on cifar10 symmetric (protocol last10)"),
    (["--noise", "symmetric:0.3", "--mean", "1", "--std", "1", "--n", "2"], {},
     "no paper number of jocor and no records under {results} for jocor on cifar10 symmetric 30% (protocol last10)"),
    (["--noise", "sym:0.5", "--mean", "1", "--std", "1", "--n", "2"], {}, "bad --noise: unknown noise type 'sym'"),
    (["--noise", "symmetric:50", "--mean", "1", "--std", "1", "--n", "2"], {},
     "bad --noise 'symmetric:50': rate 50 is outside [0, 1] (a fraction, not percent)"),
    (["--noise", "symmetric:half", "--mean", "1", "--std", "1", "--n", "2"], {},
     "bad --noise 'symmetric:half': rate 'half' is not a number"),
    (["--noise", "symmetric:0.5", "--csv", "{tmp}/missing.csv"], {}, "cannot read {tmp}/missing.csv: No such file"),
    (["--noise", "symmetric:0.5", "--csv", "{tmp}/r.csv"], {"r.csv": "acc\n76\nabc\n"},
     "{tmp}/r.csv: line 3: acc 'abc' is not a number"),
    (["--noise", "symmetric:0.5", "--csv", "{tmp}/r.csv"], {"r.csv": "seed,top1\n1,76\n"},
     "{tmp}/r.csv: no accuracy column"),
    (["--noise", "symmetric:0.5", "--csv", "{tmp}/r.csv"], {"r.csv": "acc\n"}, "{tmp}/r.csv: no runs"),
    (["--noise", "symmetric:0.5", "--csv", "{tmp}/r.csv"], {"r.csv": "acc\n0.76\n176\n"},
     "{tmp}/r.csv: line 3: acc 176 is outside [0, 100] (percent)"),
    (["--noise", "symmetric:0.5", "--mean", "76"], {}, "give --csv FILE, or all of --mean M --std S --n N"),
    (["--noise", "symmetric:0.5", "--mean", "76", "--std", "1", "--n", "3", "--csv", "x.csv"], {},
     "give either --csv FILE or --mean M --std S --n N, not both"),
])
def test_errors_are_one_line_with_exit_2(argv_tail: list[str], files: dict, message: str, tmp_path: Path,
                                          capsys: pytest.CaptureFixture) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    results = tmp_path / "results"
    argv = JOCOR_C10[:-2] + [a.replace("{tmp}", str(tmp_path)) for a in argv_tail] + ["--results", str(results)]
    rc, out, err = _run(argv, capsys)
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert message.replace("{tmp}", str(tmp_path)).replace("{results}", str(results)) in err


def test_ambiguous_protocol_asks_for_one(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    argv = ["check", "--paper", "dividemix", "--method", "dividemix", "--dataset", "cifar10", "--noise",
            "asymmetric:0.4", "--mean", "83.5", "--std", "0.5", "--n", "3", "--results", str(tmp_path)]
    rc, _, err = _run(argv, capsys)
    assert rc == 2 and "protocols best, last10: give --protocol" in err
    rc, out, _ = _run(argv + ["--protocol", "best"], capsys)
    row = _table_row(out, "paper")
    # DivideMix gives no std: one run assumed, its mean taken as exact, and the note says so.
    assert rc == 0 and row[1:5] == ["93.40", "secondary", "1 (assumed); mean taken as exact", "one-sample"]
    assert "leaves out the paper's own variance" in out


def test_the_cli_end_to_end(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "bench", *JOCOR_C10, "--mean", "76", "--std", "0.8", "--n", "5",
           "--results", str(tmp_path)]
    ok = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert ok.returncode == 0 and "| paper, Table 3 |" in ok.stdout
    bad = subprocess.run([a.replace("symmetric:0.5", "symmetric:2") for a in cmd], capture_output=True, text=True,
                         check=False)
    assert bad.returncode == 2 and bad.stdout == "" and bad.stderr.count("\n") == 1
    assert "Traceback" not in bad.stderr and parse_noise("human") == ("human", None)
