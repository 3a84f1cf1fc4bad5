"""int8 graphs for onnxruntime: calibration on generated clips, QDQ graphs, the cache record, the loader."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime.quantization", reason="int8 needs onnxruntime's quantization tools")

import onnx  # noqa: E402

from service.engine.backends.onnx_backend import OnnxStages  # noqa: E402
from service.engine.backends.onnx_export import STAGE_IO, export_onnx  # noqa: E402
from service.engine.backends.onnx_quantize import (  # noqa: E402
    QUANT_RECORD,
    CalibrationPlan,
    calibration_samples,
    cpu_has_vnni,
    ensure_int8,
    int8_is_current,
)
from service.engine.backends.torch_backend import TorchStages  # noqa: E402
from service.engine.nn.network import ImosNet  # noqa: E402
from service.engine.repo import ModelRepo  # noqa: E402
from service.engine.spec import MemoryConfig  # noqa: E402
from service.errors import BackendUnavailable  # noqa: E402
from tests.unit.test_onnx_backend import SMALL, small_net  # noqa: E402

PLAN = CalibrationPlan(clips=2, frames=4, crop=64)
MEMORY = MemoryConfig(size=64, mem_every=2, min_mid_term_frames=2, max_mid_term_frames=3, num_prototypes=4)


@pytest.fixture(scope="module")
def quantised(tmp_path_factory: pytest.TempPathFactory) -> tuple[ImosNet, Path, Path]:
    net = small_net()
    fp32 = tmp_path_factory.mktemp("fp32")
    export_onnx(net, fp32)
    int8 = tmp_path_factory.mktemp("int8")
    return net, fp32, ensure_int8(net, MEMORY, fp32, int8, PLAN)


def test_calibration_records_every_stage_with_its_input_names() -> None:
    samples = calibration_samples(small_net(), MEMORY, PLAN)
    for stage, (names, _) in STAGE_IO.items():
        assert samples[stage], stage
        for feed in samples[stage]:
            assert tuple(feed) == names and all(a.dtype == np.float32 for a in feed.values())
    # Every frame is keyed and decoded; values are encoded on the annotated frame and every mem_every-th.
    assert len(samples["key"]) == PLAN.clips * PLAN.frames
    assert samples["key"][0]["image"].shape == (1, 3, 64, 64)
    assert 0 < len(samples["value"]) < len(samples["key"])


def test_int8_graphs_hold_quantised_convolutions(quantised: tuple[ImosNet, Path, Path]) -> None:
    _, _, int8 = quantised
    for stage in STAGE_IO:
        graph = onnx.load(str(int8 / f"{stage}.onnx")).graph
        ops = {n.op_type for n in graph.node}
        assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops, stage
        int8_weights = [t for t in graph.initializer if t.data_type == onnx.TensorProto.INT8]
        assert int8_weights, f"{stage}: no int8 weights"
    record = json.loads((int8 / QUANT_RECORD).read_text())
    assert record["reduce_range"] is (not cpu_has_vnni())
    assert record["plan"]["clips"] == PLAN.clips


def test_int8_stages_stay_close_to_fp32(quantised: tuple[ImosNet, Path, Path]) -> None:
    """Quantisation error, not a different function: each output within a few % of its spread."""
    net, _, int8 = quantised
    ref, q = TorchStages(copy.deepcopy(net)), OnnxStages(int8, SMALL.hidden_dim, threads=2)
    gen = torch.Generator().manual_seed(3)
    # Batch 2 and 2 objects: the batcher sends several sessions' frames, so the axes stay dynamic.
    image = torch.randn(2, 3, 64, 96, generator=gen).clamp(-2, 2)
    masks = (torch.rand(2, 2, 64, 96, generator=gen) > 0.7).float()
    hidden = torch.zeros(2, 2, SMALL.hidden_dim, 4, 6)
    want, got = ref.encode_key(image), q.encode_key(image)
    pairs = [(getattr(got, n), getattr(want, n)) for n in ("key", "f16", "f8", "f4")]
    pairs += list(zip(q.encode_value(image, want.f16, hidden, masks), ref.encode_value(image, want.f16, hidden, masks)))
    readout = ref.encode_value(image, want.f16, hidden, masks)[0]
    pairs += list(zip(q.segment(want, readout, hidden), ref.segment(want, readout, hidden)))
    for a, b in pairs:
        assert a.shape == b.shape and a.dtype == torch.float32
        assert float((a - b).pow(2).mean().sqrt()) <= 0.08 * float(b.std()) + 1e-6


def test_int8_cache_is_reused_and_redone_when_stale(quantised: tuple[ImosNet, Path, Path]) -> None:
    net, fp32, int8 = quantised
    reduce_range = not cpu_has_vnni()
    assert int8_is_current(fp32, int8, PLAN, reduce_range)
    assert not int8_is_current(fp32, int8, CalibrationPlan(clips=3, frames=4, crop=64), reduce_range)
    assert not int8_is_current(fp32, int8, PLAN, not reduce_range)  # quantised for the other kind of CPU
    stamp = (int8 / "key.onnx").stat().st_mtime_ns
    ensure_int8(net, MEMORY, fp32, int8, PLAN)
    assert (int8 / "key.onnx").stat().st_mtime_ns == stamp
    (int8 / QUANT_RECORD).write_text("{not json")
    assert not int8_is_current(fp32, int8, PLAN, reduce_range)
    ensure_int8(net, MEMORY, fp32, int8, PLAN)
    assert int8_is_current(fp32, int8, PLAN, reduce_range)


def test_cpu_has_vnni_reads_this_cpu() -> None:
    """Reads the real /proc/cpuinfo: each host checks the branch it has."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        pytest.skip("no /proc/cpuinfo here")
    assert cpu_has_vnni() is bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})


def test_loader_runs_int8_on_onnx_only(tiny_repo: Path) -> None:
    from service.engine.loader import load_engine

    with pytest.raises(BackendUnavailable, match="int8 runs on the onnx backend only"):
        load_engine(tiny_repo, "tiny", "torch", precision="int8")
    engine = load_engine(tiny_repo, "tiny", "onnx", precision="int8")
    assert engine.stages.name == "onnxruntime"
    assert int8_is_current(engine.entry.build_dir / "onnx", engine.entry.build_dir / "onnx-int8",
                           CalibrationPlan(), not cpu_has_vnni())
    frames = [np.full((64, 64, 3), 40 * i, np.uint8) for i in range(3)]
    mask = np.zeros((64, 64), np.uint8)
    mask[20:40, 20:40] = 1
    results = list(engine.propagator().run(frames, mask, 0, "forward"))
    assert [r.index for r in results] == [0, 1, 2]


def test_single_object_models_calibrate_on_one_object() -> None:
    """An imported single-object checkpoint allows one object: the clips must not hold three."""
    import dataclasses

    torch.manual_seed(0)
    net = ImosNet(dataclasses.replace(SMALL, max_objects=1)).eval()
    samples = calibration_samples(net, MEMORY, PLAN)
    assert {feed["masks"].shape[1] for feed in samples["value"]} == {1}


def test_unwritable_build_folder_is_a_clear_model_error(quantised: tuple[ImosNet, Path, Path],
                                                        tmp_path: Path) -> None:
    from service.errors import ModelError

    net, fp32, _ = quantised
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ModelError, match="cannot write the int8 graphs"):
        ensure_int8(net, MEMORY, fp32, blocker / "onnx-int8", PLAN)


def test_export_command_builds_int8_graphs(tiny_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from service.cli.main import main

    assert main(["export", "tiny", "--model-repo", str(tiny_repo), "--precision", "int8"]) == 0
    assert "int8 ONNX graphs in" in capsys.readouterr().out
    assert (ModelRepo(tiny_repo).entry("tiny").build_dir / "onnx-int8" / QUANT_RECORD).is_file()
    assert main(["export", "tiny", "--model-repo", str(tiny_repo), "--backend", "tensorrt",
                 "--precision", "int8"]) != 0
    assert "int8 graphs are for the onnx backend" in capsys.readouterr().err
