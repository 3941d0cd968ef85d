"""One error contract for unfused and fused runs.

A run that cannot start as configured (a :class:`~bench.errors.BenchError`: missing data, a bad
setting) stops the grid with one line and exit status 2, writes no failed record and is not
retried, whether its cell trains unfused or with ``--fuse-seeds``.
"""

from __future__ import annotations

import pytest

from bench import engine
from bench.__main__ import main as bench_main
from bench.errors import DataError
from bench.fused_run import run_fused

GRID = {"name": "nodata", "dataset": "mnist", "network": "mlp",
        "train": {"epochs": 1, "batch_size": 64},
        "methods": {"coteaching": {}}, "noise": [{"type": "symmetric", "rate": 0.2}],
        "seeds": 2}


@pytest.mark.parametrize("fuse", [False, True], ids=["unfused", "fused"])
def test_missing_data_stops_the_grid_with_one_line(fuse, write_grid, tmp_path, capsys) -> None:
    empty = tmp_path / "no-data"
    empty.mkdir()
    results = tmp_path / "results"
    args = ["run", str(write_grid(GRID)), "--results", str(results), "--no-progress",
            "--threads", "1", "--retries", "2", "--data-root", str(empty)]
    assert bench_main(args + (["--fuse-seeds"] if fuse else [])) == 2
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "mnist" in lines[0].lower()
    assert "Traceback" not in out + err
    assert "will retry" not in out and "attempt" not in out
    assert not list(results.rglob("*.json"))          # no failed record


@pytest.mark.parametrize("fuse", [False, True], ids=["unfused", "fused"])
def test_a_bench_error_is_raised_not_recorded(fuse, make_spec, tmp_path) -> None:
    specs = [make_spec(method="jocor", dataset="mnist", seed=s) for s in (1, 2)]
    with pytest.raises(DataError, match="mnist"):
        if fuse:
            run_fused(specs, device="cpu", data_root=tmp_path)
        else:
            engine.run(specs[0], device="cpu", data_root=tmp_path, results_dir=tmp_path / "r")
    assert not list(tmp_path.rglob("*.json"))
