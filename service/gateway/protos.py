"""The gRPC stubs of ``proto/imos/v1/propagation.proto`` (iMOS Serve's own service) and of
``proto/inference/grpc_service.proto`` (the Open Inference Protocol), generated with grpc_tools and imported.

The generated files are build outputs (git-ignored, never edited): they live under
``service/_generated/`` (``imos/v1/``, ``inference/``) beside a stamp holding each .proto's SHA-256, and
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

PROPAGATION = "imos/v1/propagation"
INFERENCE = "inference/grpc_service"


@dataclass(frozen=True)
class ProtoPaths:
    """Where a .proto (``name``: its path under proto_root without ".proto") is read from and where its
    Python modules are written."""

    proto_root: Path
    out_root: Path
    name: str = PROPAGATION

    @property
    def proto(self) -> Path:
        return self.proto_root / f"{self.name}.proto"

    @property
    def package_dir(self) -> Path:
        return self.out_root / Path(self.name).parent

    @property
    def base(self) -> str:
        return Path(self.name).name

    @property
    def module(self) -> str:
        return f"{self.name.replace('/', '.')}_pb2"

    @property
    def stamp(self) -> Path:
        return self.package_dir / f"{self.base}.proto.sha256"


def default_paths(name: str = PROPAGATION) -> ProtoPaths:
    """The repository's proto/ folder and service/_generated/."""
    service_dir = Path(__file__).resolve().parents[1]
    return ProtoPaths(service_dir.parent / "proto", service_dir / "_generated", name)


def proto_digest(paths: ProtoPaths) -> str:
    if not paths.proto.is_file():
        raise ImosError(f"gRPC definition {paths.proto} is missing")
    return hashlib.sha256(paths.proto.read_bytes()).hexdigest()


def is_current(paths: ProtoPaths) -> bool:
    """True when both modules exist and were generated from this .proto.

    Without the .proto (an install that ships only the generated modules) existing modules are used.
    """
    outputs = (paths.package_dir / f"{paths.base}_pb2.py", paths.package_dir / f"{paths.base}_pb2_grpc.py")
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
        made = Path(tmp) / Path(paths.name).parent
        for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py"):
            os.replace(made / f"{paths.base}{suffix}", paths.package_dir / f"{paths.base}{suffix}")
    pkg = paths.package_dir
    while pkg != paths.out_root:
        (pkg / "__init__.py").touch()
        pkg = pkg.parent
    paths.stamp.write_text(digest + "\n")


def ensure_generated(paths: ProtoPaths | None = None) -> ProtoPaths:
    """Generate the modules unless they are current; returns the paths used."""
    paths = paths or default_paths()
    if not is_current(paths):
        generate(paths)
    return paths


def load_protos(paths: ProtoPaths | None = None) -> tuple[ModuleType, ModuleType]:
    """(X_pb2, X_pb2_grpc) of one .proto (default: propagation), generating them first when needed."""
    paths = paths or default_paths()
    module = paths.module
    if module in sys.modules and f"{module}_grpc" in sys.modules:
        return sys.modules[module], sys.modules[f"{module}_grpc"]
    paths = ensure_generated(paths)
    root = str(paths.out_root)
    if root not in sys.path:
        sys.path.insert(0, root)
    importlib.invalidate_caches()  # the files may have been written after the import system looked
    return importlib.import_module(module), importlib.import_module(f"{module}_grpc")


def main() -> int:
    """Generate the stubs now (build time)."""
    for name in (PROPAGATION, INFERENCE):
        paths = default_paths(name)
        fresh = is_current(paths)
        ensure_generated(paths)
        state = "already current" if fresh else "generated"
        print(f"gRPC stubs {state} in {paths.package_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
