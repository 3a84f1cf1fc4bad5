"""imos average: the mean of a run's checkpoints as a repository entry."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from service.cli.training import main
from service.engine.nn.network import ImosNet
from service.engine.repo import ModelRepo
from service.errors import InvalidInput
from service.training.averaging import average_states
from service.training.checkpoints import Snapshot, save
from tests.conftest import randomised, tiny_spec


def test_floats_are_averaged_and_integer_buffers_taken_from_the_newest() -> None:
    a = {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(3)}
    b = {"w": torch.tensor([3.0, 6.0]), "n": torch.tensor(7)}
    out = average_states([a, b])
    assert torch.equal(out["w"], torch.tensor([2.0, 4.0])) and int(out["n"]) == 7
    with pytest.raises(InvalidInput, match="one architecture"):
        average_states([a, {"w": torch.zeros(3), "n": torch.tensor(1)}])
    with pytest.raises(InvalidInput, match="nothing to average"):
        average_states([])


def _checkpoint(folder: Path, step: int, seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    state = randomised(ImosNet(tiny_spec()), seed).state_dict()
    save(folder, Snapshot(step=step, model=state, optimizer={}, rng={}, config={}), keep=10)
    return state


def test_imos_average_writes_the_mean_as_a_repository_entry(tiny_repo: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    runs = tmp_path / "run"
    states = [_checkpoint(runs, step, seed) for step, seed in ((100, 1), (200, 2), (300, 3))]
    code = main(["average", str(runs), "--steps", "200,300", "--like", "tiny", "--out", "tiny-avg",
                 "--model-repo", str(tiny_repo)])
    assert code == 0 and "tiny-avg" in capsys.readouterr().out
    repo = ModelRepo(tiny_repo)
    entry = repo.entry("tiny-avg")
    assert entry.spec == repo.entry("tiny").spec and entry.memory == repo.entry("tiny").memory
    assert entry.meta["provenance"]["checkpoint_average"]["steps"] == [200, 300]
    net = repo.load_network(entry)
    got = net.state_dict()
    name = next(k for k, v in got.items() if v.is_floating_point() and v.numel() > 8)
    assert torch.allclose(got[name], (states[1][name] + states[2][name]) / 2, atol=1e-6)
    assert not torch.allclose(got[name], states[2][name])

    assert main(["average", str(runs), "--steps", "200,400", "--like", "tiny", "--out", "x",
                 "--model-repo", str(tiny_repo)]) == 2
    assert "no checkpoint for step(s) [400]" in capsys.readouterr().err
