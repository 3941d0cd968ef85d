"""The grid schema: every mistake in a grid file is one line ``<file>:<line>: <message>``.

Each bad case starts from one valid grid (``GOOD``) and changes one line of it, so the line
the error must name is the changed one. A few go through ``python -m bench run --dry-run`` in a
subprocess (exit status 2, one line on stderr, nothing written under --results), the rest
through :func:`bench.config.load_grid`.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bench import schema
from bench.config import TrainConfig, expand_grid, load_grid
from bench.errors import ConfigError
from bench.yaml_loader import read_yaml

REPO = Path(__file__).resolve().parents[1]

GOOD = """\
name: g
reference: {paper: jocor, table: "Table 2", protocol: last10}
dataset: digits
network: mlp
train: {epochs: 2, batch_size: 64, lr: 0.001}
methods:
  standard: {}
  coteaching: {num_gradual: 1}
noise:
  - {type: symmetric, rate: 0.2}
seeds: [1]
overrides:
  - when: {method: coteaching}
    method_params: {forget_rate: 0.1}
"""


def bad_grid(tmp_path: Path, old: str, new: str) -> tuple[Path, int]:
    """GOOD with ``old`` replaced by ``new``; the path and the line (1-based) of the change."""
    assert GOOD.count(old) == 1, old
    text = GOOD.replace(old, new)
    path = tmp_path / "g.yaml"
    path.write_text(text, encoding="utf-8")
    return path, GOOD[:GOOD.index(old)].count("\n") + 1 + new.count("\n")


def load_error(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_grid(path)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_the_base_grid_is_valid(tmp_path) -> None:
    path = tmp_path / "g.yaml"
    path.write_text(GOOD, encoding="utf-8")
    runs = load_grid(path).runs
    assert [r.method for r in runs] == ["standard", "coteaching"]
    assert runs[1].method_params["forget_rate"] == 0.1


# ---- numbers as YAML 1.2 reads them ----------------------------------------------------------

def test_exponent_without_a_dot_is_a_number(tmp_path) -> None:
    path, _ = bad_grid(tmp_path, "lr: 0.001", "lr: 1e-3")
    train = load_grid(path).runs[0].train
    assert train.lr == 0.001 and isinstance(train.lr, float)


def test_numbers_keep_the_type_they_are_written_with(tmp_path) -> None:
    path, _ = bad_grid(tmp_path, "coteaching: {num_gradual: 1}",
                       "coteaching: {num_gradual: 1, exponent: 2}")
    params = load_grid(path).runs[1].method_params
    assert params["exponent"] == 2 and isinstance(params["exponent"], int)


def test_yaml_1_2_scalars(tmp_path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("a: 1e-3\nb: -2.5E+2\nc: .5\nd: 3\ne: yes\nf: true\ng: on\nh: 1_000\n")
    data, _ = read_yaml(path)
    assert data == {"a": 0.001, "b": -250.0, "c": 0.5, "d": 3, "e": "yes", "f": True, "g": "on",
                    "h": 1000}
    assert isinstance(data["d"], int)


# ---- one bad line each: the message and the line ---------------------------------------------

BAD = [
    ("epochs: 2", "epochs: abc", "train.epochs must be an integer, got 'abc'"),
    ("epochs: 2", "epochs: 2.5", "train.epochs must be an integer, got 2.5"),
    ("batch_size: 64", "batch_size: 2.5", "train.batch_size must be an integer, got 2.5"),
    ("lr: 0.001", "lr: 0", "train.lr must be > 0"),
    ("lr: 0.001", "lr: 0.001, drop_last: yes", "train.drop_last must be true or false, got 'yes'"),
    ("lr: 0.001", "lr: 0.001, optimizer: adamw", "unknown optimizer 'adamw'; did you mean 'adam'?"),
    ("lr: 0.001", "lr: 0.001, lrate: 1", "unknown key 'lrate' in train"),
    ("lr: 0.001", "lr: 0.001, network_options: {hiden: 32}",
     "network 'mlp' has no option 'hiden'; did you mean 'hidden'?"),
    ("lr: 0.001", "lr: 0.001, network_options: {hidden: 3.5}",
     "train.network_options.hidden must be an integer (an option of mlp), got 3.5"),
    ("num_gradual: 1", "num_gradual: 2.5",
     "methods.coteaching.num_gradual must be an integer, got 2.5"),
    ("num_gradual: 1", "num_gradual: [1, 2.5]",
     "methods.coteaching.num_gradual must be an integer, got 2.5"),
    ("num_gradual: 1", "num_gradul: 1",
     "method 'coteaching' has no parameter 'num_gradul'; did you mean 'num_gradual'?"),
    ("  standard: {}", "  standrad: {}", "unknown method 'standrad'; did you mean 'standard'?"),
    ("name: g", "name: 123", "name must be a plain name"),
    ("name: g", "name: ../escaped", "name must be a plain name"),
    ("protocol: last10", "protocl: best",
     "unknown key 'protocl' in reference; did you mean 'protocol'?"),
    ("protocol: last10", "protocol: bset", "unknown protocol 'bset'; did you mean 'best'?"),
    ("paper: jocor", "paper: jocr", "unknown paper 'jocr'; did you mean 'jocor'?"),
    ("when: {method: coteaching}", "when: {metod: coteaching}",
     "unknown key 'metod' in an override's when; did you mean 'method'?"),
    ("when: {method: coteaching}", "when: {method: jocor}",
     "override when method 'jocor' is not a method of the grid"),
    ("when: {method: coteaching}", "when: {method: coteaching, noise_rate: 0.5}",
     "overrides[0] matches no run of the grid"),
    ("method_params: {forget_rate: 0.1}", "method_params: {forget_rat: 0.1}",
     "has a parameter 'forget_rat'; did you mean 'forget_rate'?"),
    ("method_params: {forget_rate: 0.1}", "method_params: {forget_rate: high}",
     "overrides[0].method_params.forget_rate must be a number (a parameter of coteaching)"),
    ("seeds: [1]", "seeds: [1]\ncolour: red", "unknown key 'colour'; known: dataset,"),
    ("seeds: [1]", "seeds: 0", "seeds must be a positive count or a list of distinct integers"),
    ("dataset: digits", "dataset: mnsit", "unknown dataset 'mnsit'; did you mean 'mnist'?"),
    ("network: mlp", "network: mpl", "unknown network 'mpl'; did you mean 'mlp'?"),
    ("network: mlp", "network: {digits: vgg}", "unknown network 'vgg'"),
    ("network: mlp", "network: {digits: mlp, mnsit: cnn6}",
     "network names 'mnsit', not a dataset of the grid"),
    ("{type: symmetric, rate: 0.2}", "{type: symetric, rate: 0.2}",
     "unknown noise type 'symetric'; did you mean 'symmetric'?"),
    ("{type: symmetric, rate: 0.2}", "{type: symmetric, rat: 0.2}",
     "unknown key 'rat' in a noise entry; did you mean 'rate'?"),
    ("{type: symmetric, rate: 0.2}", "{type: symmetric}", "noise type symmetric needs a rate"),
    ("{type: symmetric, rate: 0.2}", "{type: symmetric, rate: 0.2, variant: aggre}",
     "noise type symmetric takes no variant"),
    ("train: {epochs: 2,", "train: {preset: jocr, epochs: 2,",
     "unknown preset 'jocr'; did you mean 'jocor'?"),
    ("seeds: [1]", "seeds: [1]\nseeds: [2]", "duplicate key 'seeds' (first given on line 11)"),
]


@pytest.mark.parametrize("old,new,message", BAD, ids=[new.splitlines()[-1] for _, new, _ in BAD])
def test_bad_line_is_one_error_at_its_line(tmp_path, old, new, message) -> None:
    path, line = bad_grid(tmp_path, old, new)
    error = load_error(path)
    assert error.startswith(f"{path}:{line}: "), error
    assert message in error, error


@pytest.mark.parametrize("change,message", [
    ({"train": [1, 2]}, "train must be a mapping, got [1, 2]"),
    ({"methods": {}}, "methods must not be empty"),
    ({"overrides": {"when": {}}}, "overrides must be a list"),
    ({"noise": []}, "noise must not be empty"),
    ({"seeds": True}, "seeds must be a positive count"),
    ({"datasets": "mnist"}, "datasets must be a list, got 'mnist'"),
    ({"overrides": [{"when": {"noise_rate": "high"}}]},
     "overrides[0].when.noise_rate must be a number, got 'high'"),
    ({"methods": {"jocor": {"co_lambda": [0.1, True]}}},
     "methods.jocor.co_lambda must be a number, got True"),
])
def test_wrong_shapes_of_a_parsed_grid(change, message) -> None:
    raw = {"name": "g", "methods": {"standard": {}}, "noise": [{"type": "none"}], **change}
    with pytest.raises(ConfigError) as info:
        expand_grid(raw)
    assert str(info.value).startswith(f"<grid>: {message}"), info.value


def test_not_utf8(tmp_path) -> None:
    path = tmp_path / "g.yaml"
    path.write_bytes(GOOD.replace("name: g\n", "name: g\ndescription: caf\xe9\n").encode("latin-1"))
    error = load_error(path)
    assert error.startswith(f"{path}:2: not UTF-8 text")


def test_a_file_that_is_not_a_mapping(tmp_path) -> None:
    path = tmp_path / "g.yaml"
    path.write_text("- standard\n- jocor\n")
    assert "a grid file must be a mapping" in load_error(path)


def test_missing_key(tmp_path) -> None:
    path = tmp_path / "g.yaml"
    path.write_text("name: g\nmethods: {standard: {}}\n")
    assert load_error(path) == f"{path}: missing key 'noise'"


# ---- through the CLI: exit status 2, one line, nothing written -------------------------------

@pytest.mark.parametrize("old,new,message", [
    ("train: {epochs: 2, batch_size: 64, lr: 0.001}", "train: {epochs: 2.5, batch_size: 64, lr: 1e-3}",
     "train.epochs must be an integer, got 2.5"),
    ("name: g", "name: ../escaped", "name must be a plain name"),
    ("seeds: [1]", "seeds: [1]\nseeds: [2]", "duplicate key 'seeds'"),
    ("protocol: last10", "protocl: best", "did you mean 'protocol'?"),
])
def test_cli_dry_run_refuses_a_bad_grid(tmp_path, old, new, message) -> None:
    path, line = bad_grid(tmp_path, old, new)
    results = tmp_path / "results"
    proc = subprocess.run([sys.executable, "-m", "bench", "run", str(path), "--dry-run",
                           "--results", str(results)], capture_output=True, text=True,
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith(f"error: {path}:{line}: ") and message in lines[0], lines[0]
    assert not results.exists() and not (tmp_path.parent / "escaped").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.yaml"]


# ---- presets ---------------------------------------------------------------------------------

def test_preset_keys_apply_first_and_the_grid_overrides_them(tmp_path) -> None:
    path, _ = bad_grid(tmp_path, "train: {epochs: 2, batch_size: 64, lr: 0.001}",
                       "train: {preset: jocor, decay_start: 100}")
    train = load_grid(path).runs[0].train
    preset = yaml.safe_load((schema.PRESETS_DIR / "jocor.yaml").read_text())
    assert train.decay_start == 100 != preset["decay_start"]
    assert all(getattr(train, key) == value for key, value in preset.items()
               if key not in ("decay_start", "milestones"))


def test_an_override_may_name_a_preset(tmp_path) -> None:
    path, _ = bad_grid(tmp_path, "method_params: {forget_rate: 0.1}",
                       "train: {preset: rsl, epochs: 3}")
    runs = {r.method: r.train for r in load_grid(path).runs}
    assert runs["standard"].optimizer == "adam" and runs["standard"].epochs == 2
    assert runs["coteaching"].optimizer == "sgd" and runs["coteaching"].epochs == 3
    assert runs["coteaching"].milestones == (60, 120, 160)


def test_a_bad_preset_names_its_own_file_and_line(tmp_path, monkeypatch) -> None:
    presets = tmp_path / "presets"
    presets.mkdir()
    (presets / "mine.yaml").write_text("epochs: 10\nmomentun: 0.9\n")
    monkeypatch.setattr(schema, "PRESETS_DIR", presets)
    path, _ = bad_grid(tmp_path, "train: {epochs: 2,", "train: {preset: mine, epochs: 2,")
    error = load_error(path)
    assert error.startswith(f"{presets / 'mine.yaml'}:2: unknown key 'momentun' in train; "
                            "did you mean 'momentum'?"), error


def test_a_preset_cannot_name_a_preset() -> None:
    with pytest.raises(schema.GridError, match="unknown key 'preset' in train"):
        schema.validated(schema.TrainSettings, {"preset": "jocor"})


def test_every_shipped_preset_is_valid_and_used() -> None:
    names = sorted(p.stem for p in schema.PRESETS_DIR.glob("*.yaml"))
    assert names
    texts = "".join(p.read_text() for p in (REPO / "bench" / "grids").glob("*.yaml"))
    for name in names:
        assert TrainConfig.from_dict(schema.load_preset(name))
        assert f"preset: {name}" in texts, name


def test_the_train_schema_declares_every_train_option() -> None:
    declared = set(schema.TrainSettings.model_fields)
    assert declared == {f.name for f in dataclasses.fields(TrainConfig)}
