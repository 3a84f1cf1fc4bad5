"""TrainConfig: the shipped recipes load, round-trip and rescale; mistakes are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.errors import InvalidInput
from service.training.config import Schedule, config_from_dict, load_config
from tests.unit.test_training_fixtures import tiny_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("name", ["imos-lite-cpu", "imos-lite-gpu", "imos-lite-finetune", "imos-lite-ship",
                                  "imos-lite-tissue"])
def test_shipped_configs_load_and_round_trip(name: str) -> None:
    cfg = load_config(CONFIGS / f"{name}.yaml")
    assert config_from_dict(cfg.to_dict()) == cfg
    assert cfg.total_iterations > 0 and cfg.resolution % 16 == 0


def test_cpu_recipe_is_xmem_staged() -> None:
    cfg = load_config(CONFIGS / "imos-lite-cpu.yaml")
    static, real = cfg.stages
    assert dict(static.mix).keys() == {"static", "synthetic"} and static.clip_length.at(0.9) == 3
    assert "real" in dict(real.mix) and real.clip_length.at(0.0) == 3 and real.clip_length.at(0.99) == 8
    assert cfg.eval.root is not None and "dev" in cfg.eval.root  # evaluation only, see sources.check_not_dev


def test_with_steps_scales_stages_and_keeps_the_total() -> None:
    cfg = load_config(CONFIGS / "imos-lite-cpu.yaml").with_steps(10)
    assert cfg.total_iterations == 10 and [s.iterations for s in cfg.stages] == [5, 5]
    assert tiny_config().with_steps(1).total_iterations == 1


def test_stage_at_walks_the_stages() -> None:
    cfg = tiny_config()
    assert [cfg.stage_at(s)[0] for s in range(6)] == [0, 0, 0, 1, 1, 1]
    assert cfg.stage_at(4)[2] == 1


def test_schedule_is_piecewise_constant() -> None:
    s = Schedule(((0.0, 3), (0.3, 5), (0.65, 8)))
    assert [s.at(p) for p in (0.0, 0.29, 0.3, 0.64, 0.65, 1.0)] == [3, 3, 5, 5, 8, 8]


@pytest.mark.parametrize("change", [{"resolutoin": 64}, {"resolution": 40},
                                    {"stages": [{"name": "x", "iterations": 1, "mix": {"videos": 1}}]},
                                    {"optim": {"lr": 1e-3, "shedule": "cosine"}},
                                    {"eval": {"memory": {"max_upscal": 4}}}, {"eval": {"memory": {"size": 96}}},
                                    {"eval": {"memory": {"max_upscale": -1}}}])
def test_mistakes_are_refused(change: dict[str, object]) -> None:
    raw = tiny_config().to_dict()
    raw.update(change)
    with pytest.raises(InvalidInput):
        config_from_dict(raw)


def test_dev_evaluator_scores_with_the_configured_memory_settings(tmp_path: Path) -> None:
    from service.training.evaluate import DevEvaluator
    from tests.unit.test_training_fixtures import make_root

    root = make_root(tmp_path, statics=0, sequences=1)
    plain = DevEvaluator(root, None, 64, ("best",), "cpu")
    capped = DevEvaluator(root, None, 64, ("best",), "cpu", {"max_upscale": 1, "top_k": 7})
    assert plain.memory.max_upscale == 0 and plain.memory.size == 64
    assert capped.memory.max_upscale == 1 and capped.memory.top_k == 7 and capped.memory.size == 64
