"""The bundled imos-lite: trained, within the size guide, licensed, and no worse than it shipped.

The regression floor is a little under what the shipped weights score on a few dev sequences at
reduced size (see docs/model-card.md for the full table); a change to the engine, preprocessing or
weights that costs quality fails here.
"""

from __future__ import annotations

import pytest

from service.engine.repo import ModelRepo
from service.evaluation.runner import Options, evaluate
from service.evaluation.trackers import CopyTracker, ModelTracker
from tests.conftest import DATA_DEV, ROOT

REPO = ROOT / "model_repo"
SEQUENCES = "hippocampus__003,hippocampus__142,acdc__*,echonet__0X1012703CDC1436FE,deeplesion__000001_02_01_008-023"
SIZE = 160  # the model's own setting is 288 (max_upscale 4); 160 keeps this test to ~20 s on CI
# Measured for the shipped weights and defaults (imos-lite:2 with the session-10 levers: flow fusion, the
# size rule, which still sends the 106-112 px acdc and echo frames to 416 px) at SIZE on SEQUENCES,
# protocol best, 2026-12-03: 0.790; the same without the levers 0.636 (the floor of session 9; copy 0.364).
# The floor leaves room for float differences between machines, not for regressions.
MEASURED = 0.790
FLOOR = MEASURED - 0.03
FLOOR_NOTE = "imos-lite:2 with its model.yaml levers measured 0.790"
COPY_MARGIN = 0.05
# What the levers buy here (0.790 vs 0.636); a change that makes them stop paying fails.
LEVERS_OFF = {"flow_weight": 0, "size_rule": ""}
LEVER_GAIN = 0.05
# int8 vs fp32 on all of dev at 288 px: 0.595 vs 0.593 (docs/benchmarks.md). Compared at the model's own
# size: at 160 px one deeplesion sequence takes another path under either change (0.663 fp32, 0.524 int8),
# as it does between 160 and 288 px in fp32 (0.663 vs 0.582).
INT8_MARGIN = 0.02


def test_bundled_model_is_trained_small_and_attributed() -> None:
    entry = ModelRepo(REPO).entry("imos-lite")
    assert entry.meta.get("trained") is True
    prov = entry.meta["provenance"]
    assert set(prov["datasets"]) == {"hippocampus", "hc18"}  # the sets whose licences allow shipping
    assert prov["steps"] > 0 and prov["command"].startswith("imos train")
    weights = entry.weights_path
    assert weights.stat().st_size <= 40 * 2**20
    net = ModelRepo(REPO).load_network(entry)
    assert sum(p.numel() for p in net.parameters()) <= 10_000_000
    notice = (REPO / "imos-lite" / "NOTICE.md").read_text()
    assert "CC BY-SA 4.0" in notice and "CC BY 4.0" in notice


@pytest.fixture(scope="module")
def scores() -> dict[str, float]:
    if not DATA_DEV.is_dir():
        pytest.skip("../shared/data/dev is not present")
    options = Options(protocols=("best",), pattern=SEQUENCES)
    model = evaluate(DATA_DEV, ModelTracker(REPO, "imos-lite", overrides={"size": SIZE}), options)
    copy = evaluate(DATA_DEV, CopyTracker(), options)
    bare = evaluate(DATA_DEV, ModelTracker(REPO, "imos-lite", overrides={"size": SIZE, **LEVERS_OFF}), options)
    return {"model": model.summaries["best"].overall.jf, "copy": copy.summaries["best"].overall.jf,
            "levers_off": bare.summaries["best"].overall.jf}


def test_bundled_model_holds_its_quality_floor(scores: dict[str, float]) -> None:
    assert scores["model"] >= FLOOR, f"J&F {scores['model']:.3f} fell below the floor {FLOOR:.3f} ({FLOOR_NOTE})"


def test_bundled_model_beats_copying_the_mask(scores: dict[str, float]) -> None:
    assert scores["model"] >= scores["copy"] + COPY_MARGIN, scores


def test_the_shipped_levers_pay(scores: dict[str, float]) -> None:
    assert scores["model"] >= scores["levers_off"] + LEVER_GAIN, scores


def test_int8_onnx_keeps_the_quality() -> None:
    """int8 graphs (calibrated on generated clips, never on dev) at the model's own size cost at most
    INT8_MARGIN J&F on these sequences (measured: fp32 0.675, int8 0.676 on an AVX-512 VNNI host)."""
    if not DATA_DEV.is_dir():
        pytest.skip("../shared/data/dev is not present")
    options = Options(protocols=("best",), pattern=SEQUENCES)
    fp32 = evaluate(DATA_DEV, ModelTracker(REPO, "imos-lite"), options).summaries["best"].overall.jf
    int8 = evaluate(DATA_DEV, ModelTracker(REPO, "imos-lite", "onnx", precision="int8"), options)
    assert abs(int8.summaries["best"].overall.jf - fp32) <= INT8_MARGIN, (fp32, int8.summaries["best"].overall.jf)
