"""``imos eval`` with a real (tiny, synthetic-weight) model on two short dev sequences."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from service.cli import evaluate
from service.io.images import read_mask
from tests.conftest import DATA_DEV

SEQUENCES = "acdc__patient001_ED,hippocampus__225"  # 5 and 21 frames; hippocampus gives object 2 later


def _imos(argv: list[str]) -> int:
    """The eval subcommand through argparse, as ``imos`` parses it."""
    parser = argparse.ArgumentParser(prog="imos")
    evaluate.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_imos_eval_writes_results_and_predictions(tiny_repo: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    if not DATA_DEV.is_dir():
        pytest.skip("../shared/data/dev is not present")
    out, preds = tmp_path / "eval.json", tmp_path / "preds"
    code = _imos(["eval", str(DATA_DEV), "--model", "tiny", "--model-repo", str(tiny_repo), "--size", "64",
                  "--sequences", SEQUENCES, "--json", str(out), "--save-predictions", str(preds), "--quiet"])
    assert code == 0
    assert "overall" in capsys.readouterr().out
    doc = json.loads(out.read_text())
    assert doc["model"] == "tiny:1" and doc["settings"]["overrides"] == {"size": 64}
    assert set(doc["protocols"]) == {"first", "best"}
    for protocol in doc["protocols"].values():
        assert set(protocol["datasets"]) == {"acdc", "hippocampus"}
        assert set(protocol["sequences"]) == set(SEQUENCES.split(","))
        assert 0.0 <= protocol["overall"]["J&F"] <= 1.0 and protocol["overall"]["num_datasets"] == 2
        acdc = protocol["sequences"]["acdc__patient001_ED"]
        assert acdc["dataset"] == "acdc" and set(acdc["objects"]) == {"1", "2", "3"}
        obj = acdc["objects"]["1"]
        assert set(obj) >= {"J&F", "J", "F", "num_frames", "frames"} and len(obj["frames"]) == obj["num_frames"]
    table = json.loads((DATA_DEV / "protocols.json").read_text())["hippocampus__225"]
    scored = doc["protocols"]["first"]["sequences"]["hippocampus__225"]["objects"]
    assert {o: list(v["frames"]) for o, v in scored.items()} == table["first"]["scored"]
    _check_predictions(preds / "first" / "hippocampus__225", table["first"]["prompts"])


def _check_predictions(folder: Path, prompts: list[dict[str, object]]) -> None:
    """Every frame written, with the GT's ids; nothing before the first prompt; prompts as drawn."""
    gt_dir = DATA_DEV / "Annotations" / folder.name
    names = sorted(p.stem for p in (DATA_DEV / "JPEGImages" / folder.name).iterdir())
    assert sorted(p.stem for p in folder.iterdir()) == names
    first, second = str(prompts[0]["frame"]), str(prompts[1]["frame"])
    for name in names:
        mask = read_mask(folder / f"{name}.png")
        assert set(np.unique(mask)) <= {0, 1, 2}
        if name < first:
            assert not mask.any()
        if name < second:
            assert not (mask == 2).any()  # object 2 joins on its own frame
    gt = read_mask(gt_dir / f"{second}.png")
    assert ((read_mask(folder / f"{second}.png") == 2) == (gt == 2)).all()


def test_imos_eval_in_bf16_records_the_precision(tiny_repo: Path, tmp_path: Path) -> None:
    if not DATA_DEV.is_dir():
        pytest.skip("../shared/data/dev is not present")
    out = tmp_path / "eval.json"
    assert _imos(["eval", str(DATA_DEV), "--model", "tiny", "--model-repo", str(tiny_repo), "--size", "64",
                  "--sequences", "acdc__patient001_ED", "--protocol", "best", "--precision", "bf16",
                  "--json", str(out), "--quiet"]) == 0
    doc = json.loads(out.read_text())
    assert doc["settings"]["precision"] == "bf16"
    assert 0.0 <= doc["protocols"]["best"]["overall"]["J&F"] <= 1.0


def test_imos_eval_refuses_fp16_on_cpu(tiny_repo: Path) -> None:
    from service.errors import BackendUnavailable

    with pytest.raises(BackendUnavailable, match="fp16"):
        _imos(["eval", str(DATA_DEV), "--model", "tiny", "--model-repo", str(tiny_repo),
               "--precision", "fp16", "--quiet"])
