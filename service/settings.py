"""Service configuration: environment variables with the IMOS_ prefix, read once at start-up."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every IMOS_* variable. Built once in main() and passed down; never a global."""

    model_config = SettingsConfigDict(env_prefix="IMOS_", env_nested_delimiter="__", extra="ignore",
                                      populate_by_name=True)

    http_host: str = Field("127.0.0.1", description="REST bind address")
    http_port: int = Field(8000, description="REST port (0 = pick a free one)")
    grpc_port: int = Field(50051, description="gRPC port (0 = pick a free one)")
    worker_http_port: int = Field(0, description="`imos worker`'s probe and /metrics port (0 = a free one, "
                                                 "printed and logged; -1 = none), so many workers share a host")
    redis_url: str | None = Field(None, description="Redis URL; unset = in-memory store (embedded mode only)")
    key_prefix: str = Field("imos", description="prefix of every Redis key")
    model: str = Field("imos-lite", description="model served by workers")
    model_repo: Path | None = Field(None, description="model repository (default: bundled model_repo/)")
    backend: str = Field("torch", description="torch, onnx or tensorrt")
    device: str = Field("cpu", description="cpu, cuda or cuda:N")
    precision: str = Field("fp32", description="fp32, bf16 (torch), fp16 (CUDA), int8 (onnx backend, graphs "
                                                "quantised on first use) or auto (measured: the fastest of these "
                                                "on the host with fp32's masks, else fp32)")
    compile: bool = Field(False, description="torch backend: torch.compile the engine stages (CUDA graphs on CUDA); "
                                             "the first frames of each new frame size wait for the compiler")
    session_ttl_s: int = Field(3600, description="idle sessions expire after this many seconds")
    lease_ttl_s: float = Field(30.0, description="a worker's lease on a session lapses after this")
    max_attempts: int = Field(3, description="attempts at a run (a worker crash counts) before it ends as failed")
    run_deadline_s: float = Field(900.0, description="longest a waiting caller (one-shot REST, gRPC Propagate, "
                                                     "the PACS job) waits for its run before it gets a deadline error")
    checkpoint_every: int = Field(10, description="checkpoint memory state every N frames")
    worker_concurrency: int = Field(2, description="sessions one worker processes at once")
    batch_max_size: int = Field(8, description="most frames of concurrent sessions batched into one stage call")
    batch_max_delay_ms: float = Field(0.0, description="longest a stage call waits for a batch; 0 = off "
                                                       "(batched results match to float rounding, not bit for bit)")
    max_frames: int = Field(5000, description="frames per session")
    max_frame_pixels: int = Field(4096 * 4096, description="pixels per frame")
    max_request_bytes: int = Field(1 << 30, description="bytes per upload")
    max_state_bytes: int = Field(256 << 20, description="largest memory checkpoint of one session pass")
    state_fp16: bool = Field(False, description="memory checkpoints in fp16: half the Redis bytes; a pass resumed "
                                                "from one differs from an uninterrupted run by fp16 rounding")
    max_grpc_message_bytes: int = Field(64 << 20, description="bytes per gRPC message")
    api_keys: str | None = Field(None, description="API keys as tenant:sha256hex,...; unset (and no file) = no auth")
    api_keys_file: Path | None = Field(None, description="YAML/JSON secrets file: {tenant: [sha256hex, ...]}")
    metrics_require_key: bool = Field(False, description="require an API key on /metrics too")
    tls_cert_file: Path | None = Field(None, description="PEM certificate: HTTPS for REST, TLS for gRPC")
    tls_key_file: Path | None = Field(None, description="PEM private key of tls_cert_file")
    tls_client_ca_file: Path | None = Field(None, description="PEM CA: gRPC requires client certificates (mTLS)")
    otel_endpoint: str | None = Field(None, description="OTLP/HTTP traces endpoint; unset = tracing off")
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR")
    log_json: bool = Field(True, description="structured JSON logs")
    label_studio_url: str | None = Field(None, validation_alias=AliasChoices("IMOS_LABEL_STUDIO_URL",
                                                                             "LABEL_STUDIO_URL"),
                                         description="Label Studio's address for task media with relative URLs "
                                                     "(also LABEL_STUDIO_URL; a project's /setup wins)")
    label_studio_api_key: str | None = Field(None, validation_alias=AliasChoices("IMOS_LABEL_STUDIO_API_KEY",
                                                                                 "LABEL_STUDIO_API_KEY"),
                                             description="Label Studio token for fetching task media (also "
                                                         "LABEL_STUDIO_API_KEY; a project's /setup wins)")
    label_studio_predict_budget_s: float = Field(60.0, description="longest a Label Studio /predict waits for its "
                                                                   "runs before answering with the frames done "
                                                                   "(Label Studio gives up after 100 s)")
    monai_label_labels: str = Field("object 1,object 2,object 3",
                                    description="comma-separated segment names 3D Slicer's MONAI Label module "
                                                "offers before anything is painted (painted segments keep "
                                                "their own names)")
