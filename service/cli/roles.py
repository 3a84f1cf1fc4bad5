"""``imos serve``, ``imos gateway`` and ``imos worker``."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from service.errors import InvalidInput
from service.logs import configure
from service.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    for name, text in (("serve", "gateway + worker in one process (in-memory store unless IMOS_REDIS_URL)"),
                       ("gateway", "REST + gRPC gateway only (needs IMOS_REDIS_URL)"),
                       ("worker", "worker only: runs the model (needs IMOS_REDIS_URL)")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--http-port", type=int, default=None,
                       help="REST port (for a worker: its /healthz, /readyz and /metrics, default a free "
                            "one, printed; -1 = none)")
        if name != "worker":
            p.add_argument("--grpc-port", type=int, default=None)
        p.add_argument("--host", default=None)
        if name != "gateway":
            p.add_argument("--backend", choices=("torch", "onnx", "tensorrt"), default=None)
            p.add_argument("--device", default=None)
            p.add_argument("--precision", choices=("fp32", "bf16", "fp16", "int8", "auto"), default=None,
                           help="fp32, bf16 (torch), fp16 (CUDA), int8 (onnx) or auto (the fastest on this host)")
        p.add_argument("--model", default=None)
        p.add_argument("--model-repo", type=Path, default=None)
        p.add_argument("--redis-url", default=None)
        p.set_defaults(func=run, role={"serve": "all"}.get(name, name))


def settings_from(args: argparse.Namespace) -> Settings:
    """Environment first, then command-line flags on top."""
    flags = {"http_port": "http_port", "grpc_port": "grpc_port", "host": "http_host", "backend": "backend",
             "device": "device", "precision": "precision", "model": "model", "model_repo": "model_repo",
             "redis_url": "redis_url"}
    if getattr(args, "role", None) == "worker":
        flags["http_port"] = "worker_http_port"
    overrides = {field: getattr(args, arg) for arg, field in flags.items() if getattr(args, arg, None) is not None}
    return Settings(**overrides)


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    if args.role != "all" and not settings.redis_url:
        raise InvalidInput(f"imos {args.command} needs IMOS_REDIS_URL (or --redis-url): "
                           "split roles share sessions through Redis")
    configure(settings.log_level, settings.log_json)
    from service.serve import serve_forever

    asyncio.run(serve_forever(settings, args.role))
    return 0
