"""Protocols derived from annotations equal the published protocols.json (and the README's rules)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from service.evaluation.dataset import list_sequences
from service.evaluation.protocol import derive, derive_best, derive_first, parse
from tests.conftest import DATA_DEV


@pytest.fixture(scope="module")
def dev_table() -> dict[str, dict[str, object]]:
    if not (DATA_DEV / "protocols.json").is_file():
        pytest.skip("../shared/data/dev is not present")
    table: dict[str, dict[str, object]] = json.loads((DATA_DEV / "protocols.json").read_text())
    return table


@pytest.mark.parametrize("name", ["first", "best"])
def test_derived_protocols_equal_protocols_json(dev_table: dict[str, dict[str, object]], name: str) -> None:
    sequences = list_sequences(DATA_DEV)
    assert sorted(s.name for s in sequences) == sorted(dev_table)
    for seq in sequences:
        derived = derive(name, seq.read_annotations())
        assert derived == parse(dev_table[seq.name], name), seq.name
        assert derived.to_json() == dev_table[seq.name][name], seq.name


def _ann(*objects: tuple[int, int]) -> np.ndarray:
    """A 6x6 index mask with ``area`` pixels of each (object, area) pair, in separate rows."""
    m = np.zeros((6, 6), np.int64)
    for row, (obj, area) in enumerate(objects):
        m[row, :area] = obj
    return m


def test_first_gives_each_object_where_it_appears() -> None:
    anns = {"00000": _ann(), "00002": _ann((1, 2)), "00003": _ann((1, 3), (2, 1)), "00005": _ann((2, 4))}
    p = derive_first(anns)
    assert p.direction == "forward"
    assert [(x.frame, x.objects) for x in p.prompts] == [("00002", (1,)), ("00003", (2,))]
    # scored: every GT frame after its own given frame, including where it has disappeared
    assert p.scored == {1: ("00003", "00005"), 2: ("00005",)}


def test_first_groups_objects_appearing_together() -> None:
    p = derive_first({"00001": _ann((2, 1), (1, 1)), "00004": _ann()})
    assert [(x.frame, x.objects) for x in p.prompts] == [("00001", (1, 2))]


def test_best_takes_the_largest_frame_earliest_on_ties() -> None:
    anns = {"00000": _ann((1, 2)), "00001": _ann((1, 3), (2, 2)), "00002": _ann((2, 5)), "00003": _ann()}
    p = derive_best(anns)
    assert p.direction == "both"
    assert [(x.frame, x.objects) for x in p.prompts] == [("00001", (1, 2))]  # 5 px, tied with 00002
    assert p.scored == {1: ("00000", "00002", "00003"), 2: ("00000", "00002", "00003")}


def test_best_leaves_out_objects_absent_on_the_given_frame() -> None:
    p = derive_best({"00000": _ann((1, 1)), "00001": _ann((2, 6))})
    assert p.prompts[0].objects == (2,)
    assert set(p.scored) == {2}
