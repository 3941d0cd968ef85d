"""Grid files: expansion, labels, run ids, overrides, seeds, and one-line errors from the CLI."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from dataclasses import dataclass
import json
from pathlib import Path

import pytest

from bench.__main__ import main
from bench.config import (RunSpec, TrainConfig, expand_grid, filter_runs, load_grid,
                          resolve_method_params)
from bench.errors import ConfigError
from bench.registry import DATASETS, METHODS, NETWORKS, NOISE_MODELS
from methods.base import Method

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class ToyConfig:
    select_on: str = "joint"
    co_lambda: float = 0.1
    warm_up: int = 0

    def __post_init__(self) -> None:
        if self.select_on not in ("joint", "ce"):
            raise ValueError(f"select_on must be joint or ce, got {self.select_on!r}")


class Toy(Method):
    """A test-only method with parameters and per-setting defaults."""

    Config = ToyConfig

    @classmethod
    def setting_defaults(cls, *, dataset, noise_type, noise_rate):
        return {"co_lambda": 0.05} if noise_rate is not None and noise_rate >= 0.8 else {}


@pytest.fixture
def toy(monkeypatch):
    """Registers ``toy`` for one test only (the registry-wide tests never see it)."""
    METHODS.names()  # load the real registrations first
    monkeypatch.setitem(METHODS._items, "toy", Toy)
    return "toy"


def grid(**over) -> dict:
    base = {"name": "g", "dataset": "digits", "network": "mlp",
            "train": {"epochs": 2, "batch_size": 64}, "methods": {"standard": {}},
            "noise": [{"type": "symmetric", "rate": 0.2}], "seeds": [1]}
    base.update(over)
    return {key: value for key, value in base.items() if value is not None}   # None: left out


# ---- expansion -------------------------------------------------------------------------------

def test_grid_expands_to_the_product(toy) -> None:
    g = expand_grid(grid(
        dataset=None, datasets=["digits", "mnist"], network={"digits": "mlp", "mnist": "cnn6"},
        methods={"standard": {}, "toy": {"select_on": ["joint", "ce"], "co_lambda": [0.1, 0.2],
                                         "warm_up": 1}},
        noise=[{"type": "symmetric", "rate": [0.2, 0.5]}, {"type": "pairflip", "rate": 0.45},
               {"type": "none"}],
        seeds=3), name="g")
    # (1 + 2 x 2 variations) x 2 datasets x 4 noise settings x 3 seeds
    assert len(g) == 5 * 2 * 4 * 3
    assert len({r.run_id for r in g.runs}) == len(g)
    assert {r.network for r in g.runs if r.dataset == "mnist"} == {"cnn6"}
    settings = {(r.noise_type, r.noise_rate) for r in g.runs}
    assert settings == {("symmetric", 0.2), ("symmetric", 0.5), ("pairflip", 0.45), ("none", None)}
    assert all(r.method_params["warm_up"] == 1 for r in g.runs if r.method == "toy")


def test_labels_name_the_varied_parameters(toy) -> None:
    g = expand_grid(grid(methods={"standard": {}, "toy": {"select_on": ["joint", "ce"],
                                                          "co_lambda": 0.3}}), name="g")
    assert sorted({r.label for r in g.runs}) == ["standard", "toy(select_on=ce)",
                                                 "toy(select_on=joint)"]
    both = expand_grid(grid(methods={"toy": {"select_on": ["joint", "ce"],
                                             "co_lambda": [0.1, 0.2]}}), name="g")
    assert "toy(select_on=ce,co_lambda=0.2)" in {r.label for r in both.runs}
    # a literal list is wrapped in a list so that it does not expand
    one = expand_grid(grid(methods={"toy": {"select_on": ["ce"]}}), name="g")
    assert [r.label for r in one.runs] == ["toy"]


def test_jocor_label_style() -> None:
    if "jocor" not in METHODS:
        pytest.skip("jocor is not registered")
    g = expand_grid(grid(methods={"jocor": {"select_on": ["joint", "ce"]}}), name="g")
    assert sorted(r.label for r in g.runs) == ["jocor(select_on=ce)", "jocor(select_on=joint)"]


def test_seeds_and_noise_seed() -> None:
    assert [r.seed for r in expand_grid(grid(seeds=3), name="g").runs] == [1, 2, 3]
    assert [r.seed for r in expand_grid(grid(seeds=[5, 7]), name="g").runs] == [5, 7]
    own = expand_grid(grid(seeds=[5, 7], noise_seed="seed"), name="g").runs
    assert [(r.seed, r.noise_seed) for r in own] == [(5, 5), (7, 7)]
    fixed = expand_grid(grid(seeds=[5, 7], noise_seed=0), name="g").runs
    assert [(r.seed, r.noise_seed) for r in fixed] == [(5, 0), (7, 0)]
    # default: each seed draws its own noise
    assert [r.noise_seed for r in expand_grid(grid(seeds=2), name="g").runs] == [1, 2]
    with pytest.raises(ConfigError, match="noise_seed"):
        expand_grid(grid(noise_seed="random"), name="g")
    with pytest.raises(ConfigError, match="seeds"):
        expand_grid(grid(seeds=["a"]), name="g")


def test_noise_seeds_cross_the_seeds() -> None:
    runs = expand_grid(grid(seeds=2, noise_seeds=[0, 3, 4]), name="g").runs
    pairs = [(r.seed, r.noise_seed) for r in runs]
    assert sorted(pairs) == [(s, n) for s in (1, 2) for n in (0, 3, 4)]
    assert len({r.run_id for r in runs}) == 6 and len({r.filename for r in runs}) == 6
    # a crossed run with noise seed 0 is the run of a grid that pins noise_seed 0
    pinned = {r.run_id for r in expand_grid(grid(seeds=2, noise_seed=0), name="h").runs}
    assert pinned == {r.run_id for r in runs if r.noise_seed == 0}
    with pytest.raises(ConfigError, match="not both"):
        expand_grid(grid(noise_seed=0, noise_seeds=[0, 1]), name="g")
    for bad in ([0, 0], [-1], [], ["a"], 1.5):
        with pytest.raises(ConfigError, match="noise_seeds must be"):
            expand_grid(grid(noise_seeds=bad), name="g")


def test_noise_entry_sets_its_own_draw_and_noise_seed() -> None:
    noise = [{"type": "symmetric", "rate": [0.2, 0.5]},
             {"type": "symmetric", "rate": 0.5, "draw": "official", "noise_seed": 0}]
    runs = expand_grid(grid(seeds=3, noise_seeds=[0, 1], noise=noise), name="g").runs
    suite = [r for r in runs if r.noise_draw == "suite"]
    official = [r for r in runs if r.noise_draw != "suite"]
    assert len(suite) == 2 * 3 * 2 and len(official) == 3
    assert {(r.noise_draw, r.noise_seed, r.label) for r in official} == {
        ("noisify", 0, "standard(draw=noisify)")}
    assert {r.label for r in suite} == {"standard"}
    # the official draw is part of the configuration: same seeds, other run_ids
    twins = {(r.seed, r.noise_seed, r.noise_rate): r.run_id for r in suite}
    assert all(twins[(r.seed, r.noise_seed, r.noise_rate)] != r.run_id for r in official)
    assert all(r.config_dict()["noise_draw"] == "noisify" for r in official)
    assert all("noise_draw" not in r.config_dict() for r in suite)


def test_grid_wide_draw_and_labels() -> None:
    runs = expand_grid(grid(dataset="mnist", noise_draw="official",
                            noise=[{"type": "symmetric", "rate": 0.2},
                                   {"type": "pairflip", "rate": 0.45}]), name="g").runs
    assert {r.noise_draw for r in runs} == {"noisify"}
    assert {r.label for r in runs} == {"standard"}          # one draw: labels stay plain
    both = expand_grid(grid(methods={"jocor": {"select_on": ["joint", "ce"]}},
                            noise=[{"type": "symmetric", "rate": 0.2},
                                   {"type": "symmetric", "rate": 0.2, "draw": "noisify"}]),
                       name="g").runs
    assert {r.label for r in both} == {"jocor(select_on=joint)", "jocor(select_on=ce)",
                                      "jocor(select_on=joint,draw=noisify)",
                                      "jocor(select_on=ce,draw=noisify)"}
    assert filter_runs(both, ["noise_draw=noisify"]) == [r for r in both
                                                         if r.noise_draw == "noisify"]
    spec = next(r for r in both if r.noise_draw == "noisify")
    assert RunSpec.from_dict(spec.to_dict()).run_id == spec.run_id


def test_overrides_apply_in_order(toy) -> None:
    g = expand_grid(grid(
        methods={"standard": {}, "toy": {}},
        noise=[{"type": "symmetric", "rate": [0.2, 0.5, 0.8]}],
        overrides=[{"when": {"method": "toy"}, "method_params": {"co_lambda": 0.3},
                    "train": {"lr": 0.01}},
                   {"when": {"method": "toy", "noise_rate": [0.5, 0.8]},
                    "method_params": {"co_lambda": 0.65}},
                   {"when": {"noise_rate": 0.8}, "train": {"lr": 0.0005}}]), name="g")
    by = {(r.method, r.noise_rate): r for r in g.runs}
    assert by["toy", 0.2].method_params["co_lambda"] == 0.3
    assert by["toy", 0.5].method_params["co_lambda"] == 0.65
    # the override beats the per-setting default (0.05 at 80%)
    assert by["toy", 0.8].method_params["co_lambda"] == 0.65
    assert by["toy", 0.2].train.lr == 0.01 and by["toy", 0.5].train.lr == 0.01
    assert by["toy", 0.8].train.lr == 0.0005 and by["standard", 0.8].train.lr == 0.0005
    assert by["standard", 0.2].train.lr == 0.001


def test_method_parameters_resolve_in_order(toy) -> None:
    kw = dict(dataset="digits", noise_type="symmetric")
    assert resolve_method_params("toy", {}, noise_rate=0.2, **kw) == {
        "co_lambda": 0.1, "select_on": "joint", "warm_up": 0}
    assert resolve_method_params("toy", {}, noise_rate=0.8, **kw)["co_lambda"] == 0.05
    assert resolve_method_params("toy", {"co_lambda": 0.9}, noise_rate=0.8, **kw)[
        "co_lambda"] == 0.9
    with pytest.raises(ConfigError, match="no parameter"):
        resolve_method_params("toy", {"lambda": 1}, noise_rate=0.2, **kw)
    with pytest.raises(ConfigError, match="select_on must be"):
        resolve_method_params("toy", {"select_on": "kl"}, noise_rate=0.2, **kw)


# ---- run ids ---------------------------------------------------------------------------------

def test_run_id_is_stable_and_sensitive_to_every_config_field(toy, write_grid) -> None:
    path = write_grid(grid(methods={"toy": {"select_on": ["joint", "ce"]}}, seeds=2))
    first, second = load_grid(path), load_grid(path)
    assert [r.run_id for r in first.runs] == [r.run_id for r in second.runs]
    spec = first.runs[0]
    assert len(spec.run_id) == 16 and spec.run_id in spec.filename
    changes = {
        "method": "standard", "dataset": "mnist", "network": "cnn6", "noise_type": "pairflip",
        "noise_rate": 0.3, "noise_variant": "aggre", "noise_seed": 99, "seed": 99,
        "method_params": {**spec.method_params, "co_lambda": 0.2},
    }
    assert set(changes) | {"train"} == set(spec.config_dict())
    for field, value in changes.items():
        other = dataclasses.replace(spec, **{field: value})
        assert other.run_id != spec.run_id, field
    for f in dataclasses.fields(TrainConfig):
        current = getattr(spec.train, f.name)
        value = {"epochs": 7, "start_epoch": 1, "optimizer": "sgd", "schedule": "multistep",
                 "milestones": (3,), "max_iters_per_epoch": 5, "augment": "crop_flip",
                 "network_options": {"hidden": 32}, "precision": "bf16",
                 "clean_val_fraction": 0.1}.get(f.name)
        if value is None:
            value = (not current) if isinstance(current, bool) else current * 2 + 1
        assert value != current
        other = dataclasses.replace(spec, train=dataclasses.replace(spec.train, **{f.name: value}))
        assert other.run_id != spec.run_id, f"train.{f.name}"
    # what does not change the computation does not change the id
    same = dataclasses.replace(spec, grid="other", label="x", reference={"paper": "p"})
    assert same.run_id == spec.run_id


def test_spec_round_trips_through_a_dict() -> None:
    spec = expand_grid(grid(train={"epochs": 3, "milestones": [1, 2]}), name="g").runs[0]
    again = RunSpec.from_dict(spec.to_dict())
    assert again.run_id == spec.run_id and again.train == spec.train


def test_filter_runs() -> None:
    g = expand_grid(grid(noise=[{"type": "symmetric", "rate": [0.2, 0.5]}], seeds=2), name="g")
    assert len(filter_runs(g.runs, ["noise_rate=0.5"])) == 2
    assert len(filter_runs(g.runs, ["seed=1,2", "noise_type=symmetric"])) == 4
    with pytest.raises(ConfigError, match="cannot filter"):
        filter_runs(g.runs, ["colour=red"])


def test_filter_runs_on_a_method_parameter(toy) -> None:
    g = expand_grid(grid(methods={"standard": {}, "toy": {"select_on": ["joint", "ce"],
                                                          "co_lambda": [0.1, 0.2]}}), name="g")
    ce = filter_runs(g.runs, ["select_on=ce"])
    assert len(ce) == 2 and {r.method_params["select_on"] for r in ce} == {"ce"}
    # numbers compare as numbers; runs without the parameter (standard) never match
    assert [r.method_params["co_lambda"] for r in filter_runs(g.runs, ["co_lambda=0.20"])] == [0.2] * 2
    assert filter_runs(g.runs, ["select_on=ce", "co_lambda=0.1"])[0].label.startswith("toy")
    with pytest.raises(ConfigError, match=r"method parameter of the grid \(co_lambda, select_on"):
        filter_runs(g.runs, ["colour=red"])


# ---- errors through the CLI: one line, exit status 2 --------------------------------------------

def run_cli(capsys, *argv: str) -> tuple[int, str]:
    status = main(list(argv))
    err = capsys.readouterr().err
    return status, err


def assert_one_line_error(status: int, err: str, *fragments: str) -> None:
    assert status == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


@pytest.mark.parametrize("change,fragments", [
    ({"methods": {"standard": {}, "nosuch": {}}},
     ["unknown method 'nosuch'", *METHODS.names()]),
    ({"dataset": "imagenet22k"}, ["unknown dataset 'imagenet22k'", *DATASETS.names()]),
    ({"network": "vgg99"}, ["unknown network 'vgg99'", *NETWORKS.names()]),
    ({"noise": [{"type": "gaussian", "rate": 0.2}]},
     ["unknown noise type 'gaussian'", *NOISE_MODELS.names()]),
    ({"noise": [{"type": "symmetric", "rate": 1.0}]}, ["noise rate 1.0", "[0, 1)"]),
    ({"noise": [{"type": "symmetric", "rate": -0.1}]}, ["noise rate -0.1", "[0, 1)"]),
    ({"train": {"epochs": 2, "learning_rate": 0.1}}, ["unknown key 'learning_rate' in train"]),
    ({"methods": {"standard": {"forget_rate": 0.2}}}, ["no parameter", "forget_rate"]),
    ({"colour": "red"}, ["unknown key 'colour'"]),
    ({"noise": [{"type": "symmetric", "rate": 0.2, "draw": "mine"}]},
     ["unknown noise draw 'mine'", "dividemix", "noisify", "suite"]),
    ({"noise": [{"type": "instance", "rate": 0.2, "draw": "official"}]},
     ["no official noise draw", "symmetric_inclusive"]),
    ({"noise": [{"type": "asymmetric", "rate": 0.4, "draw": "noisify"}]},
     ["noise draw 'noisify'", "not 'digits'"]),
    ({"noise_draw": "dividemix"}, ["noise draw 'dividemix' has no 'symmetric' noise"]),
    ({"noise_seeds": [0, -2]}, ["noise_seeds must be"]),
])
def test_bad_grid_is_one_line_and_status_2(capsys, write_grid, tmp_path, change, fragments):
    path = write_grid(grid(**change))
    status, err = run_cli(capsys, "run", str(path), "--results", str(tmp_path / "results"))
    assert_one_line_error(status, err, str(path), *fragments)
    assert not (tmp_path / "results").exists()


def test_unknown_method_error_names_the_line(capsys, write_grid, tmp_path) -> None:
    path = write_grid("name: g\ndataset: digits\nmethods:\n  standard: {}\n  nosuch: {}\n"
                      "noise: [{type: none}]\n")
    status, err = run_cli(capsys, "run", str(path), "--results", str(tmp_path))
    assert_one_line_error(status, err, f"{path}:5:", "unknown method 'nosuch'")


def test_malformed_yaml_names_the_line(capsys, write_grid, tmp_path) -> None:
    path = write_grid("name: bad\ndataset: digits\nmethods: {standard: {}}\nnoise: type: none\n")
    status, err = run_cli(capsys, "run", str(path), "--results", str(tmp_path))
    assert_one_line_error(status, err, f"{path}:4:", "malformed YAML")


def test_missing_grid_file(capsys, tmp_path) -> None:
    status, err = run_cli(capsys, "run", str(tmp_path / "none.yaml"))
    assert_one_line_error(status, err, "none.yaml", "not found")


def test_missing_data_folder(capsys, write_grid, tmp_path, monkeypatch) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("DATA_ROOT", str(empty))
    path = write_grid(grid(dataset="mnist"))
    status, err = run_cli(capsys, "run", str(path), "--results", str(tmp_path / "results"))
    assert_one_line_error(status, err, str(empty / "MNIST" / "raw"), "train-images-idx3-ubyte")


def test_cli_subprocess_exit_status(write_grid, tmp_path) -> None:
    path = write_grid(grid(methods={"nosuch": {}}))
    proc = subprocess.run([sys.executable, "-m", "bench", "run", str(path), "--results",
                           str(tmp_path / "results")], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert proc.returncode == 2
    assert_one_line_error(proc.returncode, proc.stderr, "unknown method 'nosuch'")


# ---- committed results stay addressable -----------------------------------------------------

def _ignored(path: Path) -> bool:
    """Whether git ignores ``path`` (local outputs such as results/demo are not the project's)."""
    import subprocess

    try:
        out = subprocess.run(["git", "check-ignore", "-q", str(path)], cwd=REPO,
                             capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0


def _result_grids() -> list[str]:
    results = REPO / "results"
    return sorted(p.name for p in results.iterdir()
                  if p.is_dir() and (REPO / "bench" / "grids" / f"{p.name}.yaml").is_file()
                  and any(p.glob("*.json")) and not _ignored(p)) if results.is_dir() else []


@pytest.mark.parametrize("name", _result_grids())
def test_every_record_is_a_run_of_its_grid(name) -> None:
    """A changed default or a new method parameter changes run_ids: the records in results/
    would then no longer count as done and their cells would be trained again."""
    from bench.store import read_record

    specs = {r.run_id: r for r in load_grid(REPO / "bench" / "grids" / f"{name}.yaml").runs}
    for path in sorted((REPO / "results" / name).glob("*.json")):
        record = read_record(path)
        assert record["run_id"] in specs, f"{path.name} matches no run of {name}.yaml"
        spec = specs[record["run_id"]]
        assert path.name == spec.filename
        assert {k: record[k] for k in spec.config_dict()} == json.loads(
            json.dumps(spec.config_dict())), path.name


# ---- the grids' noise draws ------------------------------------------------------------------

SUITE_DRAW_GRIDS = ("jocor_mnist", "jocor_mnist_ablation", "jocor_mnist_fcorrection")


@pytest.mark.parametrize("name", SUITE_DRAW_GRIDS)
def test_committed_grids_keep_the_suite_draw_and_their_run_ids(name) -> None:
    """These grids' records were made with noise_seed 0 and the suite's sampler: every record
    must stay a run of the grid, and the grid must say the draw is not the paper's."""
    from bench.store import read_record

    path = REPO / "bench" / "grids" / f"{name}.yaml"
    runs = load_grid(path).runs
    assert {(r.noise_draw, r.noise_seed) for r in runs} == {("suite", 0)}
    records = sorted((REPO / "results" / name).glob("*.json"))
    assert records, f"results/{name} holds no records"
    ids = {r.run_id for r in runs}
    assert all(read_record(p)["run_id"] in ids for p in records)
    assert "not the paper's" in path.read_text()


@pytest.mark.parametrize("name,draw,noise_seed", [
    ("jocor_cifar10", "noisify", 0), ("jocor_cifar100", "noisify", 0),
    ("coteaching_plus_mnist", "noisify", 0),
    ("dividemix_cifar10", "dividemix", 123), ("dividemix_cifar100", "dividemix", 123),
])
def test_paper_grids_run_on_the_official_draw(name, draw, noise_seed) -> None:
    runs = load_grid(REPO / "bench" / "grids" / f"{name}.yaml").runs
    assert {(r.noise_draw, r.noise_seed) for r in runs} == {(draw, noise_seed)}


def test_other_grids_draw_with_the_seed() -> None:
    pinned = set(SUITE_DRAW_GRIDS) | {"jocor_cifar10", "jocor_cifar100", "coteaching_plus_mnist",
                                      "dividemix_cifar10", "dividemix_cifar100", "noise_draw_mnist",
                                      "cifar10n",   # cifar10n: human labels, no draw
                                      "jocor_lambda_mnist"}   # jocor_mnist's draw, its runs reused
    others = [p for p in sorted((REPO / "bench" / "grids").glob("*.yaml")) if p.stem not in pinned]
    assert others
    for path in others:
        assert all(r.noise_seed == r.seed for r in load_grid(path).runs), path.name


def test_noise_draw_grid_crosses_draws_and_reuses_jocor_mnist() -> None:
    runs = load_grid(REPO / "bench" / "grids" / "noise_draw_mnist.yaml").runs
    jocor = {r.run_id: r for r in load_grid(REPO / "bench" / "grids" / "jocor_mnist.yaml").runs}
    suite = [r for r in runs if r.noise_draw == "suite"]
    official = [r for r in runs if r.noise_draw == "noisify"]
    assert len(runs) == len(suite) + len(official) == 108
    for method in ("standard", "coteaching", "jocor"):
        for rate in (0.5, 0.8):
            cell = [r for r in suite if r.method == method and r.noise_rate == rate]
            assert sorted((r.noise_seed, r.seed) for r in cell) == [
                (n, s) for n in range(5) for s in (1, 2, 3)]
    reused = [r for r in runs if r.run_id in jocor]
    assert len(reused) == 18
    assert {(r.noise_draw, r.noise_seed, r.seed) for r in reused} == {
        ("suite", 0, s) for s in (1, 2, 3)}
    assert all(jocor[r.run_id].label == r.label for r in reused)
    assert {(r.noise_seed, r.seed) for r in official} == {(0, s) for s in (1, 2, 3)}
