"""How many threads call the engine: one without a batcher (one OpenMP team on CPU), two per
session with one (each pass waits in the batcher for its partners)."""

from __future__ import annotations

from service.engine.backends.torch_backend import TorchStages
from service.engine.batching import BatchConfig, DynamicBatcher
from service.engine.nn.network import ImosNet
from service.settings import Settings
from service.worker.runner import engine_threads


def test_one_engine_thread_without_a_batcher_two_per_session_with_one(tiny_net: ImosNet) -> None:
    stages = TorchStages(tiny_net)
    settings = Settings(worker_concurrency=3)
    assert engine_threads(stages, settings) == 1
    with DynamicBatcher(stages, BatchConfig(max_batch=4, max_delay_ms=5)) as batcher:
        assert engine_threads(batcher, settings) == 6
