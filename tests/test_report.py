"""The report end to end on synthetic run records."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench import report

EPOCHS = 12


def _record(*, grid: str, label: str, method: str, dataset: str, noise_type: str, noise_rate: float | None,
            seed: int, level: float, rng: np.random.Generator, paper: str | None = None,
            protocol: str = "last10", selection: bool = True) -> dict:
    """One run record in the documented format; its test accuracy rises to about ``level``."""
    epochs = np.arange(1, EPOCHS + 1)
    curve = level + rng.normal(0, 0.3) - 20 * np.exp(-epochs) + rng.normal(0, 0.2, EPOCHS)
    curve = np.clip(curve, 0, 100)
    precision = np.clip(0.7 + 0.02 * np.arange(EPOCHS) + rng.normal(0, 0.01, EPOCHS), 0, 1)
    nan_list = [None] * EPOCHS
    return {
        "schema_version": 1, "run_id": f"{label}-{noise_type}-{noise_rate}-{seed}", "grid": grid,
        "label": label, "method": method, "method_params": {}, "dataset": dataset, "network": "mlp",
        "noise_type": noise_type, "noise_rate": noise_rate, "noise_variant": None, "noise_seed": seed,
        "seed": seed, "epochs": EPOCHS, "train": {},
        "reference": {"paper": paper, "table": None, "protocol": protocol},
        "realised_noise_rate": (noise_rate or 0.0) * 0.98, "transition_matrix": [[1.0]],
        "nominal_transition_matrix": None,
        "metrics": {
            "epoch": list(range(1, EPOCHS + 1)), "test_acc": curve.tolist(),
            "test_acc_networks": {"net1": curve.tolist()}, "train_loss": np.linspace(2, 0.5, EPOCHS).tolist(),
            "selected_count": [100] * EPOCHS if selection else nan_list,
            "label_precision": precision.tolist() if selection else nan_list,
            "label_recall": precision.tolist() if selection else nan_list,
            "selected_per_class": [[10] * 10] * EPOCHS, "extra": {},
        },
        "test_acc_last": float(curve[-1]), "test_acc_best": float(curve.max()),
        "test_acc_last10": float(curve[-10:].mean()), "wall_seconds": 1.0, "device": "cpu", "env": {},
        "status": "ok", "error": None, "started_at": "2024-01-01T00:00:00Z", "finished_at": "2024-01-01T00:00:01Z",
    }


def _write(folder: Path, rec: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{rec['run_id']}.json").write_text(json.dumps(rec))


@pytest.fixture()
def results(tmp_path: Path) -> Path:
    """Grid ``synth``: two methods x two noise settings x 5 seeds, except one single-run cell.

    ``jocor`` on CIFAR-10 symmetric 50% sits on the JoCoR paper's 79.41 so that a paper number
    (with its provenance) appears in the report.
    """
    rng = np.random.default_rng(1)
    root = tmp_path / "results"
    grid = root / "synth"
    levels = {("jocor", 0.2): 85.8, ("jocor", 0.5): 79.5, ("standard", 0.2): 69.0, ("standard", 0.5): 43.0}
    for (method, rate), level in levels.items():
        seeds = [0] if (method, rate) == ("standard", 0.5) else range(5)
        for seed in seeds:
            _write(grid, _record(grid="synth", label=method, method=method, dataset="cifar10",
                                 noise_type="symmetric", noise_rate=rate, seed=seed, level=level, rng=rng,
                                 paper="jocor", selection=(method == "jocor")))
    # a failed run is ignored
    bad = _record(grid="synth", label="jocor", method="jocor", dataset="cifar10", noise_type="symmetric",
                  noise_rate=0.2, seed=9, level=10.0, rng=rng, paper="jocor")
    bad.update(status="failed", error="CUDA error", run_id="failed-run")
    _write(grid, bad)
    return root


def test_end_to_end(results: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "reports"
    code = report.main(["--results", str(results), "--out", str(out), "--n-boot", "300"])
    assert code == 0
    md = out / "synth.md"
    assert md.is_file() and md.stat().st_size > 0
    text = md.read_text()
    grid_dir = out / "synth"
    pngs = sorted(grid_dir.glob("*.png"))
    names = {p.name for p in pngs}
    assert "accuracy_vs_noise.png" in names
    assert "test_acc_cifar10_symmetric_0.5.png" in names
    assert "label_precision_cifar10_symmetric_0.2.png" in names
    assert all(p.stat().st_size > 1000 for p in pngs)

    summary = pd.read_csv(grid_dir / "summary.csv")
    assert len(summary) == 4
    single = summary[(summary["label"] == "standard") & (summary["noise_rate"] == 0.5)].iloc[0]
    assert single["n"] == 1 and single["verdict"] == "too few runs"
    assert np.isnan(single["p_value"]) and np.isnan(single["p_holm"]) and np.isnan(single["ci_low"])
    # the single run is shown with its mark, and never tested
    assert "(1) †" in text

    jocor = summary[(summary["label"] == "jocor") & (summary["noise_rate"] == 0.5)].iloc[0]
    assert jocor["paper_mean"] == pytest.approx(79.41)
    assert jocor["provenance"] == "secondary"
    assert jocor["verdict"] in {"reproduced", "inconclusive"}
    assert "79.41 ± 0.25 (secondary)" in text
    # a recalled number is never shown without its tag
    assert "69.18 ± 0.52 (recalled)" in text
    assert "## Across cells" in text and "Methods compared within each cell" in text
    # the paired win rate with its exact interval; the sign count where Wilcoxon cannot reject
    assert "P(a > b) paired [95% CP]" in text and "a > b in 5 of 5 seeds" in text
    assert "Wilcoxon p (Holm)" not in text
    # the draws: one per run in this grid (noise_seed = seed), and the left-out failed run
    assert "a draw per run: the interval covers the draw's variance" in text
    assert "## Left out" in text and "failed: CUDA error" in text
    assert "BCa 95%" not in text  # no bootstrap interval at 5 runs
    assert "No run's selected set lost a whole class" in text
    assert capsys.readouterr().out.strip().endswith("synth.md")


def test_summary_schema(results: Path, tmp_path: Path) -> None:
    report.build_report(results, tmp_path / "r", figures=False, n_boot=200)
    summary = pd.read_csv(tmp_path / "r" / "synth" / "summary.csv")
    numeric = ["n", "mean", "std", "ci_low", "ci_high", "boot_low", "boot_high", "paper_mean", "paper_std",
               "paper_n", "p_value", "p_holm", "seeds_needed", "noise_rate", "realised_noise_rate"]
    for col in numeric + ["grid", "dataset", "noise_type", "noise_variant", "method", "label", "protocol",
                          "verdict", "provenance"]:
        assert col in summary.columns, col
    for col in numeric:
        assert pd.api.types.is_numeric_dtype(summary[col]), col
    assert set(summary["protocol"]) == {"last10"}
    assert not list((tmp_path / "r" / "synth").glob("*.png"))


def test_holm_and_protocol(results: Path, tmp_path: Path) -> None:
    report.build_report(results, tmp_path / "r", figures=False, n_boot=200)
    summary = pd.read_csv(tmp_path / "r" / "synth" / "summary.csv")
    tested = summary[summary["p_value"].notna()]
    assert len(tested) == 3  # the single-run cell is not tested
    assert (tested["p_holm"] >= tested["p_value"] - 1e-12).all()
    assert (tested["p_holm"] <= 1).all()
    # The JoCoR paper reports the mean of the last ten epochs only: nothing to compare under "last".
    report.build_report(results, tmp_path / "l", figures=False, n_boot=200, protocol="last")
    last = pd.read_csv(tmp_path / "l" / "synth" / "summary.csv")
    assert set(last["protocol"]) == {"last"}
    assert last["paper_mean"].isna().all()


def test_pairwise_paired_by_seed(results: Path) -> None:
    runs = report.with_accuracy(report.load_runs(results, "synth"), "last10")
    pairs = report.pairwise(runs, report.Settings(protocol="last10", n_boot=200))
    row = pairs[pairs["noise_rate"] == 0.2].iloc[0]
    assert (row["a"], row["b"], row["n"]) == ("jocor", "standard", 5)
    assert (row["wins"], row["win_rate"]) == (5, 1.0) and row["mean_diff"] > 10
    assert row["sign_shown"]  # the exact Wilcoxon p cannot go below 0.0625 at 5 pairs
    single = pairs[pairs["noise_rate"] == 0.5].iloc[0]
    assert single["n"] == 1 and np.isnan(single["p_t"])


def test_small_grid_without_papers(tmp_path: Path) -> None:
    """The demo's shape: dataset digits, no paper, three methods so that ranks are computed."""
    rng = np.random.default_rng(2)
    root = tmp_path / "results"
    for method, level in (("standard", 80.0), ("coteaching", 84.0), ("jocor", 86.0)):
        for noise_type, rate in (("symmetric", 0.2), ("pairflip", 0.45)):
            for seed in range(5):
                _write(root / "tiny", _record(grid="tiny", label=method, method=method, dataset="digits",
                                              noise_type=noise_type, noise_rate=rate, seed=seed,
                                              level=level - 20 * rate, rng=rng, selection=method != "standard"))
    out = tmp_path / "reports"
    assert report.main(["--results", str(root), "--out", str(out), "--grid", "tiny", "--n-boot", "200"]) == 0
    summary = pd.read_csv(out / "tiny" / "summary.csv")
    assert summary["paper_mean"].isna().all() and summary["p_value"].isna().all()
    assert (summary["n"] == 5).all()
    # two cells are too few to rank methods on: no critical difference and no diagram
    assert not (out / "tiny" / "cd_diagram.png").exists()
    text = (out / "tiny.md").read_text()
    assert "Friedman" in text and "Iman-Davenport" in text and "too few to rank" in text and "digits" in text
    assert "configurations were not checked" in text  # no grid file named tiny


@pytest.mark.parametrize("case", ["empty", "missing", "unknown_grid", "empty_grid"])
def test_bad_input_exits_2(case: str, results: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    argv = ["--out", str(tmp_path / "reports")]
    if case == "empty":
        empty = tmp_path / "empty"
        empty.mkdir()
        argv += ["--results", str(empty)]
    elif case == "missing":
        argv += ["--results", str(tmp_path / "nowhere")]
    elif case == "unknown_grid":
        argv += ["--results", str(results), "--grid", "nope"]
    else:
        (results / "hollow").mkdir()
        argv += ["--results", str(results), "--grid", "hollow"]
    assert report.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "Traceback" not in err


def test_module_entry_point(results: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "bench.report", "--results", str(tmp_path / "none"),
                           "--out", str(tmp_path / "o")], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: no run records") and "Traceback" not in proc.stderr


def test_compute_line_counts_reused_runs_apart() -> None:
    runs = pd.DataFrame({"device": ["cpu", "cpu", "cuda:0", "cpu"],
                         "wall_seconds": [1800.0, 1800.0, 360.0, 900.0],
                         "reused_from": [None, None, None, {"grid": "main", "record": "x.json"}]})
    text = report.compute_text(runs)
    assert text == ("Compute (run wall time): 1.0 h on cpu over 2 runs (30.0 min per run); "
                    "0.1 h on cuda over 1 run (6.0 min per run); 1 run is an identical "
                    "configuration trained for grid main and reused here.")
    assert report.compute_text(pd.DataFrame({"acc": [1.0]})) == ""


def _per_class(zero_from: dict[int, int], *, epochs: int = EPOCHS, blip: int | None = None) -> list[list[int]]:
    """Per-epoch selected counts of 10 classes; class c has none from epoch ``zero_from[c]`` on."""
    rows = [[0 if c in zero_from and e >= zero_from[c] else 10 for c in range(10)] for e in range(1, epochs + 1)]
    if blip is not None:  # one sample of every emptied class selected again at that epoch
        rows[blip - 1] = [1 if c in zero_from else n for c, n in enumerate(rows[blip - 1])]
    return rows


def test_dropped_classes_counts_only_lasting_drops() -> None:
    epochs = list(range(1, EPOCHS + 1))
    # emptied at epoch 3, one sample back at epoch 8, empty again: dropped, first emptied at 3
    classes, first = report.dropped_classes({"epoch": epochs, "selected_per_class": _per_class({3: 3}, blip=8)})
    assert classes == [3] and first == 3
    # emptied only over the last quarter (a late-shrinking disagreement set): not a drop
    assert report.dropped_classes({"epoch": epochs, "selected_per_class": _per_class({5: 10})}) == ([], None)
    # selected again in the last epoch: not a drop
    rows = _per_class({2: 2})
    rows[-1][2] = 4
    assert report.dropped_classes({"epoch": epochs, "selected_per_class": rows}) == ([], None)
    # no per-class counts (a method without selection)
    assert report.dropped_classes({"epoch": epochs, "selected_per_class": [None] * EPOCHS}) == ([], None)
    assert report.dropped_classes(None) == ([], None)


def _report_and_row(tmp_path: Path, grid: str, heading: str, runs: str) -> tuple[Path, str]:
    """Report every grid under tmp_path/results; (reports folder, the symmetric-80% row of ``grid``'s
    section ``heading`` that counts ``runs``)."""
    out = tmp_path / "reports"
    assert report.main(["--results", str(tmp_path / "results"), "--out", str(out), "--no-figures",
                        "--n-boot", "200"]) == 0
    text = (out / f"{grid}.md").read_text()
    assert heading in text
    section = text.split(heading, 1)[1].split("\n### ", 1)[0]
    return out, next(line for line in section.splitlines() if line.startswith("| symmetric 80%") and runs in line)


def test_report_lists_runs_that_dropped_a_class(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    grid = tmp_path / "results" / "drops"
    for seed in range(4):
        dropped = seed in (1, 3)
        rec = _record(grid="drops", label="jocor", method="jocor", dataset="mnist", noise_type="symmetric",
                      noise_rate=0.8, seed=seed, level=81.0 if dropped else 90.0, rng=rng)
        rec["metrics"]["selected_per_class"] = _per_class({9 if seed == 1 else 3: 4} if dropped else {})
        _write(grid, rec)
    out, row = _report_and_row(tmp_path, "drops", "### Classes dropped by the selection", "2 of 4")
    assert "1: 9 (4); 3: 3 (4)" in row
    drops = pd.read_csv(out / "drops" / "class_drops.csv")
    assert drops.loc[0, "n_dropped"] == 2 and drops.loc[0, "n"] == 4
    assert drops.loc[0, "acc_dropped"] < drops.loc[0, "acc_kept"] - 5


def test_collapsed_at_needs_the_curve_to_stay_low() -> None:
    epochs = list(range(1, EPOCHS + 1))
    curve = [60.0, 12.0, 10.3] + [10.3] * (EPOCHS - 3)
    assert report.collapsed_at({"epoch": epochs, "test_acc": curve}, 15.0) == 2
    curve[6] = 40.0  # recovered for one epoch, then back at chance: the lasting stretch counts
    assert report.collapsed_at({"epoch": epochs, "test_acc": curve}, 15.0) == 8
    curve[-1] = 40.0  # ends above chance: not collapsed
    assert report.collapsed_at({"epoch": epochs, "test_acc": curve}, 15.0) is None
    assert report.collapsed_at(None, 15.0) is None


def test_report_lists_runs_at_chance_level(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    grid = tmp_path / "results" / "chance"
    for seed in range(4):
        # seed 2 collapses to one class's share of a 10-class test set from epoch 3 on
        rec = _record(grid="chance", label="coteaching_plus", method="coteaching_plus", dataset="mnist",
                      noise_type="symmetric", noise_rate=0.8, seed=seed, level=78.0, rng=rng)
        rec["transition_matrix"] = np.full((10, 10), 0.1).tolist()
        if seed == 2:
            curve = [40.0, 20.0] + [10.3] * (EPOCHS - 2)
            rec["metrics"]["test_acc"] = curve
            rec["test_acc_last10"] = float(np.mean(curve[-10:]))
        _write(grid, rec)
    out, row = _report_and_row(tmp_path, "chance", "### Runs at chance level", "1 of 4")
    assert "| 2 (3) " in row
    found = pd.read_csv(out / "chance" / "collapses.csv")
    assert found.loc[0, "n_collapsed"] == 1 and found.loc[0, "chance"] == 10.0
    assert found.loc[0, "acc_collapsed"] < 12 and found.loc[0, "acc_others"] > 70
    # the other grids' reports stay free of the section when no run collapsed
    rec = _record(grid="fine", label="jocor", method="jocor", dataset="mnist", noise_type="symmetric",
                  noise_rate=0.2, seed=0, level=97.0, rng=rng)
    _write(tmp_path / "results" / "fine", rec)
    assert report.main(["--results", str(tmp_path / "results"), "--grid", "fine", "--out", str(out),
                        "--no-figures", "--n-boot", "200"]) == 0
    assert "Runs at chance level" not in (out / "fine.md").read_text()


def test_two_methods_get_no_critical_difference(tmp_path: Path) -> None:
    """Friedman needs three methods; without the test there is no CD line and no CD diagram."""
    rng = np.random.default_rng(5)
    root = tmp_path / "results"
    for label, level in (("jocor(select_on=ce)", 84.0), ("jocor(select_on=joint)", 85.0)):
        for rate in (0.5, 0.8):
            for seed in range(3):
                _write(root / "abl", _record(grid="abl", label=label, method="jocor", dataset="mnist",
                                             noise_type="symmetric", noise_rate=rate, seed=seed,
                                             level=level, rng=rng))
    out = tmp_path / "reports"
    (out / "abl").mkdir(parents=True)
    (out / "abl" / "cd_diagram.png").write_bytes(b"from an earlier report")
    assert report.main(["--results", str(root), "--out", str(out), "--n-boot", "200"]) == 0
    text = (out / "abl.md").read_text()
    assert "Friedman test not run" in text and "critical difference" not in text
    assert not (out / "abl" / "cd_diagram.png").exists()


# ------------------------------------------------------------------------------- variance sources


def _papers(**row: object) -> pd.DataFrame:
    """A paper table of one JoCoR CIFAR-10 number plus ``extra`` untested rows of the same table."""
    from bench.papers import COLUMNS

    extra = int(row.pop("extra", 0))
    base = {"paper": "jocor", "table": "Table 3", "method": "jocor", "dataset": "cifar10", "noise_type": "symmetric",
            "noise_rate": 0.5, "network": "", "protocol": "last10", "mean": 79.5, "std": 0.3, "n_runs": np.nan,
            "std_over": "runs", "provenance": "verified", "note": "", **row}
    rows = [base] + [{**base, "method": f"other{i}", "mean": 50.0} for i in range(extra)]
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _cell(tmp_path: Path, draws: list[int], *, level: float = 79.5, draw_sd: float = 0.0, **extra: object) -> Path:
    """Grid ``cell``: jocor at CIFAR-10 symmetric 50%, one run per (noise draw, seed)."""
    rng = np.random.default_rng(6)
    effects = {d: rng.normal(0, draw_sd) for d in set(draws)}
    for i, draw in enumerate(draws):
        rec = _record(grid="cell", label="jocor", method="jocor", dataset="cifar10", noise_type="symmetric",
                      noise_rate=0.5, seed=i, level=level + effects[draw], rng=rng, paper="jocor")
        rec.update(noise_seed=draw, run_id=f"cell-{i}", **extra)
        _write(tmp_path / "results" / "cell", rec)
    return tmp_path / "results"


def _summary(results: Path, tmp_path: Path, papers: pd.DataFrame, **kwargs: object) -> tuple[pd.Series, str]:
    out = tmp_path / "reports"
    report.build_report(results, out, figures=False, n_boot=200, papers=papers, **kwargs)
    return pd.read_csv(out / "cell" / "summary.csv").iloc[0], (out / "cell.md").read_text()


def test_crossed_draws_are_decomposed_not_pooled(tmp_path: Path) -> None:
    from bench import stats

    results = _cell(tmp_path, [0] * 4 + [1] * 4 + [2] * 4, draw_sd=2.0)
    row, text = _summary(results, tmp_path, _papers())
    assert row["design"] == "crossed" and row["n_draws"] == 3 and row["s2_draw"] > 0
    runs = report.with_accuracy(report.load_runs(results, "cell"), "last10")
    est = stats.estimate_cell(runs["acc"].to_numpy(), list(runs["noise_seed"]))
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(est.interval(0.95))
    assert row["df"] == pytest.approx(2.0)  # J - 1 for a balanced design, not 11
    # the paper's mean sits on one draw of its own: Δ's variance gains sigma2_draw
    assert row["test"] == "welch + draw variance"
    assert row["diff_se"] ** 2 == pytest.approx(est.se ** 2 + 0.3 ** 2 / 5 + est.s2_draw)
    assert "Crossed cells" in text and "3 draws crossed with seeds" in text and "3 x 12" in text
    comp = stats.variance_components(runs["acc"].to_numpy(), list(runs["noise_seed"]))
    assert row["draw_share"] == pytest.approx(comp.share) and row["understatement"] == pytest.approx(comp.understatement)
    assert f"{comp.share:.2f} [{comp.share_low:.2f}, {comp.share_high:.2f}]" in text


@pytest.mark.parametrize("extra, words", [
    ({}, "one draw, not the paper's: the interval is conditional on it"),
    ({"noise_draw": "noisify"}, "one draw, the paper's own"),   # the official code's seed 0
    ({"noise_draw": "dividemix"}, "one draw, not the paper's"),  # its own seed is 123, not 0
    ({"noise_source": "official"}, "one draw, not the paper's"),  # a field the report does not know
    ({"noise_draw": "something new"}, "one draw, not the paper's"),
])
def test_one_shared_draw_says_whose(tmp_path: Path, extra: dict, words: str) -> None:
    row, text = _summary(_cell(tmp_path, [0] * 5, **extra), tmp_path, _papers())
    assert row["design"] == "one draw" and words in text


def test_assumed_paper_runs_are_marked_and_checked(tmp_path: Path) -> None:
    results = _cell(tmp_path, list(range(5)))
    row, text = _summary(results, tmp_path, _papers())
    assert row["paper_n_used"] == 5 and row["paper_n_assumed"] and row["test"] == "welch"
    assert "n_p = 5 (assumed)" in text and ("robust" in text or "2: " in row["verdicts_by_np"])
    assert isinstance(row["verdicts_by_np"], str) and row["verdicts_by_np"].count(":") == 3
    assert row["robust"] == (len({v.split(": ")[1] for v in row["verdicts_by_np"].split("; ")}) == 1)
    stated, _ = _summary(results, tmp_path, _papers(n_runs=3))
    assert stated["paper_n_used"] == 3 and not stated["paper_n_assumed"] and pd.isna(stated["robust"])
    per_paper, _ = _summary(results, tmp_path, _papers(), paper_runs={"jocor": 2})
    assert per_paper["paper_n_used"] == 2 and per_paper["diff_se"] > row["diff_se"]
    epochs, text = _summary(results, tmp_path, _papers(std_over="epochs"))
    assert epochs["test"] == "one-sample" and math.isinf(epochs["paper_n_used"])
    assert "paper std over epochs: not an SE" in text


def test_holm_family_is_the_papers_whole_table(tmp_path: Path) -> None:
    from bench import stats

    results = _cell(tmp_path, list(range(5)), level=79.0)
    row, _ = _summary(results, tmp_path, _papers(extra=9))
    assert row["family_size"] == 10
    assert row["p_holm"] == pytest.approx(stats.holm([row["p_value"]], family_size=10)[0])
    assert row["p_holm"] == pytest.approx(min(1.0, 10 * row["p_value"]))


def test_recalled_numbers_are_provisional(tmp_path: Path) -> None:
    row, text = _summary(_cell(tmp_path, list(range(5))), tmp_path, _papers(provenance="recalled"))
    assert row["provisional"] and "· provisional" in text


# ------------------------------------------------------------------------------- left out


def test_left_out_records_never_join_a_cell(tmp_path: Path) -> None:
    from bench.config import load_grid
    from bench.left_out import left_out_lines, split_runs

    grids = tmp_path / "grids"
    grids.mkdir()
    (grids / "mini.yaml").write_text((Path(report.__file__).parent / "grids" / "demo.yaml").read_text()
                                     .replace("name: demo", "name: mini"))
    specs = load_grid(grids / "mini.yaml").runs[:3]
    rng = np.random.default_rng(7)
    recs = []
    for spec in specs:
        rec = _record(grid="mini", label=spec.label, method=spec.method, dataset="digits", noise_type=spec.noise_type,
                      noise_rate=spec.noise_rate, seed=spec.seed, level=80.0, rng=rng)
        rec["run_id"] = spec.run_id
        recs.append(rec)
    recs[1]["schema_version"] = 0
    recs[2]["status"], recs[2]["error"] = "failed", "RuntimeError: out of memory\nTraceback ..."
    stray = dict(recs[0], run_id="0123456789abcdef", path="results/mini/stray.json")
    kept, left = split_runs(pd.DataFrame(recs + [stray]), "mini", grids_dir=grids)
    assert list(kept["run_id"]) == [specs[0].run_id]
    assert sorted(left["why"]) == ["configuration no longer in the grid file", "failed: RuntimeError: out of memory",
                                   "older record schema (0, now 1)"]
    text = "\n".join(left_out_lines(left, [("results/mini/broken.json", "not valid JSON")]))
    assert "stray.json" in text and "Damaged record files" in text and "results/mini/broken.json" in text


def test_damaged_files_from_the_store_are_listed(results: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bench import store

    real = store.load_records

    def with_damage(*args: object, **kwargs: object) -> pd.DataFrame:
        frame = real(*args, **kwargs)
        frame.attrs["left_out"] = [("results/synth/torn.json", "Expecting value: line 1 column 1")]
        return frame

    monkeypatch.setattr(store, "load_records", with_damage)
    report.build_report(results, tmp_path / "r", figures=False, n_boot=200)
    text = (tmp_path / "r" / "synth.md").read_text()
    left = text.split("## Left out", 1)[1]
    assert "Damaged record files" in left and "results/synth/torn.json" in left and "failed: CUDA error" in left


def test_critical_difference_needs_enough_cells(tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    root = tmp_path / "results"
    for method, level in (("standard", 70.0), ("coteaching", 75.0), ("jocor", 80.0)):
        for rate in np.linspace(0.1, 0.55, 10):
            for seed in range(2):
                _write(root / "wide", _record(grid="wide", label=method, method=method, dataset="digits",
                                              noise_type="symmetric", noise_rate=float(rate), seed=seed,
                                              level=level - 10 * rate, rng=rng))
    out = tmp_path / "reports"
    report.build_report(root, out, n_boot=200)
    text = (out / "wide.md").read_text()
    assert "Nemenyi critical difference" in text and (out / "wide" / "cd_diagram.png").is_file()


def test_the_report_tests_the_claims_of_its_paper_table(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    for method, level in (("jocor", 80.0), ("coteaching", 78.0)):
        for seed in range(1, 6):
            rec = _record(grid="cell", label=method, method=method, dataset="cifar10", noise_type="symmetric",
                          noise_rate=0.5, seed=seed, level=level, rng=rng, paper="jocor")
            rec["reference"]["table"] = "Table 3"
            _write(tmp_path / "results" / "cell", rec)
    claims = pd.DataFrame([{"paper": "jocor", "table": "Table 3", "dataset": "cifar10", "noise_type": "symmetric",
                            "noise_rate": 0.5, "better": "jocor", "worse": "coteaching", "protocol": "last10",
                            "provenance": "verified", "source": "Table 3", "note": ""},
                           {"paper": "jocor", "table": "Table 3", "dataset": "cifar10", "noise_type": "symmetric",
                            "noise_rate": 0.5, "better": "coteaching", "worse": "jocor", "protocol": "best",
                            "provenance": "verified", "source": "Table 3", "note": ""}])
    report.build_report(tmp_path / "results", tmp_path / "reports", figures=False, n_boot=200, papers=_papers(),
                        claims=claims)
    text = (tmp_path / "reports" / "cell.md").read_text()
    assert "## Claims of the paper" in text
    assert "1 claims: holds 1, reversed 0, not shown 0" in text  # the best-protocol claim is not this report's


def test_the_report_shows_selection_curves_of_scoring_runs(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    for seed in range(1, 4):
        rec = _record(grid="cell", label="coteaching", method="coteaching", dataset="cifar10",
                      noise_type="symmetric", noise_rate=0.5, seed=seed, level=80.0, rng=rng)
        points = [0.5, 1.0]
        rec["metrics"]["selection_curve"] = {
            "kind": "keep_fraction", "points": points, "size": [[50, 100]] * EPOCHS,
            "precision": [[0.9, 0.5]] * EPOCHS, "recall": [[0.9, 1.0]] * EPOCHS,
            "per_class": [[[5] * 10, [10] * 10]] * EPOCHS}
        _write(tmp_path / "results" / "cell", rec)
    report.build_report(tmp_path / "results", tmp_path / "reports", n_boot=200, papers=_papers())
    text = (tmp_path / "reports" / "cell.md").read_text()
    assert "## Selection curves" in text and "| coteaching | symmetric 50% | f = 0.5 | 3 | 50 | 10.0 |" in text
    assert (tmp_path / "reports" / "cell" / "selection_curves.png").is_file()


def test_variants_of_a_paper_method_say_which_one_lands() -> None:
    base = {"dataset": "mnist", "noise_type": "symmetric", "noise_rate": 0.5, "noise_variant": "",
            "paper_mean": 92.74}
    summary = pd.DataFrame([
        {**base, "method": "f_correction", "label": "f_correction(estimation_epochs=20)", "verdict": "below",
         "verdict_text": "below", "diff": -22.1},
        {**base, "method": "f_correction_patrini", "label": "f_correction_patrini", "verdict": "reproduced",
         "verdict_text": "reproduced", "diff": 0.3},
        {**base, "method": "jocor", "label": "jocor", "verdict": "reproduced", "verdict_text": "reproduced",
         "diff": 0.1, "paper_mean": 96.64},
    ])
    lines = report.variants_lines(summary)
    assert lines[0] == "## Variants against the paper's number"
    found = [line for line in lines if line.startswith("- ")]
    assert found == ["- symmetric 50%, f_correction (paper 92.74): reproduced by f_correction_patrini; "
                     "f_correction(estimation_epochs=20) below (Δ -22.10), f_correction_patrini reproduced (Δ +0.30)."]
    assert report.variants_lines(summary[summary["method"] == "jocor"]) == []
