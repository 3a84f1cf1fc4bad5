"""precision=auto: the fastest validated precision of each backend on the host, resolved once at load."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from service.engine.loader import load_engine
from service.engine.precision import HostSpeed, choose, resolve, this_host
from service.settings import Settings
from tests.integration.rest_harness import rest_client

AMX = HostSpeed(bf16_native=True, int8_fast=True)
CASCADE_LAKE = HostSpeed(bf16_native=False, int8_fast=True)
AVX2 = HostSpeed(bf16_native=False, int8_fast=False)


@pytest.mark.parametrize(("backend", "device", "host", "precision"), [
    ("torch", "cpu", AMX, "bf16"),
    ("torch", "cpu", CASCADE_LAKE, "fp32"),  # AVX-512 without BF16: bf16 would be emulated, 2.5-3x slower
    ("torch", "cpu", AVX2, "fp32"),
    ("onnx", "cpu", AMX, "int8"),
    ("onnx", "cpu", CASCADE_LAKE, "int8"),
    ("onnx", "cpu", AVX2, "fp32"),
    ("torch", "cuda:1", AVX2, "fp16"),
    ("tensorrt", "cuda", AVX2, "fp16"),
])
def test_auto_chooses_per_backend_and_host(backend: str, device: str, host: HostSpeed, precision: str) -> None:
    choice = choose(backend, device, host)
    assert choice.precision == precision and choice.reason


def test_an_explicit_precision_is_kept() -> None:
    assert resolve("torch", "cpu", "fp32").precision == "fp32"
    assert resolve("onnx", "cpu", "int8").precision == "int8"


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_an_auto_engine_runs_and_says_what_it_chose(tiny_repo: Path, backend: str) -> None:
    expected = choose(backend, "cpu", this_host()).precision
    engine = load_engine(tiny_repo, "tiny", backend, precision="auto")
    assert engine.precision == expected
    assert load_engine(tiny_repo, "tiny", backend).precision == "fp32"


def test_the_served_engine_is_named_in_the_metrics(embedded_settings: Settings) -> None:
    settings = embedded_settings.model_copy(update={"precision": "auto"})
    expected = choose("torch", "cpu", this_host()).precision

    async def scenario() -> str:
        async with rest_client(settings) as (client, _):
            return (await client.get("/metrics")).text

    text = asyncio.run(scenario())
    assert f'imos_engine_info{{backend="torch",device="cpu",model="tiny:1",precision="{expected}"}} 1.0' in text
