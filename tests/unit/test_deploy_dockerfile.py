"""The Dockerfile and its build context: lint, targets, hardening, pins, what goes into the image."""

from __future__ import annotations

import argparse
import importlib
import os
import re
import shlex
import subprocess
import tomllib

import pytest
from packaging.requirements import Requirement

from scripts import validate_deploy as vd
from tests.conftest import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text()


def instructions(text: str = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    logical = ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") and not logical:
            continue
        logical += line.rstrip("\\").strip() + " " if line.rstrip().endswith("\\") else line.strip()
        if not line.rstrip().endswith("\\"):
            if logical:
                word, _, rest = logical.partition(" ")
                out.append((word.upper(), rest.strip()))
            logical = ""
    return out


def stages() -> dict[str, list[tuple[str, str]]]:
    """{stage name: its instructions after FROM}."""
    out: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for word, rest in instructions():
        if word == "FROM":
            name = rest.split(" AS ")[-1].strip() if " AS " in rest else rest
            current = out.setdefault(name, [])
        elif current is not None:
            current.append((word, rest))
    return out


def args() -> dict[str, str]:
    return dict(rest.split("=", 1) for word, rest in instructions() if word == "ARG" and "=" in rest)


def test_hadolint_finds_nothing() -> None:
    try:
        problems = vd.hadolint()
    except FileNotFoundError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(exc))
    assert problems == []


def test_two_targets_gpu_by_default_both_hardened() -> None:
    found = stages()
    assert {"wheel", "cpu-build", "cpu", "gpu-build", "gpu"} <= set(found)
    assert list(found)[-1] == "gpu", "a plain `docker build .` must give the GPU image"
    for target in ("cpu", "gpu"):
        words = dict(found[target])
        assert words["USER"].split(":")[0] not in ("0", "root"), f"{target} runs as root"
        assert "healthcheck.py" in words["HEALTHCHECK"]
        assert words["ENTRYPOINT"] == '["/opt/imos/entrypoint.sh"]'
        assert words["CMD"] == '["serve"]'
        env = " ".join(rest for w, rest in found[target] if w == "ENV")
        assert "IMOS_HTTP_HOST=0.0.0.0" in env, "a container must listen beyond its loopback"
    gpu_env = " ".join(rest for w, rest in found["gpu"] if w == "ENV")
    assert "IMOS_BACKEND=tensorrt" in gpu_env and "IMOS_DEVICE=cuda" in gpu_env
    cpu_env = " ".join(rest for w, rest in found["cpu"] if w == "ENV")
    assert "IMOS_BACKEND=onnx" in cpu_env and "IMOS_DEVICE=cpu" in cpu_env


def test_base_images_and_versions_are_pinned() -> None:
    pins = args()
    for key in ("PYTHON_IMAGE", "CUDA_IMAGE"):
        tag = pins[key].partition(":")[2]
        assert re.match(r"\d+\.\d+\.\d+-", tag), f"{key}={pins[key]}: pin a full version tag"
    assert pins["TORCH_VERSION"] == "2.13.0"
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert f"torch=={pins['TORCH_VERSION']}" in setup, "the images and CI must run the same torch release"
    assert re.fullmatch(r"10\.\d+\.\d+\.\d+", pins["TENSORRT_VERSION"]), "the backend needs TensorRT 10.x"
    # torch's CUDA build and the base image: the same CUDA major.minor
    gpu_pins = vd.read_pins(ROOT / "deploy" / "docker" / "constraints-gpu.txt")
    cuda_of_torch = ".".join(gpu_pins["cuda-toolkit"].split(".")[:2])
    cuda_of_base = ".".join(pins["CUDA_IMAGE"].split(":")[1].split(".")[:2])
    assert cuda_of_torch == cuda_of_base, f"torch is built for CUDA {cuda_of_torch}, the base has {cuda_of_base}"
    assert gpu_pins["tensorrt-cu13-libs"] == pins["TENSORRT_VERSION"]
    assert f"tensorrt-cu{cuda_of_base.split('.')[0]}==" in DOCKERFILE


def test_constraints_pin_every_runtime_dependency() -> None:
    """The images install what CI tests: every dependency of pyproject.toml is pinned within its range."""
    pins = vd.read_pins(ROOT / "deploy" / "docker" / "constraints.txt")
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for text in deps:
        req = Requirement(text)
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        if name == "torch":
            continue  # pinned by the Dockerfile (CPU or CUDA build)
        assert name in pins, f"{name} is not pinned in deploy/docker/constraints.txt"
        assert req.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} violates {text}"


def dockerignore_includes(path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides; '!' re-includes."""
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line[1:] if negate else line
        regex = re.escape(pattern.rstrip("/")).replace(r"\*\*", ".*").replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        rules.append((re.compile(regex + "$"), negate))
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    included = True
    for regex, negate in rules:
        if any(regex.match(c) for c in candidates):
            included = negate
    return included


@pytest.mark.parametrize(("path", "included"), [
    ("service/engine/loader.py", True),
    ("proto/imos/v1/propagation.proto", True),
    ("pyproject.toml", True),
    ("deploy/docker/entrypoint.sh", True),
    ("model_repo/imos-lite/model.yaml", True),
    ("model_repo/imos-lite/2/weights.safetensors", True),
    ("model_repo/xmem-synthetic/model.yaml", True),
    ("model_repo/xmem-synthetic/1/build/onnx/key.onnx", False),
    ("model_repo/imos-lite/2/build/tensorrt/sm90-trt10.16.1.11/key.plan", False),
    ("model_repo/xmem/1/weights.safetensors", False),
    ("model_repo/xmem/model.yaml", False),
    ("XMem.pth", False),
    (".venv/bin/python", False),
    (".env", False),
    ("tests/unit/test_deploy_dockerfile.py", False),
    ("service/_generated/imos/v1/propagation_pb2.py", False),
    ("service/engine/__pycache__/loader.cpython-311.pyc", False),
])
def test_build_context_is_an_allow_list(path: str, included: bool) -> None:
    assert dockerignore_includes(path) is included


def test_every_copied_source_is_in_the_build_context() -> None:
    for word, rest in instructions():
        if word != "COPY" or "--from=" in rest:
            continue
        sources = [s for s in shlex.split(rest) if not s.startswith("--")][:-1]
        for src in sources:
            path = ROOT / src
            assert path.exists(), f"COPY {src}: missing"
            files = [f for f in path.rglob("*") if f.is_file()] if path.is_dir() else [path]
            sent = [f for f in files if dockerignore_includes(f.relative_to(ROOT).as_posix())]
            assert sent, f"COPY {src}: nothing of it is in the build context (.dockerignore)"


def test_entrypoint_knows_every_imos_command() -> None:
    from service.cli.main import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    listed = re.search(r'^CLI_COMMANDS="([^"]+)"', vd.ENTRYPOINT.read_text(), re.MULTILINE)
    assert listed and set(listed.group(1).split()) == set(sub.choices), \
        "keep CLI_COMMANDS in deploy/docker/entrypoint.sh equal to the imos subcommands"


def test_image_entrypoint_exists() -> None:
    """The image's ENTRYPOINT script and the `imos` command it runs exist; CMD is an imos subcommand."""
    assert os.access(vd.ENTRYPOINT, os.X_OK) and os.access(ROOT / "deploy/docker/healthcheck.py", os.X_OK)
    script = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]["imos"]
    module, _, func = script.partition(":")
    assert callable(getattr(importlib.import_module(module), func))


def test_shellcheck_finds_nothing() -> None:
    try:
        problems = vd.shellcheck()
    except FileNotFoundError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(exc))
    assert problems == []


def test_bash_parses_the_entrypoint() -> None:
    subprocess.run(["bash", "-n", str(vd.ENTRYPOINT)], check=True)


def test_the_sizing_tool_shipped_in_the_image_runs() -> None:
    import json
    import sys

    proc = subprocess.run([sys.executable, str(ROOT / "deploy" / "docker" / "session_memory.py"), "--device", "cpu",
                           "--frames", "3", "--height", "32", "--width", "48", "--sessions", "1,2"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["sessions"] for r in runs] == [1, 2] and all(r["state_bytes_per_pass"] > 0 for r in runs)


def test_the_gateway_target_installs_no_model_runtime() -> None:
    """The slim gateway image: `imos gateway` by default, and neither torch nor ONNX Runtime installed."""
    found = stages()
    words = dict(found["gateway"])
    assert words["CMD"] == '["gateway"]' and words["USER"].split(":")[0] not in ("0", "root")
    build = " ".join(rest for w, rest in found["gateway-build"] if w == "RUN")
    assert "--without torch onnx onnxruntime" in build and "torch==" not in build
    import subprocess
    import sys

    out = subprocess.run([sys.executable, str(ROOT / "deploy" / "docker" / "requirements.py"), str(ROOT / "pyproject.toml"),
                          "--without", "torch", "onnx", "onnxruntime"], capture_output=True, text=True, check=True)
    names = {re.split(r"[<>=!~ \[;]", line, maxsplit=1)[0] for line in out.stdout.split()}
    assert not names & {"torch", "onnx", "onnxruntime"} and {"fastapi", "grpcio", "highdicom"} <= names
