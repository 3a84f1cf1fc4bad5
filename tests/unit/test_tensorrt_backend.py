"""TensorRT backend: guards and profile rules everywhere; engines only where TensorRT and CUDA exist."""

from __future__ import annotations

import contextlib
import copy
import sys
import types
from pathlib import Path

import pytest
import torch

from service.engine.backends.onnx_export import export_onnx
from service.engine.backends.tensorrt_backend import ProfileDims, ShapeProfile, TensorRTStages, profile_shapes
from service.engine.backends.torch_backend import TorchStages
from service.engine.nn.network import ImosNet
from service.engine.spec import BackboneSpec, ModelSpec
from service.errors import BackendUnavailable, ModelError

SMALL_PROFILE = ShapeProfile(min=ProfileDims(1, 1, 64, 64), opt=ProfileDims(1, 2, 64, 96),
                             max=ProfileDims(2, 3, 96, 128))


def test_missing_tensorrt_raises_backend_unavailable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # makes `import tensorrt` fail even where installed
    with pytest.raises(BackendUnavailable, match="tensorrt"):
        TensorRTStages(tmp_path, hidden_dim=8)


def test_no_cuda_raises_backend_unavailable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = types.ModuleType("tensorrt")
    fake.__version__ = "10.0.0"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(BackendUnavailable, match="CUDA"):
        TensorRTStages(tmp_path, hidden_dim=8)


def test_old_tensorrt_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = types.ModuleType("tensorrt")
    fake.__version__ = "8.6.1"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    with pytest.raises(BackendUnavailable, match=">= 10"):
        TensorRTStages(tmp_path, hidden_dim=8)


def test_profile_shapes_follow_the_export_axes() -> None:
    # hidden [B, K, Ch, H/16, W/16] with Ch static; f8 [B, C8, H/8, W/8].
    assert profile_shapes("hidden", (-1, -1, 8, -1, -1), SMALL_PROFILE) == (
        (1, 1, 8, 4, 4), (1, 2, 8, 4, 6), (2, 3, 8, 6, 8))
    assert profile_shapes("f8", (-1, 32, -1, -1), SMALL_PROFILE)[2] == (2, 32, 12, 16)
    assert profile_shapes("masks", (-1, -1, -1, -1), SMALL_PROFILE)[1] == (1, 2, 64, 96)
    with pytest.raises(ModelError, match="dynamic axes"):
        profile_shapes("image", (-1, -1, -1, -1), SMALL_PROFILE)  # channels must be static


def test_profile_validation() -> None:
    SMALL_PROFILE.validate()
    with pytest.raises(BackendUnavailable, match="min <= opt <= max"):
        ShapeProfile(min=ProfileDims(1, 4, 64, 64), opt=ProfileDims(1, 2, 64, 64)).validate()
    with pytest.raises(BackendUnavailable, match="multiples of 16"):
        ShapeProfile(min=ProfileDims(1, 1, 60, 64)).validate()


def test_profile_widens_to_the_batchers_largest_batch() -> None:
    wide = ShapeProfile().with_max_batch(8)
    wide.validate()
    assert wide.max.batch == 8 and wide.min == ShapeProfile().min and wide.opt == ShapeProfile().opt
    assert wide.max.objects == ShapeProfile().max.objects
    assert profile_shapes("image", (-1, 3, -1, -1), wide)[2][0] == 8
    assert ShapeProfile().with_max_batch(1) == ShapeProfile()
    with pytest.raises(BackendUnavailable, match="max batch"):
        ShapeProfile().with_max_batch(0)


def test_engine_cache_keys_on_graph_hash_and_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The cache logic alone, with TensorRT and the GPU replaced by stand-ins (runs everywhere)."""
    from service.engine.backends import tensorrt_backend as tb

    fake = types.SimpleNamespace(__version__="10.9.0", Logger=lambda level: None, Runtime=lambda log: None)
    fake.Logger.WARNING = 2  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    monkeypatch.setattr(tb, "_cuda_device", lambda device: torch.device("cpu"))
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device: (9, 0))
    monkeypatch.setattr(torch.cuda, "device", lambda device: contextlib.nullcontext())
    built: list[str] = []

    def fake_build(trt: object, logger: object, onnx_path: Path, profile: ShapeProfile, fp16: bool) -> bytes:
        built.append(onnx_path.stem)
        return onnx_path.read_bytes()

    monkeypatch.setattr(tb, "build_plan", fake_build)
    monkeypatch.setattr(tb, "TrtEngine", lambda *args: types.SimpleNamespace(static_dim=lambda n, a: 8))
    onnx_dir = tmp_path / "onnx"
    onnx_dir.mkdir()
    for stage in ("key", "value", "segment"):
        (onnx_dir / f"{stage}.onnx").write_bytes(stage.encode())
    stages = TensorRTStages(onnx_dir, hidden_dim=8)
    assert stages.engine_dir == tmp_path / "tensorrt" / "sm90-trt10.9.0"
    assert built == ["key", "value", "segment"] and (stages.engine_dir / "value.plan").read_bytes() == b"value"
    TensorRTStages(onnx_dir, hidden_dim=8)
    assert len(built) == 3  # everything cached
    (onnx_dir / "value.onnx").write_bytes(b"value v2")
    TensorRTStages(onnx_dir, hidden_dim=8)
    assert built[3:] == ["value"]  # only the changed graph is rebuilt
    TensorRTStages(onnx_dir, hidden_dim=8, fp16=False)
    assert built[4:] == ["key", "value", "segment"]  # a precision change rebuilds all
    with pytest.raises(ModelError, match="hidden_dim"):
        TensorRTStages(onnx_dir, hidden_dim=16, fp16=False)


# ---- real engines: only where TensorRT and a CUDA GPU exist -----------------------------------

SMALL = ModelSpec(key_backbone=BackboneSpec(block="basic", layers=(1, 1, 1), width=16),
                  value_backbone=BackboneSpec(block="basic", layers=(1, 1, 1), width=16),
                  key_dim=16, value_dim=32, hidden_dim=8, decoder_dims=(32, 16, 16), hidden_mid_dim=16)
Setup = tuple[ImosNet, Path, TensorRTStages, TorchStages]


def _small_net() -> ImosNet:
    """A random SMALL net with non-trivial BatchNorm statistics."""
    torch.manual_seed(0)
    net = ImosNet(SMALL)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    return net.eval()


def _close(got: torch.Tensor, want: torch.Tensor) -> None:
    """fp16 tolerance, relative to the tensor's scale (random weights give O(1..10) values)."""
    assert got.shape == want.shape and got.dtype == torch.float32
    err = (got - want).abs().max().item()
    assert err <= 3e-2 * max(1.0, want.abs().max().item()), err


@pytest.fixture(scope="module")
def trt_setup(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    pytest.importorskip("tensorrt", reason="TensorRT is not installed here; engine tests need it")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU here; TensorRT engine tests need one")
    net = _small_net()
    out = tmp_path_factory.mktemp("trt") / "onnx"
    export_onnx(net, out)
    stages = TensorRTStages(out, SMALL.hidden_dim, profile=SMALL_PROFILE)
    return net, out, stages, TorchStages(copy.deepcopy(net), "cuda")


@pytest.mark.parametrize("b,k,h,w", [(1, 1, 64, 96), (2, 3, 96, 128), (1, 3, 64, 64)])
def test_tensorrt_matches_torch(trt_setup: Setup, b: int, k: int, h: int, w: int) -> None:
    _, _, trt_stages, ref = trt_setup
    gen = torch.Generator().manual_seed(b + k + h)
    image = torch.randn(b, 3, h, w, generator=gen).cuda()
    masks = torch.rand(b, k, h, w, generator=gen).cuda()
    hidden = torch.randn(b, k, SMALL.hidden_dim, h // 16, w // 16, generator=gen).cuda()
    readout = torch.randn(b, k, SMALL.value_dim, h // 16, w // 16, generator=gen).cuda()
    want_feats, got_feats = ref.encode_key(image), trt_stages.encode_key(image)
    for name in ("key", "shrinkage", "selection", "f16", "f8", "f4"):
        _close(getattr(got_feats, name), getattr(want_feats, name))
    for got, want in zip(trt_stages.encode_value(image, want_feats.f16, hidden, masks),
                         ref.encode_value(image, want_feats.f16, hidden, masks)):
        _close(got, want)
    for got, want in zip(trt_stages.segment(want_feats, readout, hidden),
                         ref.segment(want_feats, readout, hidden)):
        _close(got, want)


def test_engine_cache_is_reused_then_rebuilt_on_new_export(trt_setup: Setup) -> None:
    net, out, first, _ = trt_setup
    plan = first.engine_dir / "key.plan"
    stamp = plan.stat().st_mtime_ns
    TensorRTStages(out, SMALL.hidden_dim, profile=SMALL_PROFILE)
    assert plan.stat().st_mtime_ns == stamp  # same graphs and settings: cached plan reused
    changed = copy.deepcopy(net)
    with torch.no_grad():
        changed.key_proj.key_proj.bias.add_(0.5)
    export_onnx(changed, out)
    TensorRTStages(out, SMALL.hidden_dim, profile=SMALL_PROFILE)
    assert plan.stat().st_mtime_ns != stamp  # the key graph changed: its plan was rebuilt
