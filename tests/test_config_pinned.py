"""The shipped grids expand to exactly the runs they always did.

``tests/fixtures/shipped_grids.json`` holds, for every ``bench/grids/*.yaml``, the list of
``[run_id, spec.to_dict() + filename]`` of its expansion. It was written by running this module
(``python tests/test_config_pinned.py``) on the tree before the grid schema and the protocol
presets existed, and is compared here field by field: rewriting a grid (presets, ``extends``) or
the loader must leave every run id, config hash, label, reference and file name as it was, so
that the records in ``results/`` stay the runs of their grids. Regenerate it only for a change
that is meant to alter runs, and say so in the commit.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
GRIDS = REPO / "bench" / "grids"
FIXTURE = REPO / "tests" / "fixtures" / "shipped_grids.json"


def expanded(path: Path) -> list[list[Any]]:
    """``[run_id, full description]`` of every run of a grid file, in expansion order."""
    from bench.config import load_grid

    return [[spec.run_id, {**spec.to_dict(), "filename": spec.filename}]
            for spec in load_grid(path).runs]


def pinned() -> dict[str, list[list[Any]]]:
    return json.loads(FIXTURE.read_text(encoding="utf-8"))


def test_the_fixture_covers_every_shipped_grid() -> None:
    assert sorted(pinned()) == sorted(p.stem for p in GRIDS.glob("*.yaml"))


@pytest.mark.parametrize("name", sorted(p.stem for p in GRIDS.glob("*.yaml")))
def test_shipped_grid_expands_as_pinned(name: str) -> None:
    want = pinned()[name]
    got = json.loads(json.dumps(expanded(GRIDS / f"{name}.yaml")))
    assert len(got) == len(want)
    for (got_id, got_spec), (want_id, want_spec) in zip(got, want):
        assert got_id == want_id
        assert got_spec == want_spec


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    dump = {p.stem: expanded(p) for p in sorted(GRIDS.glob("*.yaml"))}
    lines = ",\n".join(f"{json.dumps(name)}: [\n" + ",\n".join(
        json.dumps(run, sort_keys=True) for run in runs) + "\n]" for name, runs in dump.items())
    FIXTURE.write_text("{\n" + lines + "\n}\n", encoding="utf-8")   # one run a line: diffable
    print(f"{FIXTURE}: {sum(map(len, dump.values()))} runs of {len(dump)} grids")
