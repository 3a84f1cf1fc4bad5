"""Cross-session dynamic batching: batched outputs equal unbatched ones; errors, delays and shutdown."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import TypeVar

import numpy as np
import pytest
import torch

from service.bench.synthetic_video import moving_ellipses
from service.engine.backends.base import KeyFeatures
from service.engine.backends.torch_backend import TorchStages
from service.engine.batching import BatchConfig, DynamicBatcher, backend_batch_limit, batched
from service.engine.loader import load_engine
from service.engine.nn.network import ImosNet
from service.engine.propagate import Propagator
from service.engine.spec import MemoryConfig
from service.errors import BackendUnavailable
from service.sessions.records import SessionRecords
from service.settings import Settings
from service.store.memory import MemoryStore
from service.worker.runner import Worker
from tests.conftest import moving_sequence

TOL = 1e-4
CFG = MemoryConfig(top_k=8, mem_every=2, min_mid_term_frames=2, max_mid_term_frames=3, num_prototypes=4,
                   max_long_term_elements=24, size=-1)


class EchoStages:
    """Stages whose outputs are functions of each frame alone; fails on demand; records batch sizes."""

    name, device, hidden_dim = "echo", torch.device("cpu"), 2

    def __init__(self, fail: Exception | None = None) -> None:
        self.fail = fail
        self.calls: list[int] = []  # batch size of every call

    def encode_key(self, image: torch.Tensor) -> KeyFeatures:
        self.calls.append(image.shape[0])
        if self.fail is not None:
            raise self.fail
        x = image[:, :1, ::16, ::16]
        return KeyFeatures(x, x + 1, x + 2, x + 3, image[:, :1, ::8, ::8], image[:, :1, ::4, ::4])

    def encode_value(self, image: torch.Tensor, f16: torch.Tensor, hidden: torch.Tensor,
                     masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return hidden * 2, hidden + 1

    def segment(self, feats: KeyFeatures, readout: torch.Tensor,
                hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return readout.sum(2), hidden - 1


T = TypeVar("T")


def together(n: int, fn: Callable[[int], T]) -> list[T]:
    """fn(0..n-1) in n threads released at the same moment; results in order."""
    gate = threading.Barrier(n)

    def call(i: int) -> T:
        gate.wait()
        return fn(i)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(call, range(n)))


def close_all(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and bool(torch.allclose(a, b, atol=TOL, rtol=0))


@pytest.fixture()
def torch_stages(tiny_net: ImosNet) -> TorchStages:
    return TorchStages(tiny_net)


def test_concurrent_stage_calls_batch_and_match_unbatched(torch_stages: TorchStages) -> None:
    gen = torch.Generator().manual_seed(1)
    images = [torch.randn(1, 3, 64, 96, generator=gen) for _ in range(4)]
    with DynamicBatcher(torch_stages, BatchConfig(max_batch=4, max_delay_ms=2000)) as batcher:
        feats = together(4, lambda i: batcher.encode_key(images[i]))
        assert batcher.batch_sizes == {4: 1}  # one inner call, flushed by max_batch, not by the delay
        hidden = torch.randn(1, 2, torch_stages.hidden_dim, 4, 6, generator=gen)
        readout = torch.randn(1, 2, 16, 4, 6, generator=gen)
        masks = torch.rand(1, 2, 64, 96, generator=gen)
        seg = together(4, lambda i: batcher.segment(feats[i], readout, hidden))
        val = together(4, lambda i: batcher.encode_value(images[i], feats[i].f16, hidden, masks))
    for i, image in enumerate(images):
        ref = torch_stages.encode_key(image)
        assert all(close_all(a, b) for a, b in zip(vars(feats[i]).values(), vars(ref).values()))
        for out, want in ((seg[i], torch_stages.segment(ref, readout, hidden)),
                          (val[i], torch_stages.encode_value(image, ref.f16, hidden, masks))):
            assert all(close_all(a, b) for a, b in zip(out, want))


def _sessions() -> list[tuple[int, int, int]]:
    """(size, objects, anchor) per session: two share a resolution and K, others differ in one or both."""
    return [(48, 2, 0), (48, 2, 3), (64, 2, 2), (48, 1, 1), (64, 3, 0)]


def _run(prop: Propagator, size: int, objects: int, anchor: int) -> list[tuple[int, str, np.ndarray]]:
    frames, masks = moving_ellipses(6, size, size, objects)
    return [(r.index, r.direction, r.probs) for r in prop.run(frames, masks[anchor], anchor, "both")]


def test_concurrent_sessions_of_mixed_sizes_and_objects_match_unbatched(torch_stages: TorchStages) -> None:
    plain = Propagator(torch_stages, CFG, "tiny:1", max_objects=4)
    expected = [_run(plain, *s) for s in _sessions()]
    with DynamicBatcher(torch_stages, BatchConfig(max_batch=8, max_delay_ms=20)) as batcher:
        prop = Propagator(batcher, CFG, "tiny:1", max_objects=4)
        got = together(len(_sessions()), lambda i: _run(prop, *_sessions()[i]))
        assert max(batcher.batch_sizes) > 2, batcher.batch_sizes  # sessions met, not only the two passes
    for want, have in zip(expected, got):
        assert [(i, d) for i, d, _ in want] == [(i, d) for i, d, _ in have]
        for (_, _, a), (_, _, b) in zip(want, have):
            np.testing.assert_allclose(b, a, atol=TOL, rtol=0)


def test_both_directions_run_as_a_batch_of_two_with_the_same_results(torch_stages: TorchStages) -> None:
    plain = Propagator(torch_stages, CFG, "tiny:1", max_objects=4)
    frames, mask = moving_sequence(9, 48, 2)
    want = list(plain.run(frames, mask, 4, "both"))
    with DynamicBatcher(torch_stages, BatchConfig(max_batch=8, max_delay_ms=50)) as batcher:
        have = list(Propagator(batcher, CFG, "tiny:1", max_objects=4).run(frames, mask, 4, "both"))
        assert batcher.batch_sizes.get(2, 0) >= 8, batcher.batch_sizes
    assert [(r.index, r.direction) for r in have] == [(r.index, r.direction) for r in want]
    for a, b in zip(want, have):
        np.testing.assert_allclose(b.probs, a.probs, atol=TOL, rtol=0)
        assert b.object_ids == a.object_ids


def test_an_error_reaches_every_caller_of_the_batch_and_the_batcher_goes_on() -> None:
    boom = RuntimeError("out of device memory")
    inner = EchoStages(fail=boom)
    with DynamicBatcher(inner, BatchConfig(max_batch=3, max_delay_ms=5000)) as batcher:
        def call(i: int) -> object:
            try:
                return batcher.encode_key(torch.zeros(1, 3, 32, 32))
            except RuntimeError as exc:
                return exc

        assert together(3, call) == [boom, boom, boom]  # the original exception, for each caller
        assert inner.calls == [3]
        inner.fail = None
        with batcher.lease():  # a lone client: served at once, not after the 5 s delay
            assert isinstance(batcher.encode_key(torch.zeros(1, 3, 32, 32)), KeyFeatures)


def test_a_lone_call_waits_at_most_max_delay() -> None:
    with DynamicBatcher(EchoStages(), BatchConfig(max_batch=8, max_delay_ms=150)) as batcher:
        started = time.monotonic()
        batcher.encode_key(torch.zeros(1, 3, 32, 32))
        waited = time.monotonic() - started
    assert 0.14 <= waited < 1.0


def test_calls_flush_as_soon_as_every_client_waits() -> None:
    """When every registered client is already waiting nobody can join the batch: flush at once."""
    inner = EchoStages()
    with DynamicBatcher(inner, BatchConfig(max_batch=8, max_delay_ms=5000)) as batcher:
        started = time.monotonic()
        with batcher.lease():
            for _ in range(3):
                batcher.encode_key(torch.zeros(1, 3, 32, 32))
        leases = [batcher.lease() for _ in range(3)]  # taken before the work starts: no early flush

        def call(i: int) -> KeyFeatures:
            with leases[i]:
                return batcher.encode_key(torch.zeros(1, 3, 32, 32))

        together(3, call)
        leases[0].release()  # idempotent
        assert time.monotonic() - started < 2.0
    assert inner.calls == [1, 1, 1, 3]


def test_different_shapes_never_share_a_batch() -> None:
    inner = EchoStages()
    with DynamicBatcher(inner, BatchConfig(max_batch=4, max_delay_ms=100)) as batcher:
        out = together(4, lambda i: batcher.encode_key(torch.full((1, 3, 32, 32 + 16 * (i % 2)), float(i))))
    assert sorted(inner.calls) == [2, 2]
    for i, feats in enumerate(out):
        assert feats.key.shape == (1, 1, 2, 2 + i % 2) and bool((feats.key == i).all())


def test_close_wakes_every_waiter_and_refuses_new_calls() -> None:
    batcher = DynamicBatcher(EchoStages(), BatchConfig(max_batch=64, max_delay_ms=60_000))
    errors: list[BaseException] = []

    def call() -> None:
        try:
            batcher.encode_key(torch.zeros(1, 3, 32, 32))
        except BackendUnavailable as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    batcher.close()
    for t in threads:
        t.join(5)
    assert not any(t.is_alive() for t in threads) and len(errors) == 3
    with pytest.raises(BackendUnavailable):
        batcher.encode_key(torch.zeros(1, 3, 32, 32))


def test_config_and_backend_limits_decide_whether_to_batch() -> None:
    inner = EchoStages()
    assert batched(inner, BatchConfig(max_batch=1)) is inner
    assert batched(inner, BatchConfig(max_delay_ms=0)) is inner
    inner.profile = SimpleNamespace(max=SimpleNamespace(batch=1))  # type: ignore[attr-defined]
    assert backend_batch_limit(inner) == 1 and batched(inner, BatchConfig()) is inner  # TensorRT, batch 1
    inner.max_batch_size = 4  # type: ignore[attr-defined]
    wrapped = batched(inner, BatchConfig(max_batch=8))
    assert isinstance(wrapped, DynamicBatcher) and wrapped.config.max_batch == 4
    wrapped.close()


def test_worker_batches_only_when_the_settings_say_so(tiny_repo: Path) -> None:
    engine = load_engine(tiny_repo, "tiny")
    records = SessionRecords(MemoryStore(), "t", 60)
    on = Worker(records, engine, Settings(batch_max_size=4, batch_max_delay_ms=1.0))
    off = Worker(records, engine, Settings())  # off by default: results stay bit-for-bit reproducible
    try:
        assert isinstance(on.engine.stages, DynamicBatcher) and on.engine.stages.config.max_batch == 4
        assert off.engine.stages is engine.stages
    finally:
        on.close()
        off.close()
