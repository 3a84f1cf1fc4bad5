"""ONNX export + onnxruntime backend against the torch backend on a small random network."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("onnx", reason="the ONNX export needs the onnx package")
pytest.importorskip("onnxruntime", reason="the onnxruntime backend needs onnxruntime")

import onnx  # noqa: E402

from service.engine.backends.onnx_backend import OnnxStages  # noqa: E402
from service.engine.backends.onnx_export import STAGE_IO, export_is_current, export_onnx, weights_sha256  # noqa: E402
from service.engine.backends.torch_backend import TorchStages  # noqa: E402
from service.engine.nn.network import ImosNet  # noqa: E402
from service.engine.spec import BackboneSpec, ModelSpec  # noqa: E402
from service.errors import ModelError  # noqa: E402

SMALL = ModelSpec(key_backbone=BackboneSpec(block="basic", layers=(1, 1, 1), width=16),
                  value_backbone=BackboneSpec(block="basic", layers=(1, 1, 1), width=16),
                  key_dim=16, value_dim=32, hidden_dim=8, decoder_dims=(32, 16, 16), hidden_mid_dim=16)
TOL = {"atol": 1e-4, "rtol": 1e-4}


def small_net(seed: int = 0) -> ImosNet:
    """A random SMALL net whose BatchNorms are not identities (so folding them is exercised)."""
    torch.manual_seed(seed)
    net = ImosNet(SMALL)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    return net.eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[ImosNet, Path, dict[str, Path]]:
    net = small_net()
    out = tmp_path_factory.mktemp("onnx")
    return net, out, export_onnx(net, out)


@pytest.fixture(scope="module")
def backends(exported: tuple[ImosNet, Path, dict[str, Path]]) -> tuple[TorchStages, OnnxStages]:
    net, out, _ = exported
    return TorchStages(copy.deepcopy(net)), OnnxStages(out, SMALL.hidden_dim, threads=2)


def test_export_writes_checked_graphs_with_protocol_names(exported: tuple[ImosNet, Path, dict]) -> None:
    _, out, paths = exported
    assert sorted(paths) == ["key", "segment", "value"]
    for stage, path in paths.items():
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
        inputs, outputs = STAGE_IO[stage]
        assert tuple(i.name for i in model.graph.input) == inputs
        assert tuple(o.name for o in model.graph.output) == outputs
        dims = [d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim]
        assert dims[0] == "batch"  # every graph's first input has a dynamic batch axis
    record = json.loads((out / "export.json").read_text())
    assert record["opset"] == 17 and record["torch"] == torch.__version__
    assert record["weights_sha256"] == weights_sha256(exported[0])


def test_export_leaves_the_network_unchanged(tmp_path: Path) -> None:
    net = small_net(seed=1).train()
    before = weights_sha256(net)
    export_onnx(net, tmp_path)
    assert net.training and weights_sha256(net) == before


@pytest.mark.parametrize("hw", [(64, 96), (96, 128)])
@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("b", [1, 2])
def test_stages_match_torch(backends: tuple[TorchStages, OnnxStages], b: int, k: int,
                            hw: tuple[int, int]) -> None:
    ref, ort = backends
    h, w = hw
    gen = torch.Generator().manual_seed(b * 100 + k * 10 + h)
    image = torch.randn(b, 3, h, w, generator=gen)
    masks = torch.rand(b, k, h, w, generator=gen)
    hidden = torch.randn(b, k, SMALL.hidden_dim, h // 16, w // 16, generator=gen)
    readout = torch.randn(b, k, SMALL.value_dim, h // 16, w // 16, generator=gen)

    want_feats, got_feats = ref.encode_key(image), ort.encode_key(image)
    for name in ("key", "shrinkage", "selection", "f16", "f8", "f4"):
        torch.testing.assert_close(getattr(got_feats, name), getattr(want_feats, name), **TOL)
    # Both value/segment runs take the torch features, so each stage is compared on its own.
    for got, want in zip(ort.encode_value(image, want_feats.f16, hidden, masks),
                         ref.encode_value(image, want_feats.f16, hidden, masks)):
        assert got.dtype == torch.float32 and got.shape == want.shape
        torch.testing.assert_close(got, want, **TOL)
    logits, new_hidden = ort.segment(want_feats, readout, hidden)
    want_logits, want_hidden = ref.segment(want_feats, readout, hidden)
    assert logits.shape == (b, k, h, w)
    torch.testing.assert_close(logits, want_logits, **TOL)
    torch.testing.assert_close(new_hidden, want_hidden, **TOL)


def test_export_is_current_tracks_weights(exported: tuple[ImosNet, Path, dict], tmp_path: Path) -> None:
    net, out, _ = exported
    assert export_is_current(net, out)
    changed = copy.deepcopy(net)
    with torch.no_grad():
        changed.decoder.pred.weight[0, 0, 0, 0] += 1e-3
    assert not export_is_current(changed, out)
    assert not export_is_current(net, tmp_path)  # nothing exported there


def test_onnx_stages_reject_missing_graphs_and_wrong_hidden_dim(exported: tuple[ImosNet, Path, dict],
                                                               tmp_path: Path) -> None:
    _, out, _ = exported
    with pytest.raises(ModelError, match="missing ONNX graph"):
        OnnxStages(tmp_path, SMALL.hidden_dim)
    with pytest.raises(ModelError, match="hidden_dim"):
        OnnxStages(out, SMALL.hidden_dim + 1)


def test_onnx_backend_refuses_lower_precision(tiny_repo: Path) -> None:
    """ORT's CPU provider has no bf16 convolutions: asking for them is an error, not silent fp32."""
    from service.engine.loader import load_engine
    from service.errors import BackendUnavailable

    with pytest.raises(BackendUnavailable, match="fp32 or int8"):
        load_engine(tiny_repo, "tiny", "onnx", precision="bf16")


def test_session_threads_do_not_spin_by_default() -> None:
    """Three sessions with their own pools plus torch's threads share the cores: idle ORT workers
    must sleep rather than spin (a 2.3x difference at 288 px on the 2-core CI machine)."""
    import onnxruntime as ort

    from service.engine.backends.onnx_backend import _session_options

    quiet = _session_options(ort, 2)
    assert quiet.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert quiet.intra_op_num_threads == 2 and quiet.inter_op_num_threads == 1
    spinning = _session_options(ort, 2, spinning=True)
    with pytest.raises(Exception):  # noqa: B017 - onnxruntime raises its own, unexported error for an unset entry
        spinning.get_session_config_entry("session.intra_op.allow_spinning")
