"""imos import-checkpoint: the 412-key layout, the single-object variant, clear key errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from service.cli.main import main
from service.engine.checkpoint import infer_spec
from service.engine.importing import import_checkpoint
from service.engine.nn.network import ImosNet
from service.engine.repo import ModelRepo
from service.errors import CheckpointError
from tests.conftest import tiny_spec


def test_xmem_layout_imports_strictly(xmem_pth: Path, parity_repo: Path) -> None:
    entry = ModelRepo(parity_repo).entry("xmem-synthetic")
    weights = load_file(str(entry.weights_path))
    assert len(weights) == 412
    assert entry.spec == infer_spec(weights)
    assert sum(v.numel() for k, v in weights.items() if "running" not in k and "num_batches" not in k) == 62_185_224
    doc = yaml.safe_load((entry.directory / "model.yaml").read_text())
    assert doc["architecture"]["key_backbone"]["layers"] == [3, 4, 6]
    assert doc["provenance"]["source_file"] == xmem_pth.name


def test_single_object_checkpoint_is_zero_padded(tmp_path: Path) -> None:
    net = ImosNet(tiny_spec(value_input_channels=4))
    sd = net.state_dict()
    path = tmp_path / "so.pth"
    torch.save(sd, path)
    entry = import_checkpoint(path, ModelRepo(tmp_path / "repo"), "so")
    w = load_file(str(entry.weights_path))["value_encoder.conv1.weight"]
    assert w.shape[1] == 5 and torch.equal(w[:, :4], sd["value_encoder.conv1.weight"])
    assert torch.count_nonzero(w[:, 4]) == 0
    assert entry.spec.value_input_channels == 5
    assert yaml.safe_load((entry.directory / "model.yaml").read_text())["provenance"]["single_object_source"]


def test_missing_and_unexpected_keys_are_named(tmp_path: Path) -> None:
    sd = ImosNet(tiny_spec()).state_dict()
    del sd["decoder.pred.bias"]
    sd["decoder.extra.weight"] = torch.zeros(1)
    path = tmp_path / "bad.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointError) as err:
        import_checkpoint(path, ModelRepo(tmp_path / "repo"), "bad")
    assert "decoder.pred.bias" in str(err.value) and "decoder.extra.weight" in str(err.value)
    assert not (tmp_path / "repo" / "bad").exists()


def test_corrupt_file_is_a_checkpoint_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.pth"
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="junk.pth"):
        import_checkpoint(path, ModelRepo(tmp_path / "repo"), "junk")


def test_cli_import_reports_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "tiny.pth"
    torch.save(ImosNet(tiny_spec()).state_dict(), path)
    assert main(["import-checkpoint", str(path), "--name", "tiny", "--model-repo", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r" / "tiny" / "1" / "weights.safetensors").is_file()
    assert main(["import-checkpoint", str(tmp_path / "nope.pth"), "--name", "x",
                 "--model-repo", str(tmp_path / "r")]) == 2
    assert "does not exist" in capsys.readouterr().err
