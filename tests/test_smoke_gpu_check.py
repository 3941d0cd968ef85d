"""``make gpu-check`` (bench/gpu_check.py): what can be checked without a GPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from bench import gpu_check
from tests.conftest import REPO


def test_without_a_cuda_device_it_fails_with_one_line(monkeypatch, capsys) -> None:
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert gpu_check.main([]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith("error: gpu-check needs a CUDA device")


def test_the_command_line_fails_the_same_way_with_no_device_visible() -> None:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "bench.gpu_check"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stdout == "" and len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr


def _perf(device_type: str, ips: dict) -> dict:
    return {"device_type": device_type, "device": device_type.upper(), "date": "d",
            "rows": [{"network": n, "mode": m, "images_per_s": v} for (n, m), v in ips.items()]}


def test_the_cpu_measurement_is_kept_before_the_gpu_one_replaces_it(tmp_path) -> None:
    perf, kept = tmp_path / "perf.json", tmp_path / "perf_cpu.json"
    cpu = _perf("cpu", {("cnn6", "engine"): 74.0})
    perf.write_text(json.dumps(cpu))
    assert gpu_check.keep_cpu_perf(perf, kept) == cpu
    perf.write_text(json.dumps(_perf("cuda", {("cnn6", "engine"): 9e4})))   # a later GPU run
    assert gpu_check.keep_cpu_perf(perf, kept) == cpu                     # still the CPU one
    assert gpu_check.keep_cpu_perf(tmp_path / "none.json", tmp_path / "no.json") is None


def test_gpu_figures_stand_beside_the_cpu_ones_and_the_targets() -> None:
    gpu = _perf("cuda", {("cnn6", "reference"): 1e4, ("cnn6", "fused"): 75_000.0,
                         ("cnn9", "engine"): 9_000.0})
    cpu = _perf("cpu", {("cnn6", "fused"): 46.0})
    rows = gpu_check.throughput_rows(gpu, cpu, {"cnn6": 150_000.0, "cnn9": 45_000.0})
    by = {(r["network"], r["mode"]): r for r in rows}
    assert by["cnn6", "fused"]["cpu"] == 46.0 and by["cnn6", "fused"]["of_target"] == 0.5
    assert by["cnn6", "reference"]["target"] is None          # the targets are the engine's
    assert by["cnn9", "engine"]["cpu"] is None and by["cnn9", "engine"]["of_target"] == 0.2
    text = gpu_check.render("H200", rows, {}, cpu, ["step: exit 0 in 1 s"])
    assert "| cnn6 | fused | 75,000 | 46 | 150,000 | 0.50 |" in text
    assert "no record" in text


def test_the_cell_figures_use_the_fused_group_wall_time() -> None:
    rec = {"metrics": {"epoch": [1, 2]}, "test_acc_last": 50.0, "status": "ok",
           "train": {"max_iters_per_epoch": 401, "batch_size": 128},
           "fused": {"group_wall_seconds": 20.0}, "wall_seconds": 4.0,
           "smoke_limits": {"limit_train": None, "epochs": 2}}
    fig = gpu_check.cell_figures([rec] * 5)
    assert fig["seconds_per_epoch"] == 10.0
    assert fig["network_images_per_s"] == pytest.approx(390 * 128 * 2 * 5 / 10.0)
    assert gpu_check.cell_figures([]) == {}
