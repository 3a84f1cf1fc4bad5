"""Training can be restricted to datasets whose licences allow shipping the weights."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.errors import InvalidInput
from service.training.sources import DataSources
from tests.conftest import SHARED

TRAIN = SHARED / "data" / "train"


def test_dataset_filter_keeps_only_named_sets() -> None:
    if not TRAIN.is_dir():
        pytest.skip("../shared/data/train is not present")
    src = DataSources([TRAIN], datasets=("hippocampus", "hc18"))
    names = {i.name.split("__")[0] for i in (*src.statics, *src.sequences)}
    assert names == {"hippocampus", "hc18"}
    assert src.describe()["sequences"] == 200 and src.describe()["static_pairs"] == 300
    with pytest.raises(InvalidInput, match="no training sequence"):
        DataSources([TRAIN], datasets=("nope",))


def test_dev_is_refused() -> None:
    dev = SHARED / "data" / "dev"
    if not dev.is_dir():
        pytest.skip("../shared/data/dev is not present")
    with pytest.raises(InvalidInput, match="never train on it"):
        DataSources([Path(dev)])
