"""``imos import-checkpoint``, ``imos export`` and ``imos models``."""

from __future__ import annotations

import argparse
from pathlib import Path

from service.cli.common import add_repo_arg, repo_root
from service.engine.repo import ModelRepo
from service.errors import BackendUnavailable, InvalidInput


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import-checkpoint", help="import an XMem-layout .pth into the model repository")
    p.add_argument("path", type=Path)
    p.add_argument("--name", required=True)
    p.add_argument("--version", type=int, default=1)
    p.add_argument("--description", default=None)
    add_repo_arg(p)
    p.set_defaults(func=run_import)

    e = sub.add_parser("export", help="export a model's stages for a backend (ONNX graphs, TensorRT plans)")
    e.add_argument("name")
    e.add_argument("--backend", choices=("onnx", "tensorrt"), default="onnx")
    e.add_argument("--precision", choices=("fp32", "int8", "auto"), default="fp32",
                   help="onnx: int8 also calibrates and writes the int8 graphs (about half a minute for imos-lite); "
                        "auto: int8 where this CPU has VNNI / AMX-INT8, as a worker with IMOS_PRECISION=auto runs")
    add_repo_arg(e)
    e.set_defaults(func=run_export)

    m = sub.add_parser("models", help="list the models in the repository")
    add_repo_arg(m)
    m.set_defaults(func=run_models)


def run_import(args: argparse.Namespace) -> int:
    from service.engine.importing import import_checkpoint

    entry = import_checkpoint(args.path, ModelRepo(repo_root(args)), args.name, args.version, args.description)
    spec = entry.spec
    print(f"imported {args.path.name} as {entry.name}:{entry.version} -> {entry.weights_path}")
    print(f"  key backbone {spec.key_backbone.block}{list(spec.key_backbone.layers)}, key_dim {spec.key_dim}, "
          f"value_dim {spec.value_dim}, hidden_dim {spec.hidden_dim}, adapters {spec.adapters.enabled}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from service.engine.loader import ensure_onnx
    from service.engine.precision import resolve

    precision = args.precision
    if precision == "auto":
        precision = "int8" if resolve(args.backend, "cpu", "auto").precision == "int8" else "fp32"
    if precision == "int8" and args.backend != "onnx":
        raise BackendUnavailable(f"int8 graphs are for the onnx backend, not {args.backend}")
    repo = ModelRepo(repo_root(args))
    entry = repo.entry(args.name)
    net = repo.load_network(entry)
    onnx_dir = ensure_onnx(entry, net)
    print(f"ONNX graphs in {onnx_dir}")
    if precision == "int8":
        from service.engine.backends.onnx_quantize import ensure_int8

        print(f"int8 ONNX graphs in {ensure_int8(net, entry.memory, onnx_dir, entry.build_dir / 'onnx-int8')}")
    if args.backend == "tensorrt":
        from service.engine.backends.tensorrt_backend import TensorRTStages

        stages = TensorRTStages(onnx_dir, entry.spec.hidden_dim, cache_dir=entry.build_dir / "tensorrt")
        print(f"TensorRT engines in {getattr(stages, 'cache_dir', entry.build_dir / 'tensorrt')}")
    return 0


def run_models(args: argparse.Namespace) -> int:
    repo = ModelRepo(repo_root(args))
    names = repo.names()
    if not names:
        raise InvalidInput(f"no models in {repo.root}")
    for name in names:
        entry = repo.entry(name)
        trained = entry.meta.get("trained", False)
        print(f"{name}:{entry.version}  trained={trained}  {entry.meta.get('description', '')}")
    return 0
