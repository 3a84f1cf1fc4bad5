"""The copy / empty / flow baselines on the whole dev set reproduce the README's reference table."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.evaluation.runner import Options, Result, evaluate
from service.evaluation.trackers import make_tracker
from tests.conftest import DATA_DEV

# ../shared/data/README.md, "Reference numbers on dev" (J&F), per protocol: dataset -> number.
DATASETS = ("acdc", "brats", "cvc", "deeplesion", "echonet", "hippocampus", "isbi2012", "overall")
README = {
    ("first", "copy"): (0.571, 0.121, 0.449, 0.227, 0.448, 0.072, 0.326, 0.316),
    ("first", "flow"): (0.866, 0.135, 0.507, 0.390, 0.614, 0.190, 0.549, 0.464),
    ("first", "empty"): (0.000, 0.061, 0.000, 0.244, 0.000, 0.302, 0.000, 0.087),
    ("best", "copy"): (0.559, 0.324, 0.358, 0.384, 0.448, 0.179, 0.420, 0.382),
    ("best", "flow"): (0.668, 0.358, 0.309, 0.480, 0.614, 0.260, 0.738, 0.490),
    ("best", "empty"): (0.250, 0.115, 0.000, 0.367, 0.000, 0.430, 0.000, 0.166),
}
TOLERANCE = 0.002


def _run(model: str) -> Result:
    if not DATA_DEV.is_dir():
        pytest.skip("../shared/data/dev is not present")
    return evaluate(DATA_DEV, make_tracker(model, Path(".")), Options())


def _check(result: Result, model: str) -> None:
    for protocol, summary in result.summaries.items():
        got = {d: m.jf for d, m in summary.datasets.items()}
        got["overall"] = summary.overall.jf
        assert sorted(got) == sorted(DATASETS)
        for dataset, expected in zip(DATASETS, README[(protocol, model)]):
            assert got[dataset] == pytest.approx(expected, abs=TOLERANCE), (protocol, model, dataset)


@pytest.mark.parametrize("model", ["copy", "empty"])
def test_cheap_baselines_match_the_readme(model: str) -> None:
    result = _run(model)
    assert len(result.summaries["first"].sequences) == 32
    _check(result, model)


@pytest.mark.slow
def test_flow_baseline_matches_the_readme() -> None:
    _check(_run("flow"), "flow")
