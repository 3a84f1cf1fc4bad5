"""Drives a running Label Studio with its own SDK (label-studio-sdk), as a labeller and an admin would.

Run with Label Studio's own interpreter (its venv holds the SDK): ``python label_studio_driver.py JOB``
where JOB is a JSON file {"url", "token", "backend", "kind": "video" | "images", "files": [...],
"config", "drawn": [Label Studio result items], "drawn_masks": [[page, label, mask]], "out"}; the
drawn masks become brushlabels regions encoded by the SDK's own ``mask2rle``. It creates the project, uploads the media,
makes the task, connects iMOS Serve as the project's ML backend, asks for an interactive prediction
(the drawn regions as context), saves the drawing as an annotation, runs Label Studio's batch
"retrieve predictions" action, and writes what Label Studio answered and stored to OUT (JSON):
{"interactive": [...], "stored": [...], "setup_version": "...", "decoded": {region id: [[page, mask
as nested lists]]}} with brush masks decoded by the SDK's own converter.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from label_studio_sdk import LabelStudio
from label_studio_sdk.converter.brush import decode_rle, mask2rle

UPLOAD_CONFIG = {"video": '<View><Video name="video" value="$video"/></View>',
                 "images": '<View><Image name="image" value="$image"/></View>'}


def upload(ls: LabelStudio, url: str, token: str, kind: str, files: list[str]) -> list[str]:
    """Upload files into a scratch project (the SDK has no file import): their /data/upload URLs."""
    scratch = ls.projects.create(title=f"imos-upload-{kind}", label_config=UPLOAD_CONFIG[kind])
    parts = [(f"file{i}", (Path(f).name, Path(f).read_bytes())) for i, f in enumerate(files)]
    resp = httpx.post(f"{url}/api/projects/{scratch.id}/import", files=parts,
                      headers={"Authorization": f"Token {token}"}, timeout=120)
    resp.raise_for_status()
    key = "video" if kind == "video" else "image"
    tasks = sorted(ls.tasks.list(project=scratch.id), key=lambda t: t.id)
    return [t.data[key] for t in tasks]


def drawn_regions(job: dict[str, Any]) -> list[dict[str, Any]]:
    """The labeller's regions: given result items, plus brush masks encoded as Label Studio does."""
    out = list(job.get("drawn") or [])
    for i, (page, label, mask) in enumerate(job.get("drawn_masks") or []):
        m = np.asarray(mask, np.uint8)
        out.append({"id": f"drawn{i}", "from_name": "tag", "to_name": "image", "type": "brushlabels",
                    "item_index": page, "original_width": m.shape[1], "original_height": m.shape[0],
                    "image_rotation": 0, "value": {"format": "rle", "rle": mask2rle(m * 255),
                                                   "brushlabels": [label]}})
    return out


def main(job_path: str) -> None:
    job = json.loads(Path(job_path).read_text())
    job["drawn"] = drawn_regions(job)
    url, token, kind = job["url"], job["token"], job["kind"]
    ls = LabelStudio(base_url=url, api_key=token)
    media = upload(ls, url, token, kind, job["files"])
    project = ls.projects.create(title=f"imos-{kind}", label_config=job["config"])
    data = {"video": media[0]} if kind == "video" else {"images": media}
    ls.projects.import_tasks(project.id, request=[{"data": data}])
    task = next(iter(ls.tasks.list(project=project.id)))
    backend = ls.ml.create(project=project.id, url=job["backend"], title="iMOS Serve", is_interactive=True,
                           timeout=120)
    setup_version = ls.ml.get(backend.id).model_version
    # The SDK declares this endpoint's body as empty; the raw response carries Label Studio's answer.
    raw = ls.ml.with_raw_response.predict_interactive(backend.id, task=task.id, context={"result": job["drawn"]})
    interactive = raw._response.json()
    ls.annotations.create(id=task.id, result=job["drawn"])
    ls.actions.create(id="retrieve_tasks_predictions", project=project.id, selected_items={"all": True})
    stored = wait_predictions(ls, task.id)
    out = {"interactive": interactive, "stored": stored, "setup_version": setup_version,
           "task": {"id": task.id, "data": data}, "decoded": decode_all(interactive, stored)}
    Path(job["out"]).write_text(json.dumps(out, default=str))


def wait_predictions(ls: LabelStudio, task_id: int, timeout_s: float = 120) -> list[dict[str, Any]]:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        got = [p.dict() for p in ls.predictions.list(task=task_id)]
        if got:
            return got
        time.sleep(1)
    return []


def decode_all(interactive: dict[str, Any], stored: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Brush results decoded by the SDK's converter: {"interactive" | "stored": [[page, label, mask]]}."""
    out: dict[str, list[Any]] = {"interactive": [], "stored": []}
    sources = [("interactive", (interactive.get("data") or {}).get("result", []))]
    sources += [("stored", p.get("result", [])) for p in stored]
    for name, results in sources:
        for r in results:
            if r.get("type") != "brushlabels":
                continue
            h, w = r["original_height"], r["original_width"]
            mask = decode_rle(r["value"]["rle"]).reshape(h, w, 4)[:, :, 3] > 0
            label = (r["value"].get("brushlabels") or [""])[0]
            out[name].append([r.get("item_index", 0), label, np.asarray(mask, np.uint8).tolist()])
    return out


if __name__ == "__main__":
    main(sys.argv[1])
