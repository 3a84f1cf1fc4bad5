"""Wiring: build the store, session service, engine and worker for a role, from Settings."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from service.auth import KeyRing, load_keyring
from service.engine.repo import ModelRepo, default_repo_root
from service.errors import ImosError
from service.metrics import Metrics
from service.sessions.records import SessionRecords
from service.sessions.service import SessionService
from service.settings import Settings
from service.store.base import Store
from service.store.memory import MemoryStore
from service.tracing import Tracing, setup_tracing

if TYPE_CHECKING:  # the gateway role owns no model: it never imports torch
    from service.engine.loader import Engine
    from service.worker.runner import Worker


@dataclass(frozen=True)
class ModelInfo:
    """What /v1/models reports and what the gateway validates against (no weights loaded)."""

    name: str
    version: int
    trained: bool
    description: str
    max_objects: int
    architecture: dict[str, Any] = field(default_factory=dict)


@dataclass
class Runtime:
    settings: Settings
    store: Store
    records: SessionRecords
    sessions: SessionService
    model: ModelInfo
    metrics: Metrics
    keys: KeyRing = field(default_factory=KeyRing)
    tracing: Tracing = field(default_factory=Tracing)
    engine: Engine | None = None
    worker: Worker | None = None
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    background: set[asyncio.Task[None]] = field(default_factory=set)  # gateway jobs running after their reply


def make_store(settings: Settings, embedded: bool) -> Store:
    if settings.redis_url:
        from service.store.redis_store import RedisStore

        return RedisStore(settings.redis_url)
    if not embedded:
        raise ImosError("IMOS_REDIS_URL must be set for the split gateway/worker roles")
    return MemoryStore()


def model_info(settings: Settings) -> ModelInfo:
    repo = ModelRepo(settings.model_repo or default_repo_root())
    entry = repo.entry(settings.model)
    return ModelInfo(entry.name, entry.version, bool(entry.meta.get("trained", False)),
                     str(entry.meta.get("description", "")).strip(), entry.spec.max_objects,
                     entry.spec.to_dict())


def build_runtime(settings: Settings, role: str, tracing: Tracing | None = None) -> Runtime:
    """role: 'all' (embedded or with Redis), 'gateway' or 'worker'. tracing: override (tests)."""
    store = make_store(settings, embedded=(role == "all"))
    records = SessionRecords(store, settings.key_prefix, settings.session_ttl_s)
    info = model_info(settings)
    metrics = Metrics()
    tracing = tracing or setup_tracing(settings.otel_endpoint, f"imos-{role}")
    sessions = SessionService(records, settings, f"{info.name}:{info.version}", info.max_objects, tracing)
    rt = Runtime(settings, store, records, sessions, info, metrics,
                 keys=load_keyring(settings.api_keys, settings.api_keys_file), tracing=tracing)
    if role in ("all", "worker"):
        from service.engine.loader import load_engine
        from service.worker.runner import Worker

        # Loaded in a thread that then exits: torch's CPU kernels run on an OpenMP team per calling
        # thread, and while more teams live than there are cores, libgomp stops spinning between
        # parallel regions (about 15 % slower frames on 2 cores). The main thread never runs torch.
        with ThreadPoolExecutor(1, "imos-load") as loader:
            rt.engine = loader.submit(load_engine, settings.model_repo or default_repo_root(), settings.model,
                                      settings.backend, settings.device, settings.precision, compile=settings.compile,
                                      max_batch=settings.batch_max_size if settings.batch_max_delay_ms > 0 else 1
                                      ).result()
        metrics.engine.labels(rt.engine.model_id, settings.backend, settings.device, rt.engine.precision).set(1)
        rt.worker = Worker(records, rt.engine, settings, metrics=metrics, tracing=rt.tracing)
        sessions.local_worker = True
    return rt
