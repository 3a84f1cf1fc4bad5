"""Training end to end on a tiny network: overfitting, resume, the repository entry, finetune, CLI."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from service.bench.synthetic_video import moving_ellipses
from service.cli import training as training_cli
from service.engine.loader import load_engine
from service.engine.nn.network import ImosNet
from service.engine.repo import ModelRepo
from service.errors import InvalidInput
from service.training import checkpoints
from service.training.data import ClipSampler
from service.training.finetune import FROZEN_MODULES, FinetuneRequest, finetune, trainable_names
from service.training.loop import Job, make_optimizer, set_modes, train_step
from service.training.sources import DataSources
from service.training.trainer import TrainRequest, train
from tests.conftest import tiny_spec
from tests.unit.test_training_fixtures import make_root, tiny_config


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(train root, a separate 'dev' root for evaluation)."""
    base = tmp_path_factory.mktemp("data")
    return make_root(base / "train"), make_root(base / "dev", sequences=2, statics=0, prefix="dev")


def _run(tmp: Path, roots: tuple[Path, Path], out: str, resume: bool = False,  # type: ignore[no-untyped-def]
         stop_at: int | None = None, **changes: object):
    cfg = tiny_config(**changes)
    req = TrainRequest(config=cfg, data=(roots[0],), out_dir=tmp / out, repo_root=tmp / "repo", name=out,
                       resume=resume, command="pytest", stop_at=stop_at)
    return train(req)


def _engine_runs(repo_root: Path, name: str) -> None:
    frames, masks = moving_ellipses(5, 40, 48, objects=2, seed=1)
    engine = load_engine(repo_root, name)
    results = list(engine.propagator({"size": 32}).run(frames, masks[0], 0, "forward"))
    assert len(results) == 5 and results[-1].probs.shape == (3, 40, 48)


def test_loss_goes_down_on_a_fixed_clip(roots: tuple[Path, Path]) -> None:
    cfg = tiny_config(optim={"lr": 3e-3, "warmup": 0.0, "grad_clip": 0.0})
    torch.manual_seed(0)
    job = Job(cfg, ImosNet(tiny_spec()), Path("unused"), torch.device("cpu"))
    batch = ClipSampler(cfg, DataSources([roots[0]])).batch(4)
    opt = make_optimizer(job.net, cfg.optim)
    losses = []
    for _ in range(8):
        set_modes(job)
        terms, _ = train_step(job, opt, batch, 0)  # step 0 every time: the same clip, p = 1
        losses.append(float(terms.total.detach()))
    assert losses[-1] < 0.8 * losses[0], losses


def test_resume_continues_exactly(tmp_path: Path, roots: tuple[Path, Path]) -> None:
    whole = _run(tmp_path, roots, "whole")
    _run(tmp_path, roots, "broken")
    folder = tmp_path / "broken" / "checkpoints"
    assert [p.name for p in checkpoints.list_checkpoints(folder)] == ["step-0000003.pt", "step-0000006.pt"]
    checkpoints.list_checkpoints(folder)[-1].unlink()  # as if killed after step 3
    resumed = _run(tmp_path, roots, "broken", resume=True)
    a, b = load_file(str(whole.weights_path)), load_file(str(resumed.weights_path))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    log = [json.loads(line) for line in (tmp_path / "broken" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if r["event"] == "step"] == [0, 1, 2, 3, 4, 5, 3, 4, 5]
    sessions = yaml.safe_load((resumed.directory / "model.yaml").read_text())["provenance"]["sessions"]
    assert [s["from_step"] for s in sessions] == [0, 3] and sessions[1]["command"] == "pytest"


def test_stop_early_writes_the_model_and_resuming_finishes_the_same_run(tmp_path: Path,
                                                                       roots: tuple[Path, Path]) -> None:
    whole = _run(tmp_path, roots, "whole")
    early = _run(tmp_path, roots, "early", stop_at=4)
    prov = yaml.safe_load((early.directory / "model.yaml").read_text())["provenance"]
    assert prov["steps"] == 4 and prov["planned_steps"] == 6
    finished = _run(tmp_path, roots, "early", resume=True)
    a, b = load_file(str(whole.weights_path)), load_file(str(finished.weights_path))
    assert all(torch.equal(a[k], b[k]) for k in a), "the learning-rate schedule must not change with stop_at"


def test_a_time_limit_stops_at_the_step_it_passes_and_writes_the_model(tmp_path: Path,
                                                                      roots: tuple[Path, Path]) -> None:
    cfg = tiny_config()
    entry = train(TrainRequest(config=cfg, data=(roots[0],), out_dir=tmp_path / "timed", repo_root=tmp_path / "repo",
                               name="timed", command="pytest", time_limit_s=0.0))
    prov = yaml.safe_load((entry.directory / "model.yaml").read_text())["provenance"]
    assert prov["steps"] == 1 and prov["planned_steps"] == 6
    log = [json.loads(line) for line in (tmp_path / "timed" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if r["event"] == "step"] == [0]
    assert any("time limit" in r.get("message", "") for r in log if r["event"] == "note")
    assert [p.name for p in checkpoints.list_checkpoints(tmp_path / "timed" / "checkpoints")] == ["step-0000001.pt"]
    _engine_runs(tmp_path / "repo", "timed")


def test_train_writes_an_entry_with_provenance_and_evaluation(tmp_path: Path, roots: tuple[Path, Path]) -> None:
    cfg = tiny_config(eval={"root": str(roots[1]), "size": 32, "every": 3, "memory": {"max_upscale": 2}},
                      select="best")
    entry = train(TrainRequest(config=cfg, data=(roots[0],), out_dir=tmp_path / "run", repo_root=tmp_path / "repo",
                               command="imos train ..."))
    meta = yaml.safe_load((entry.directory / "model.yaml").read_text())
    prov = meta["provenance"]
    # The entry is served with the settings its selection was scored with.
    assert meta["trained"] is True and meta["memory"] == {"size": 32, "max_upscale": 2} and prov["steps"] == 6
    assert prov["data"] == [str(roots[0].resolve())] and prov["command"] == "imos train ..."
    assert prov["device"] == "cpu" and prov["wall_time_s"] > 0 and set(prov["final_losses"]) >= {"loss", "ce", "dice"}
    assert [e["step"] for e in prov["dev_subset"]["evals"]] == [3, 6]
    assert 0.0 <= prov["dev_subset"]["best"]["score"] <= 1.0 and prov["selected"]["step"] in (3, 6)
    _engine_runs(tmp_path / "repo", entry.name)
    with pytest.raises(InvalidInput, match="never train"):  # the eval root can never be a training root
        train(TrainRequest(config=cfg, data=(roots[1],), out_dir=tmp_path / "x", repo_root=tmp_path / "repo"))


def test_finetune_trains_only_adapters_and_decoder(tmp_path: Path, roots: tuple[Path, Path]) -> None:
    base = _run(tmp_path, roots, "base")
    cfg = tiny_config(eval={"root": str(roots[1]), "size": 32, "every": 2})
    cfg = dataclasses.replace(cfg.with_steps(2), checkpoint_every=2)
    req = FinetuneRequest(base="base", data=(roots[0],), name="tuned", repo_root=tmp_path / "repo", config=cfg,
                          work_dir=tmp_path / "ft", command="imos finetune ...")
    entry = finetune(req)
    assert entry.spec.adapters.enabled
    before, after = load_file(str(base.weights_path)), load_file(str(entry.weights_path))
    for name, value in before.items():  # encoders (weights AND BatchNorm statistics) untouched
        if name.split(".")[0] in FROZEN_MODULES:
            assert torch.equal(value, after[name]), name
    adapters = [k for k in after if ".adapter.conv_pw" in k]
    assert adapters and all(float(after[k].abs().sum()) > 0 for k in adapters)  # were zero at the start
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("decoder."))
    prov = yaml.safe_load((entry.directory / "model.yaml").read_text())["provenance"]
    assert prov["base_model"] == {"name": "base", "version": 1} and prov["steps"] == 2
    assert prov["data"] == [str(roots[0].resolve())] and prov["dev_subset"]["evals"][0]["step"] == 2
    assert prov["base_dev_subset"]["step"] == 0
    _engine_runs(tmp_path / "repo", "tuned")


def test_finetune_trainable_set() -> None:
    from service.training.finetune import prepare

    net = prepare(ImosNet(tiny_spec()), seed=0)
    names = trainable_names(net)
    assert names and all(".adapter." in n or n.startswith("decoder.") for n in names)
    assert any(".adapter.alpha" in n for n in names)
    assert {n for n, _ in net.decoder.named_parameters()} == {n[len("decoder."):] for n in names if n.startswith("decoder.")}


def test_cli_train_and_finetune(tmp_path: Path, roots: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config().to_dict()))
    parser = argparse.ArgumentParser(prog="imos")
    training_cli.register(parser.add_subparsers(dest="command", required=True))
    repo = str(tmp_path / "repo")
    args = parser.parse_args(["train", "--config", str(config), "--data", str(roots[0]), "--out", str(tmp_path / "o"),
                              "--steps", "2", "--no-eval", "--model-repo", repo, "--name", "cli-model"])
    assert args.func(args) == 0
    args = parser.parse_args(["finetune", "--base", "cli-model", "--data", str(roots[0]), "--out", "cli-ft",
                              "--config", str(config), "--steps", "1", "--no-eval", "--model-repo", repo,
                              "--work-dir", str(tmp_path / "w")])
    assert args.func(args) == 0
    assert "wrote cli-ft:1" in capsys.readouterr().out
    assert ModelRepo(Path(repo)).names() == ["cli-ft", "cli-model"]
    weights = load_file(str(ModelRepo(Path(repo)).entry("cli-ft").weights_path))
    assert all(bool(torch.isfinite(v.float()).all()) for v in weights.values())
