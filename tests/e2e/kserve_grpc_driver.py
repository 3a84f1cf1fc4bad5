"""Drives iMOS Serve's Open Inference Protocol gRPC service with Triton's own client (tritonclient.grpc).

Run in its own process (``python kserve_grpc_driver.py TARGET JOB OUT``): tritonclient's generated
protobuf classes and the server's share the protocol's message names, which one process's descriptor
pool cannot hold twice. JOB is an .npz with ``frames`` [T, H, W] uint8, ``mask`` [H, W] uint8 (on frame
``k``) and ``mask0`` (on frame 0); OUT gets (.npz) ``one_shot`` (MASKS of a one-shot infer from frame k),
``sequence`` (each frame's MASKS from a sequence started on frame 0 with mask0), and ``checks`` (a JSON string of what else was seen).
"""

from __future__ import annotations

import json
import sys

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

MODEL = "imos-lite"


def _inputs(frames: np.ndarray, mask: np.ndarray | None) -> list[grpcclient.InferInput]:
    out = [grpcclient.InferInput("FRAMES", list(frames.shape), "UINT8")]
    out[0].set_data_from_numpy(frames)
    if mask is not None:
        out.append(grpcclient.InferInput("MASK", list(mask.shape), "UINT8"))
        out[1].set_data_from_numpy(mask)
    return out


def main(target: str, job_path: str, out_path: str) -> None:
    job = np.load(job_path)
    frames, mask, mask0, k = job["frames"], job["mask"], job["mask0"], int(job["k"])
    c = grpcclient.InferenceServerClient(target)
    meta = c.get_model_metadata(MODEL, as_json=True)
    checks = {"live": c.is_server_live(), "ready": c.is_server_ready(), "model_ready": c.is_model_ready(MODEL),
              "inputs": [i["name"] for i in meta["inputs"]],
              "extensions": list(c.get_server_metadata(as_json=True).get("extensions", []))}
    one = c.infer(MODEL, _inputs(frames, mask), parameters={"frame": k, "direction": "both"},
                  outputs=[grpcclient.InferRequestedOutput("MASKS")]).as_numpy("MASKS")
    seq = []
    for t in range(len(frames)):
        res = c.infer(MODEL, _inputs(frames[t][None], mask0 if t == 0 else None), sequence_id=7,
                      sequence_start=t == 0, sequence_end=t == len(frames) - 1)
        seq.append(res.as_numpy("MASKS")[0])
    try:
        c.infer(MODEL, _inputs(frames, None))
    except InferenceServerException as exc:
        checks["missing_mask"] = [str(exc.status()), exc.message()]
    try:
        c.get_model_metadata("no-such-model")
    except InferenceServerException as exc:
        checks["unknown_model"] = [str(exc.status()), exc.message()]
    np.savez(out_path, one_shot=one, sequence=np.stack(seq), checks=json.dumps(checks))


if __name__ == "__main__":
    main(*sys.argv[1:4])
