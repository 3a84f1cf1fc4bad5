"""The benchmark commands run and report what they promise (no timing assertions: machines are noisy)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.cli.main import main


def test_bench_state_reports_bytes_and_checkpoint_fraction(tiny_repo: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "state.json"
    assert main(["bench", "state", "--model", "tiny", "--model-repo", str(tiny_repo), "--size", "64",
                 "--frames", "12", "--objects", "2", "--checkpoint-every", "2", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["state_bytes_fp16"] < report["state_bytes_fp32"]
    assert report["checkpoint_fraction_of_frame"] > 0 and report["objects"] == 2
    ck = report["checkpoints"]  # 11 states, every 2nd: 5 checkpoints, the first one full
    assert ck["count"] == 5 and ck["full_records"] >= 1 and ck["full_records"] + ck["deltas"] == 5
    assert ck["bytes_with_deltas"] <= ck["bytes_full_only"] * 1.01
    capsys.readouterr()


def test_bench_engine_runs_each_backend_in_its_own_process(tiny_repo: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "engine.json"
    assert main(["bench", "engine", "--model", "tiny", "--model-repo", str(tiny_repo), "--backend", "torch,onnx",
                 "--size", "64", "--frames", "6", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert [r["backend"] for r in report["runs"]] == ["torch", "onnxruntime"]
    assert all(r["frames_per_s"] > 0 and r["peak_rss_mb"] > 0 for r in report["runs"])
    assert set(report["ratio_to_first"]) == {"torch", "onnxruntime"}
    for run in report["runs"]:
        split = run["stage_ms_per_frame"]
        assert set(split) == {"encode_key", "encode_value", "segment", "memory_and_rest"}
        assert split["encode_key"] > 0 and split["segment"] > 0 and split["memory_and_rest"] >= 0
        assert sum(split.values()) == pytest.approx(run["ms_per_frame"], rel=0.05, abs=0.5)
    assert report["machine"]["cores"] and "cpu_features" in report["machine"]
    assert isinstance(report["machine"]["bf16_native"], bool) and "onednn_max_cpu_isa" in report["machine"]
    capsys.readouterr()


@pytest.mark.parametrize("engine", [[], ["--backend", "onnx", "--precision", "int8"]], ids=["torch", "onnx-int8"])
def test_bench_serving_reports_ratios_for_every_transport(tiny_repo: Path, tmp_path: Path, engine: list[str],
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """The served copy runs the same backend and precision as the in-process engine (int8: a real server)."""
    out = tmp_path / "serving.json"
    assert main(["bench", "serving", "--model", "tiny", "--model-repo", str(tiny_repo), "--size", "48",
                 "--frames", "8", *engine, "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert (report["backend"], report["precision"]) == ((engine[1], engine[3]) if engine else ("torch", "fp32"))
    assert report["store"] == "in-process"
    assert set(report["ratio_to_in_process"]) == {"rest_one_shot", "rest_sessions_sse", "rest_sessions_live",
                                                  "grpc_track"}
    assert all(v > 0 for v in report["ratio_to_in_process"].values())
    # one in-process run per repeat, each transport timed after it: the paired ratios come from those
    assert len(report["in_process_runs_s"]) == 1 and set(report["paired_ratio"]) == set(report["served_runs_s"])
    for name, runs in report["served_runs_s"].items():
        assert report["paired_ratio"][name] == pytest.approx(runs[0] / report["in_process_runs_s"][0], rel=0.05)  # runs are rounded to ms
    capsys.readouterr()


def test_bench_serving_on_redis_leaves_no_keys(tiny_repo: Path, tmp_path: Path, redis_url: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """--redis serves from a real Redis, as deployed, and deletes what the served copy wrote."""
    import redis

    client = redis.Redis.from_url(redis_url)
    before = set(client.scan_iter(match="imosbench-*"))
    out = tmp_path / "serving.json"
    assert main(["bench", "serving", "--model", "tiny", "--model-repo", str(tiny_repo), "--size", "48",
                 "--frames", "6", "--redis", redis_url, "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["store"] == "redis" and all(v > 0 for v in report["ratio_to_in_process"].values())
    assert set(client.scan_iter(match="imosbench-*")) == before
    client.close()
    capsys.readouterr()


def test_bench_batching_reports_a_curve_with_and_without_batching(tiny_repo: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "batching.json"
    assert main(["bench", "batching", "--model", "tiny", "--model-repo", str(tiny_repo), "--size", "48",
                 "--frames", "5", "--sessions", "1,2", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert [p["sessions"] for p in report["curve"]] == [1, 2]
    assert all(p["unbatched_frames_per_s"] > 0 and p["batched_frames_per_s"] > 0 for p in report["curve"])
    assert max(int(k) for k in report["curve"][1]["batch_sizes"]) >= 2  # both passes, two sessions: batches
    assert set(report["ratio_by_sessions"]) == {"1", "2"}
    capsys.readouterr()


def test_bench_reader_compares_dense_and_gathered_reads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "reader.json"
    assert main(["bench", "reader", "--queries", "16", "--sizes", "20,200", "--value-dim", "8",
                 "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert [r["memory_entries"] for r in report["rows"]] == [20, 200]
    assert all(r["dense_ms"] > 0 and r["gathered_ms"] > 0 for r in report["rows"])
    assert report["engine_uses"] == "gathered"  # on CPU
    capsys.readouterr()


def test_bench_engine_runs_every_precision_with_set_threads(tiny_repo: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "engine.json"
    assert main(["bench", "engine", "--model", "tiny", "--model-repo", str(tiny_repo), "--backend", "torch",
                 "--precision", "fp32,bf16", "--threads", "1", "--size", "64", "--frames", "5",
                 "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert [(r["precision"], r["threads"], r["torch_threads"]) for r in report["runs"]] == [("fp32", 1, 1),
                                                                                          ("bf16", 1, 1)]
    assert set(report["ratio_to_first"]) == {"torch fp32", "torch bf16"}
    capsys.readouterr()
