"""Prometheus metrics of one process, in its own registry (no module-level globals)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    """imos_* metrics with units in their names."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("imos_requests_total", "Requests by transport, route and status code",
                                ["transport", "route", "code"], registry=r)
        self.latency = Histogram("imos_request_duration_seconds", "Request latency", ["transport", "route"],
                                 registry=r, buckets=(0.005, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120))
        self.frames = Counter("imos_frames_processed_total", "Frames the engine processed", ["direction"], registry=r)
        self.frame_seconds = Histogram("imos_frame_duration_seconds", "Engine time per frame", registry=r,
                                       buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5))
        self.state_bytes = Histogram("imos_state_bytes", "Serialised memory state size per checkpoint", registry=r,
                                     buckets=(1e4, 1e5, 1e6, 4e6, 16e6, 64e6, 256e6))
        self.state_written = Counter("imos_state_written_bytes_total", "Checkpoint bytes written to the store, "
                                     "by kind (full record or delta)", ["kind"], registry=r)
        self.runs_failed = Counter("imos_runs_failed_total", "Runs that ended in failure, by error code", ["code"],
                                   registry=r)
        self.active_sessions = Gauge("imos_active_sessions", "Sessions with a run in progress", registry=r)
        self.queue_depth = Gauge("imos_queue_depth_jobs", "Jobs waiting or pending in the work queue", registry=r)
        self.device_memory = Gauge("imos_device_memory_bytes", "Accelerator memory allocated", registry=r)
        self.engine = Gauge("imos_engine_info", "The engine this worker runs (value 1)",
                            ["model", "backend", "device", "precision"], registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
