#!/usr/bin/env python3
"""Smoke test of a running deployment: one-shot propagation of a synthetic sequence through the REST API.

    docker compose exec gateway python /opt/imos/smoke.py                  # inside the gateway container
    kubectl exec deploy/imos-serve-gateway -- python /opt/imos/smoke.py
    python deploy/docker/smoke.py --url http://gpu-host:8000 --frames 48   # from anywhere with numpy + httpx

Waits for /readyz, sends FRAMES synthetic frames (moving ellipses, 854x480 by default) with the mask of
the middle frame to POST /v1/segment (both directions), checks that every frame comes back with the
annotated frame unchanged, and prints one JSON line (frames, seconds, frames per second). IMOS_API_KEY is
sent as a bearer token when set. Exit 0 on success. The bundled model is an untrained placeholder: this
checks the plumbing (gateway, Redis, workers, engines), not mask quality.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time

import httpx
import numpy as np


def sequence(frames: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 [T, H, W, 3] frames and the index mask [H, W] of the middle one: an ellipse drifting over noise."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.integers(0, 60, size=(height, width, 3), dtype=np.uint8)
    video = np.repeat(base[None], frames, axis=0)
    masks = np.zeros((frames, height, width), np.uint8)
    for t in range(frames):
        cy, cx = height * (0.5 + 0.1 * np.sin(0.1 * t)), width * (0.5 + 0.1 * np.cos(0.07 * t))
        inside = ((yy - cy) / (0.15 * height)) ** 2 + ((xx - cx) / (0.1 * width)) ** 2 <= 1
        video[t][inside] = 200
        masks[t][inside] = 1
    return video, masks[frames // 2]


def npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def wait_ready(client: httpx.Client, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            r = client.get("/readyz")
            if r.status_code == 200:
                return
            last = f"HTTP {r.status_code} {r.text[:200]}"
        except httpx.TransportError as exc:
            last = str(exc)
        time.sleep(1)
    raise SystemExit(f"smoke: {client.base_url} not ready after {timeout_s:.0f} s: {last}")


def main() -> int:
    port = os.environ.get("IMOS_HTTP_PORT", "8000")
    scheme = "https" if os.environ.get("IMOS_TLS_CERT_FILE") else "http"
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default=f"{scheme}://127.0.0.1:{port}")
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--width", type=int, default=854)
    ap.add_argument("--timeout", type=float, default=600, help="seconds for readiness and for the request")
    ap.add_argument("--insecure", action="store_true", help="do not verify the server's TLS certificate")
    args = ap.parse_args()
    headers = {"Authorization": f"Bearer {os.environ['IMOS_API_KEY']}"} if os.environ.get("IMOS_API_KEY") else {}
    video, mask = sequence(args.frames, args.height, args.width)
    verify = not (args.insecure or args.url.startswith("https://127.0.0.1"))
    with httpx.Client(base_url=args.url, headers=headers, timeout=args.timeout, verify=verify) as client:
        wait_ready(client, args.timeout)
        started = time.perf_counter()
        r = client.post("/v1/segment", files={"sequence": ("frames.npy", npy(video)), "mask": ("mask.npy", npy(mask))},
                        data={"frame": str(args.frames // 2), "direction": "both", "output": "npy"})
        seconds = time.perf_counter() - started
        if r.status_code != 200:
            raise SystemExit(f"smoke: POST /v1/segment answered {r.status_code}: {r.text[:500]}")
        masks = np.load(io.BytesIO(r.content))
    if masks.shape != (args.frames, args.height, args.width):
        raise SystemExit(f"smoke: got masks of shape {masks.shape}, expected {(args.frames, args.height, args.width)}")
    if not np.array_equal(masks[args.frames // 2], mask):
        raise SystemExit("smoke: the annotated frame did not come back as annotated")
    print(json.dumps({"ok": True, "url": args.url, "frames": args.frames, "size": [args.height, args.width],
                      "seconds": round(seconds, 2), "frames_per_s": round(args.frames / seconds, 2),
                      "request_id": r.headers.get("x-request-id")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
