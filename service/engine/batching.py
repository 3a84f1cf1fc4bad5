"""Cross-session dynamic batching of the network stages, in the manner of Triton's dynamic batcher.

Every session (and each direction of a session) steps in its own thread and calls the stages
with a batch of one frame. ``DynamicBatcher`` is a ``Stages`` that queues those calls; one
dispatcher thread groups compatible calls (same stage, same shapes apart from the batch dim),
concatenates them along the batch dim, runs the inner stage once and hands each caller its slice.

A group is flushed when it holds ``max_batch`` calls, when its oldest call has waited
``max_delay_ms``, or at once when every registered client (a ``ClientLease``: one session pass
that will keep calling) is already waiting: then nobody can join the batch, so waiting longer
would only add latency. Leases only make flushes earlier; no wait ever exceeds max_delay_ms.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import torch

from service.engine.backends.base import KeyFeatures, Stages
from service.errors import BackendUnavailable

# Positional tensor arguments of one call, and the stage outputs as a flat tuple of tensors.
Tensors = tuple[torch.Tensor, ...]


@dataclass(frozen=True)
class BatchConfig:
    """max_batch: most frames (summed batch dims) in one inner call; max_delay_ms: longest a
    call waits for company. ``enabled`` is False when either makes batching pointless."""

    max_batch: int = 8
    max_delay_ms: float = 2.0

    @property
    def enabled(self) -> bool:
        return self.max_batch > 1 and self.max_delay_ms > 0


@dataclass
class _Call:
    """One caller's request: its stage, tensors (batch dim first) and the future it waits on."""

    stage: str
    args: Tensors
    arrived: float
    result: Future[Tensors] = field(default_factory=Future)
    size: int = field(init=False)
    signature: tuple[Any, ...] = field(init=False)

    def __post_init__(self) -> None:
        self.size = int(self.args[0].shape[0])
        # Calls with equal signatures can share an inner call (K is part of the shapes).
        self.signature = (self.stage,) + tuple((tuple(t.shape[1:]), t.dtype, t.device) for t in self.args)


class DynamicBatcher:
    """A ``Stages`` that batches concurrent calls of other threads onto ``inner``.

    Thread-safe; the inner stages are only ever called from the dispatcher thread, so an inner
    backend that is not thread-safe (a TensorRT context) becomes safe to share. ``close()``
    fails every waiting call with BackendUnavailable and stops the dispatcher.
    """

    def __init__(self, inner: Stages, config: BatchConfig = BatchConfig()) -> None:
        self.inner = inner
        self.config = _capped(config, inner)
        self.name = inner.name
        self.device = inner.device
        self.hidden_dim = inner.hidden_dim
        self.batch_sizes: dict[int, int] = {}  # inner calls by frames batched, for benchmarks and tests
        self._cond = threading.Condition()
        self._queue: list[_Call] = []
        self._clients = 0
        self._closed = False
        self._thread = threading.Thread(target=self._dispatch_loop, name="imos-batcher", daemon=True)
        self._thread.start()

    # -- the Stages protocol -------------------------------------------------------------------

    def encode_key(self, image: torch.Tensor) -> KeyFeatures:
        """image [B, 3, H, W] -> KeyFeatures of B frames (see base.KeyFeatures)."""
        return KeyFeatures(*self._submit("key", (image,)))

    def encode_value(self, image: torch.Tensor, f16: torch.Tensor, hidden: torch.Tensor,
                     masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """image [B, 3, H, W], f16 [B, C16, h, w], hidden [B, K, Ch, h, w], masks [B, K, H, W]
        -> value [B, K, Cv, h, w], hidden [B, K, Ch, h, w]. Only calls with the same K batch."""
        value, new_hidden = self._submit("value", (image, f16, hidden, masks))
        return value, new_hidden

    def segment(self, feats: KeyFeatures, readout: torch.Tensor,
                hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """readout [B, K, Cv, h, w], hidden [B, K, Ch, h, w] -> logits [B, K, H, W], hidden'."""
        args = (feats.key, feats.shrinkage, feats.selection, feats.f16, feats.f8, feats.f4, readout, hidden)
        logits, new_hidden = self._submit("segment", args)
        return logits, new_hidden

    # -- clients and lifetime ------------------------------------------------------------------

    def lease(self) -> ClientLease:
        """Register a client from now until the lease is released (see ClientLease)."""
        return ClientLease(self)

    def _count_client(self, delta: int) -> None:
        with self._cond:
            self._clients += delta
            self._cond.notify_all()  # a smaller client count may make the queue flushable

    def close(self, timeout_s: float = 5.0) -> None:
        """Fail every queued call and stop the dispatcher (idempotent)."""
        with self._cond:
            self._closed = True
            pending, self._queue = self._queue, []
            self._cond.notify_all()
        for call in pending:
            call.result.set_exception(BackendUnavailable("the stage batcher was closed"))
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout_s)

    def __enter__(self) -> DynamicBatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- queueing and dispatch -----------------------------------------------------------------

    def _submit(self, stage: str, args: Tensors) -> Tensors:
        call = _Call(stage, args, time.monotonic())
        with self._cond:
            if self._closed:
                raise BackendUnavailable("the stage batcher was closed")
            self._queue.append(call)
            self._cond.notify_all()
        return call.result.result()  # re-raises the inner stage's own exception

    def _dispatch_loop(self) -> None:
        try:
            while True:
                with self._cond:
                    batch = self._next_batch()
                if batch is None:
                    return
                self._run(batch)
        finally:
            self.close()  # should the loop ever die, no caller may wait forever on it

    def _next_batch(self) -> list[_Call] | None:
        """Wait (holding the condition) until a group may flush; pop it. None once closed."""
        while True:
            if self._closed:
                return None
            if not self._queue:
                self._cond.wait()
                continue
            head = self._queue[0]  # the oldest call decides the group and the deadline
            group = [c for c in self._queue if c.signature == head.signature]
            wait_s = head.arrived + self.config.max_delay_ms / 1000 - time.monotonic()
            everyone_waiting = 0 < self._clients <= len(self._queue)
            if sum(c.size for c in group) >= self.config.max_batch or wait_s <= 0 or everyone_waiting:
                batch = _take(group, self.config.max_batch)
                self._queue = [c for c in self._queue if all(c is not b for b in batch)]
                return batch
            self._cond.wait(wait_s)

    def _run(self, batch: list[_Call]) -> None:
        """One inner call for the batch; every caller gets its slice, or the same exception."""
        try:
            with torch.inference_mode():
                outputs = _STAGE_RUNNERS[batch[0].stage](self.inner, _concat([c.args for c in batch]))
                parts = _split(outputs, [c.size for c in batch])
        except BaseException as exc:  # handed to every caller, never swallowed
            for call in batch:
                call.result.set_exception(exc)
            return
        frames = sum(c.size for c in batch)
        self.batch_sizes[frames] = self.batch_sizes.get(frames, 0) + 1
        for call, part in zip(batch, parts):
            call.result.set_result(part)


def _take(group: list[_Call], max_batch: int) -> list[_Call]:
    """The oldest calls of a group up to max_batch frames (always at least one call)."""
    batch: list[_Call] = []
    frames = 0
    for call in group:
        if batch and frames + call.size > max_batch:
            break
        batch.append(call)
        frames += call.size
    return batch


def _concat(args: Sequence[Tensors]) -> Tensors:
    """Per argument position, the callers' tensors concatenated along the batch dim."""
    if len(args) == 1:
        return args[0]
    return tuple(torch.cat(column, 0) for column in zip(*args))


def _split(outputs: Tensors, sizes: list[int]) -> list[Tensors]:
    """Each caller's rows of every output. Slices are cloned when batched so that a session's
    state never pins (or serialises) the storage of other sessions' rows."""
    if len(sizes) == 1:
        return [outputs]
    parts: list[list[torch.Tensor]] = [[] for _ in sizes]
    for out in outputs:
        for part, piece in zip(parts, torch.split(out, sizes, 0)):
            part.append(piece.clone())
    return [tuple(p) for p in parts]


def _key(stages: Stages, a: Tensors) -> Tensors:
    f = stages.encode_key(a[0])
    return (f.key, f.shrinkage, f.selection, f.f16, f.f8, f.f4)


def _value(stages: Stages, a: Tensors) -> Tensors:
    return tuple(stages.encode_value(a[0], a[1], a[2], a[3]))


def _segment(stages: Stages, a: Tensors) -> Tensors:
    return tuple(stages.segment(KeyFeatures(*a[:6]), a[6], a[7]))


_STAGE_RUNNERS: dict[str, Callable[[Stages, Tensors], Tensors]] = {
    "key": _key, "value": _value, "segment": _segment}


def backend_batch_limit(stages: Stages) -> int | None:
    """The largest batch a backend accepts, when it has one: ``max_batch_size`` if it says so, else
    the max corner of a TensorRT optimisation profile (its engines reject any larger batch)."""
    limit = getattr(stages, "max_batch_size", None)
    if limit is None:
        limit = getattr(getattr(getattr(stages, "profile", None), "max", None), "batch", None)
    return None if limit is None else int(limit)


def _capped(config: BatchConfig, stages: Stages) -> BatchConfig:
    limit = backend_batch_limit(stages)
    return config if limit is None else dataclasses.replace(config, max_batch=min(config.max_batch, limit))


def batched(stages: Stages, config: BatchConfig) -> Stages:
    """``stages`` wrapped in a DynamicBatcher when batching is enabled and the backend accepts
    batches of two or more; else ``stages`` as is."""
    return DynamicBatcher(stages, config) if _capped(config, stages).enabled else stages


class ClientLease:
    """One registered client of a batcher (a session pass that will keep calling the stages), from
    creation until ``release()`` or the end of its ``with`` block. Taken by the thread that starts
    the work, before it starts, so that no call can flush before its partners have registered.
    Without a batcher (``batcher`` None) it does nothing."""

    def __init__(self, batcher: DynamicBatcher | None) -> None:
        self._batcher = batcher
        if batcher is not None:
            batcher._count_client(+1)

    def release(self) -> None:
        """Idempotent."""
        batcher, self._batcher = self._batcher, None
        if batcher is not None:
            batcher._count_client(-1)

    def __enter__(self) -> ClientLease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def client_lease(stages: Stages) -> ClientLease:
    """A lease on ``stages`` when it is a batcher; a no-op lease otherwise."""
    return ClientLease(stages if isinstance(stages, DynamicBatcher) else None)
