"""precision=auto: the candidates the host flags allow, measured against fp32 once and cached."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from service.engine.loader import load_engine
from service.engine.precision import HostSpeed, candidates, choose, resolve, this_host
from service.engine.precision_probe import CACHE_NAME, Trial, agreement, pick
from service.engine.repo import ModelRepo
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


def test_pick_keeps_fp32_unless_a_candidate_is_faster_with_the_same_masks() -> None:
    fp32 = Trial("fp32", 10.0, 1.0)
    # ONNX Runtime int8 on an Intel Xeon with AMX (issue 20): 3x slower than fp32 despite VNNI/AMX flags
    assert pick([fp32, Trial("int8", 3.3, 0.99)]).precision == "fp32"
    assert pick([fp32, Trial("int8", 10.5, 0.99)]).precision == "fp32"  # within noise: not worth it
    assert pick([fp32, Trial("bf16", 25.0, 0.80)]).precision == "fp32"  # fast, but other masks
    choice = pick([fp32, Trial("bf16", 25.0, 0.99), Trial("fp16", 20.0, 0.99)])
    assert choice.precision == "bf16" and "fp32 10.0 frames/s" in choice.reason


def test_agreement_is_the_mean_iou_of_every_object() -> None:
    a = np.zeros((4, 4), np.uint8)
    a[:2, :2] = 1
    b = a.copy()
    b[0, 0] = 0
    assert agreement([a], [a]) == 1.0 and agreement([a], [b]) == pytest.approx(0.75)
    assert agreement([np.zeros((2, 2), np.uint8)], [np.zeros((2, 2), np.uint8)]) == 1.0


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_an_auto_engine_is_measured_once_then_cached(tiny_repo: Path, backend: str) -> None:
    options = candidates(backend, "cpu", this_host())
    engine = load_engine(tiny_repo, "tiny", backend, precision="auto")
    assert engine.precision in ("fp32", *options)
    if options:
        assert engine.precision_reason.startswith("measured: fp32 ")
        again = load_engine(tiny_repo, "tiny", backend, precision="auto")
        assert again.precision == engine.precision and again.precision_reason.endswith("(cached)")
        entry = ModelRepo(tiny_repo).entry("tiny")
        assert (entry.build_dir / CACHE_NAME).is_file()
    assert load_engine(tiny_repo, "tiny", backend).precision == "fp32"


def test_the_served_engine_is_named_in_the_metrics_and_models(embedded_settings: Settings) -> None:
    settings = embedded_settings.model_copy(update={"precision": "auto"})

    async def scenario() -> tuple[str, dict[str, str]]:
        async with rest_client(settings) as (client, _):
            models = (await client.get("/v1/models")).json()["models"][0]
            return (await client.get("/metrics")).text, models["serving"]

    text, serving = asyncio.run(scenario())
    chosen = serving["precision"]
    assert serving["backend"] == "torch" and serving["precision_reason"]
    assert f'imos_engine_info{{backend="torch",device="cpu",model="tiny:1",precision="{chosen}"}} 1.0' in text
