"""The torch backend's fast paths compute what the plain network computes (within each precision's tolerance)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from service.engine.backends.torch_backend import (
    ChannelsLastMaxPool2d,
    TorchStages,
    cpu_has_fast_bf16,
    fold_batchnorm,
)
from service.engine.nn.network import ImosNet
from service.engine.spec import BackboneSpec
from service.settings import Settings
from tests.conftest import randomised, tiny_spec

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA GPU: torch.compile with CUDA graphs and autocast fp16 "
                                       "are CUDA paths, and this machine has none")


def _inputs(net: ImosNet, k: int = 2, h: int = 64, w: int = 96, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    spec = net.spec
    return {"image": torch.randn(1, 3, h, w, generator=g),
            "hidden": torch.randn(1, k, spec.hidden_dim, h // 16, w // 16, generator=g),
            "masks": torch.rand(1, k, h, w, generator=g),
            "readout": torch.randn(1, k, spec.value_dim, h // 16, w // 16, generator=g)}


def _all_stages(stages: TorchStages, x: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    feats = stages.encode_key(x["image"])
    value, vh = stages.encode_value(x["image"], feats.f16, x["hidden"], x["masks"])
    logits, sh = stages.segment(feats, x["readout"], x["hidden"])
    return [feats.key, feats.shrinkage, feats.selection, feats.f16, feats.f8, feats.f4, value, vh, logits, sh]


def _reference(net: ImosNet, x: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    with torch.inference_mode():
        key = net.encode_key(x["image"])
        value = net.encode_value(x["image"], key[3], x["hidden"], x["masks"])
        seg = net.segment(key[3], key[4], key[5], x["readout"], x["hidden"])
    return [*key, *value, *seg]


def test_channels_last_max_pool_is_exact() -> None:
    x = torch.randn(2, 5, 33, 40)
    ref = nn.MaxPool2d(3, stride=2, padding=1)(x)
    out = ChannelsLastMaxPool2d(3, stride=2, padding=1)(x)
    assert torch.equal(out, ref) and out.is_contiguous()


@pytest.mark.parametrize("block", ["basic", "bottleneck"])
def test_fold_batchnorm_keeps_the_function(block: str) -> None:
    torch.manual_seed(0)
    net = randomised(ImosNet(tiny_spec(key_backbone=BackboneSpec(block=block, layers=(1, 1, 1), width=8))))
    folded = fold_batchnorm(copy.deepcopy(net))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    x = _inputs(net)
    for ours, ref in zip(_reference(folded, x), _reference(net, x), strict=True):
        torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-4)


def test_fp32_cpu_stages_equal_the_network_exactly(tiny_net: ImosNet) -> None:
    """fp32 keeps NCHW convolutions (XMem parity); only max pooling changes layout, which is exact."""
    x = _inputs(tiny_net)
    ref = _reference(tiny_net, x)
    outs = _all_stages(TorchStages(copy.deepcopy(tiny_net)), x)
    for ours, r in zip(outs, ref, strict=True):
        assert ours.dtype == torch.float32 and ours.is_contiguous()
        assert torch.equal(ours, r)


def test_bf16_cpu_stages_run_in_bf16_and_leave_the_callers_network_alone(tiny_net: ImosNet) -> None:
    before = {k: v.clone() for k, v in tiny_net.state_dict().items()}
    stages = TorchStages(tiny_net, precision="bf16")
    assert all(p.dtype == torch.bfloat16 for p in stages.net.parameters())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in stages.net.modules())
    assert all(v.dtype == before[k].dtype and torch.equal(v, before[k]) for k, v in tiny_net.state_dict().items())
    assert any(isinstance(m, nn.BatchNorm2d) for m in tiny_net.modules())
    x = _inputs(tiny_net)
    for ours, r in zip(_all_stages(stages, x), _reference(tiny_net, x), strict=True):
        assert ours.dtype == torch.float32 and ours.is_contiguous() and ours.shape == r.shape
        # bf16 keeps 8 significant bits: agreement to a few percent of each tensor's scale.
        assert float((ours - r).abs().max()) <= 0.05 * float(r.abs().max()) + 1e-2


def test_bf16_on_a_cpu_without_native_bf16_warns_and_fp32_never_does(tiny_net: ImosNet,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    # Reads this host's real CPU: AVX2-only hosts take the warning branch, AVX-512/AMX hosts the quiet one.
    with caplog.at_level("WARNING", logger="service.engine.backends.torch_backend"):
        TorchStages(tiny_net, precision="fp32")
        assert "bf16" not in caplog.text
        TorchStages(tiny_net, precision="bf16")
    assert ("is emulated" in caplog.text) == (not cpu_has_fast_bf16())


@pytest.mark.slow
def test_compiled_cpu_stages_match_eager(tiny_net: ImosNet) -> None:
    pytest.importorskip("torch._inductor", reason="torch.compile needs inductor")
    x = _inputs(tiny_net, k=1, h=32, w=32)
    eager = _all_stages(TorchStages(copy.deepcopy(tiny_net)), x)
    compiled = TorchStages(copy.deepcopy(tiny_net), compile=True)
    assert compiled.compiled
    for ours, ref in zip(_all_stages(compiled, x), eager, strict=True):
        torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-4)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_compiled_cuda_stages_with_cuda_graphs_match_eager(tiny_net: ImosNet, precision: str) -> None:
    x = {k: v.cuda() for k, v in _inputs(tiny_net).items()}
    eager = _all_stages(TorchStages(copy.deepcopy(tiny_net), "cuda", precision), x)
    compiled = TorchStages(copy.deepcopy(tiny_net), "cuda", precision, compile=True)
    tol = 1e-4 if precision == "fp32" else 2e-2
    for _ in range(3):  # warm-up, recording, replays: outputs must survive the next replay
        first = _all_stages(compiled, x)
        second = _all_stages(compiled, {k: v * 0.5 for k, v in x.items()})
    for ours, ref in zip(first, eager, strict=True):
        assert ours.dtype == torch.float32
        torch.testing.assert_close(ours, ref, atol=tol, rtol=tol)
    assert not all(torch.equal(a, b) for a, b in zip(first, second))


def test_the_compile_setting_reaches_the_engine(embedded_settings: Settings) -> None:
    """IMOS_COMPILE switches torch.compile on for the served engine; other backends refuse it by name."""
    from service.errors import BackendUnavailable
    from service.runtime import build_runtime

    pytest.importorskip("torch._inductor", reason="torch.compile needs inductor")
    rt = build_runtime(embedded_settings.model_copy(update={"compile": True}), "all")
    assert rt.engine is not None and isinstance(rt.engine.stages, TorchStages) and rt.engine.stages.compiled
    with pytest.raises(BackendUnavailable, match="compile applies to the torch backend only"):
        build_runtime(embedded_settings.model_copy(update={"compile": True, "backend": "onnx"}), "all")
