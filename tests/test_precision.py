"""Precision: fp32 by default (every official code), bf16 CUDA autocast as an option.

What a CPU can check: the config, the run_ids of earlier records, the record's precision
fields, that autocast is off by default, and that the fused path is handed the same setting.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bench import engine, fused_run
from bench.config import RunSpec, TrainConfig, load_grid
from bench.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_default_precision_is_fp32_and_bf16_is_an_option() -> None:
    assert TrainConfig().precision == "fp32"
    assert TrainConfig(precision="bf16").precision == "bf16"
    with pytest.raises(ConfigError, match="precision must be fp32 or bf16"):
        TrainConfig(precision="fp16")


def test_new_options_at_their_defaults_leave_the_run_id_alone(make_spec) -> None:
    spec = make_spec()
    assert "precision" not in spec.config_dict()["train"]
    assert "clean_val_fraction" not in spec.config_dict()["train"]
    bf16 = make_spec(train={"precision": "bf16"})
    split = make_spec(train={"clean_val_fraction": 0.1})
    assert bf16.config_dict()["train"]["precision"] == "bf16"
    assert len({spec.run_id, bf16.run_id, split.run_id}) == 3
    # a record's train config reads back to the same run
    assert RunSpec.from_dict(bf16.to_dict()).run_id == bf16.run_id


def _committed_records() -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((REPO / "results").glob("*/*.json"))]


def test_every_committed_record_is_still_produced_by_its_grid() -> None:
    records = _committed_records()
    if not records:
        pytest.skip("no committed records in results/")
    grids = {}
    for path in (REPO / "bench" / "grids").glob("*.yaml"):
        grid = load_grid(path)
        grids[grid.name] = {run.run_id for run in grid.runs}
    for rec in records:
        assert rec["run_id"] in grids[rec["grid"]], (rec["grid"], rec["run_id"])
        assert RunSpec.from_dict(rec).run_id == rec["run_id"]


def test_autocast_dtype_of_each_setting() -> None:
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert engine.autocast_dtype("fp32", cuda) is None
    assert engine.autocast_dtype("fp32", cpu) is None
    assert engine.autocast_dtype("bf16", cuda) is torch.bfloat16
    with pytest.raises(ConfigError, match="bf16 runs under CUDA autocast"):
        engine.autocast_dtype("bf16", cpu)


def test_precision_fields_of_the_record_env() -> None:
    cuda = torch.device("cuda")
    fp32 = engine.precision_env("fp32", cuda)
    assert fp32["precision"] == "fp32" and fp32["autocast"] is None
    assert engine.precision_env("bf16", cuda)["autocast"] == "bfloat16"
    assert fp32["tf32_matmul"] == torch.backends.cuda.matmul.allow_tf32
    assert fp32["tf32_cudnn"] == torch.backends.cudnn.allow_tf32
    assert fp32["float32_matmul_precision"] == torch.get_float32_matmul_precision()


def test_a_default_run_records_fp32_without_autocast(make_spec) -> None:
    rec = engine.run(make_spec(), device="cpu")
    assert rec["status"] == "ok", rec["error"]
    env = rec["env"]
    assert env["precision"] == "fp32" and env["autocast"] is None
    assert {"tf32_matmul", "tf32_cudnn", "float32_matmul_precision"} <= set(env)


def test_autocast_is_off_by_default(make_spec) -> None:
    spec = make_spec()
    data, noisy, _ = engine.prepare(spec, torch.device("cpu"))
    ctx = engine.RunContext(spec, data, noisy, torch.device("cpu"))
    assert not ctx.use_amp
    with ctx.autocast():
        assert not torch.is_autocast_enabled("cuda") and not torch.is_autocast_enabled("cpu")
        out = ctx.make_network()(ctx.fetch(torch.arange(4)))
    assert out.dtype == torch.float32


def test_bf16_on_a_cpu_is_refused_not_run_in_fp32(make_spec) -> None:
    with pytest.raises(ConfigError, match="bf16 runs under CUDA autocast"):
        engine.run(make_spec(train={"precision": "bf16"}), device="cpu")


def test_fused_steps_get_the_runs_precision(make_spec, monkeypatch) -> None:
    seen: list[bool] = []
    autocast = engine.RunContext.autocast

    def spy(self):
        seen.append(self.use_amp)
        return autocast(self)

    monkeypatch.setattr(engine.RunContext, "autocast", spy)
    specs = [make_spec(seed=s, train={"epochs": 1}) for s in (1, 2)]
    records = fused_run.run_fused(specs, device="cpu")
    assert all(r["status"] == "ok" for r in records)
    assert seen and not any(seen)
    assert all(r["env"]["precision"] == "fp32" for r in records)
    with pytest.raises(ConfigError, match="bf16 runs under CUDA autocast"):
        fused_run.run_fused([make_spec(seed=s, train={"precision": "bf16"}) for s in (1, 2)],
                            device="cpu")


def test_runs_with_a_clean_split_run_unfused(make_spec) -> None:
    assert fused_run.fusable(make_spec())
    assert not fused_run.fusable(make_spec(train={"clean_val_fraction": 0.1}))
