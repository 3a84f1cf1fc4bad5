"""The gRPC stubs of ``proto/imos/v1/propagation.proto``, generated with grpc_tools and imported.

The generated files are build outputs (git-ignored, never edited): they live in
``service/_generated/imos/v1/`` beside a stamp holding the .proto's SHA-256, and
are regenerated when missing or when the .proto changed. ``python -m
service.gateway.protos`` generates them ahead of time (scripts/setup.sh, images).

protoc writes ``from imos.v1 import propagation_pb2`` into the _grpc module, so
the generated root is put on ``sys.path`` when the modules are first loaded.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from service.errors import ImosError

PROTO_NAME = "imos/v1/propagation.proto"
MODULE = "imos.v1.propagation_pb2"


@dataclass(frozen=True)
class ProtoPaths:
    """Where the .proto is read from and where its Python modules are written."""

    proto_root: Path
    out_root: Path

    @property
    def proto(self) -> Path:
        return self.proto_root / PROTO_NAME

    @property
    def package_dir(self) -> Path:
        return self.out_root / "imos" / "v1"

    @property
    def stamp(self) -> Path:
        return self.package_dir / "propagation.proto.sha256"


def default_paths() -> ProtoPaths:
    """The repository's proto/ folder and service/_generated/."""
    service_dir = Path(__file__).resolve().parents[1]
    return ProtoPaths(service_dir.parent / "proto", service_dir / "_generated")


def proto_digest(paths: ProtoPaths) -> str:
    if not paths.proto.is_file():
        raise ImosError(f"gRPC definition {paths.proto} is missing")
    return hashlib.sha256(paths.proto.read_bytes()).hexdigest()


def is_current(paths: ProtoPaths) -> bool:
    """True when both modules exist and were generated from this .proto.

    Without the .proto (an install that ships only the generated modules) existing modules are used.
    """
    outputs = (paths.package_dir / "propagation_pb2.py", paths.package_dir / "propagation_pb2_grpc.py")
    if not all(p.is_file() for p in outputs):
        return False
    if not paths.proto.is_file():
        return True
    if not paths.stamp.is_file():
        return False
    return paths.stamp.read_text().strip() == proto_digest(paths)


def generate(paths: ProtoPaths) -> None:
    """Run protoc (grpc_tools) into a temporary folder, then move the files in place.

    Writing elsewhere first means a reader never sees half-written modules, and two
    processes generating at once each install a complete set.
    """
    from grpc_tools import protoc  # build-time dependency: imported only when generating

    digest = proto_digest(paths)
    paths.package_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=paths.out_root) as tmp:
        include = Path(protoc.__file__).parent / "_proto"  # well-known types shipped with grpc_tools
        code = protoc.main(["grpc_tools.protoc", f"-I{paths.proto_root}", f"-I{include}",
                            f"--python_out={tmp}", f"--pyi_out={tmp}", f"--grpc_python_out={tmp}",
                            str(paths.proto)])
        if code != 0:
            raise ImosError(f"protoc failed on {paths.proto} (exit code {code})")
        made = Path(tmp) / "imos" / "v1"
        for name in ("propagation_pb2.py", "propagation_pb2.pyi", "propagation_pb2_grpc.py"):
            os.replace(made / name, paths.package_dir / name)
    for pkg in (paths.out_root / "imos", paths.package_dir):
        (pkg / "__init__.py").touch()
    paths.stamp.write_text(digest + "\n")


def ensure_generated(paths: ProtoPaths | None = None) -> ProtoPaths:
    """Generate the modules unless they are current; returns the paths used."""
    paths = paths or default_paths()
    if not is_current(paths):
        generate(paths)
    return paths


def load_protos(paths: ProtoPaths | None = None) -> tuple[ModuleType, ModuleType]:
    """(propagation_pb2, propagation_pb2_grpc), generating them first when needed."""
    if MODULE in sys.modules and f"{MODULE}_grpc" in sys.modules:
        return sys.modules[MODULE], sys.modules[f"{MODULE}_grpc"]
    paths = ensure_generated(paths)
    root = str(paths.out_root)
    if root not in sys.path:
        sys.path.insert(0, root)
    importlib.invalidate_caches()  # the files may have been written after the import system looked
    return importlib.import_module(MODULE), importlib.import_module(f"{MODULE}_grpc")


def main() -> int:
    """Generate the stubs now (build time)."""
    paths = default_paths()
    fresh = is_current(paths)
    ensure_generated(paths)
    state = "already current" if fresh else "generated"
    print(f"gRPC stubs {state} in {paths.package_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
