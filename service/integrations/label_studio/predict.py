"""Label Studio's /setup and /predict on the session service.

A task with a drawn region becomes a session: its frames, the drawn frames' masks, one run both ways.
The session is keyed by (tenant, project, task, media, drawing), so asking again (Label Studio retries,
a labeller re-opens the task, a batch re-runs) finds the same run instead of starting another. Each
/predict waits for its runs up to a budget inside Label Studio's timeout, then answers with every
frame done so far; a run that has not finished is named in the prediction's model_version
("... partial 40/300"), which Label Studio stores separately, so asking again returns the rest.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.errors import ImosError, InvalidInput
from service.integrations.label_studio import config, regions
from service.integrations.label_studio.media import Connection, Media, fetch
from service.runtime import Runtime
from service.sessions.codec import decode_labels, unpack_result

log = logging.getLogger("imos.label_studio")

CONNECTION_TTL_S = 30 * 24 * 3600  # Label Studio repeats /setup before each batch; interactive calls may not


@dataclass(frozen=True)
class Job:
    """One task's run: its session, what was drawn, and what the answer needs to know of the media."""

    task_id: Any
    session: str
    prompt: regions.Prompt
    frames: int
    fps: float


class Backend:
    """The ML backend of one gateway; all state lives in the session store."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.prefix = f"{rt.settings.key_prefix}:ls"

    @property
    def model_version(self) -> str:
        return f"{self.rt.model.name}:{self.rt.model.version}"

    async def setup(self, body: Mapping[str, Any]) -> dict[str, str]:
        """Keep where Label Studio is and its token for the project; check the config is one we answer."""
        project = str(body.get("project") or "")
        schema = body.get("schema")
        if isinstance(schema, str) and schema.strip():
            config.parse(schema)
        host = str(body.get("hostname") or "")
        token = str(body.get("access_token") or "")
        if project and (host or token):
            doc = json.dumps({"host": host, "token": token}).encode()
            await self.rt.store.set(f"{self.prefix}:project:{project}", doc, CONNECTION_TTL_S)
        return {"model_version": self.model_version}

    async def connection(self, project: str) -> Connection:
        """The project's Label Studio (from /setup), else IMOS_LABEL_STUDIO_URL and its API key."""
        s = self.rt.settings
        raw = await self.rt.store.get(f"{self.prefix}:project:{project}") if project else None
        doc = json.loads(raw) if raw else {}
        return Connection(doc.get("host") or s.label_studio_url or "",
                          doc.get("token") or s.label_studio_api_key or "")

    async def predict(self, body: Mapping[str, Any], tenant: str) -> dict[str, Any]:
        """{"results": [one prediction per task, in order]}."""
        tasks = body.get("tasks")
        if not isinstance(tasks, list) or not tasks or not all(isinstance(t, Mapping) for t in tasks):
            raise InvalidInput("/predict needs a non-empty list of tasks (objects)")
        label_config = body.get("label_config")
        if not isinstance(label_config, str):
            raise InvalidInput("/predict needs the project's label_config")
        target = config.parse(label_config)
        project = str(body.get("project") or "")
        params = body.get("params") or {}
        context = params.get("context") if isinstance(params, Mapping) else None
        conn = await self.connection(project)
        jobs = [await self._start(target, conn, project, task, context, tenant) for task in tasks]
        await self._wait([j for j in jobs if j is not None], tenant)
        return {"results": [await self._answer(target, job, tenant) for job in jobs]}

    async def _start(self, target: config.Target, conn: Connection, project: str, task: Mapping[str, Any],
                     context: Any, tenant: str) -> Job | None:
        """The task's run, started now or found running; None for a task with nothing drawn on it."""
        drawn = _drawn_results(task, context)
        if not drawn:
            return None
        media = await fetch(self.rt.settings, conn, target, task.get("data") or {})
        h, w = media.frames[0].shape[:2]
        prompt = regions.prompt(target, drawn, h, w, len(media.frames))
        key = f"{self.prefix}:job:{_job_digest(tenant, project, task.get('id'), media, prompt)}"
        sid = await self._running(key, tenant)
        if sid is None:
            sid = await self._new_session(media, prompt, tenant)
            await self.rt.store.set(key, sid.encode(), self.rt.settings.session_ttl_s)
        return Job(task.get("id"), sid, prompt, len(media.frames), media.fps)

    async def _running(self, key: str, tenant: str) -> str | None:
        raw = await self.rt.store.get(key)
        if raw is None:
            return None
        try:
            await self.rt.records.meta(raw.decode(), tenant)
        except ImosError:
            return None  # expired or deleted: start again
        return raw.decode()

    async def _new_session(self, media: Media, prompt: regions.Prompt, tenant: str) -> str:
        sessions = self.rt.sessions
        await sessions.require_worker()
        names = {str(k): v for k, v in prompt.names.items() if v}
        meta = await sessions.create(tenant, media.frames, labels=names)
        try:
            for frame, mask in sorted(prompt.masks.items()):
                await sessions.annotate(meta.id, tenant, frame, mask)
            await sessions.propagate(meta.id, tenant)
        except BaseException:
            await self.rt.records.delete(meta.id)
            raise
        log.info("label studio run started", extra={"session": meta.id, "frames": len(media.frames),
                                                    "objects": len(prompt.names)})
        return meta.id

    async def _wait(self, jobs: Sequence[Job], tenant: str) -> None:
        """Wait for the runs together, at most the configured budget; an unfinished run keeps going."""
        budget = self.rt.settings.label_studio_predict_budget_s
        waits = [self.rt.sessions.wait_run(j.session, tenant) for j in jobs]
        try:
            await asyncio.wait_for(asyncio.gather(*waits), budget)
        except TimeoutError:
            log.info("label studio answer is partial", extra={"budget_s": budget, "tasks": len(jobs)})

    async def _answer(self, target: config.Target, job: Job | None, tenant: str) -> dict[str, Any]:
        if job is None:
            return {"result": [], "score": 0.0, "model_version": self.model_version}
        done = await self._done_labels(job.session, tenant)
        if target.kind == "video":
            result = regions.video_results(target, done, job.prompt.names, job.frames, job.fps)
        else:
            result = regions.image_results(target, done, job.prompt.names)
        version = self.model_version
        if len(done) < job.frames:
            version += f" partial {len(done)}/{job.frames}"
        return {"result": result, "score": len(done) / job.frames, "model_version": version}

    async def _done_labels(self, sid: str, tenant: str) -> dict[int, np.ndarray]:
        """frame index -> index mask of every frame the session's current run has published."""
        meta = await self.rt.records.meta(sid, tenant)
        run = meta.run.id if meta.run else -1
        raw = await self.rt.store.hgetall(self.rt.records.key(sid, "results"))
        out = {}
        for t, item in raw.items():
            published_by, png = unpack_result(item)
            if published_by == run:
                out[int(t)] = decode_labels(png)
        return out


def _drawn_results(task: Mapping[str, Any], context: Any) -> list[Mapping[str, Any]]:
    """The regions to start from: an interactive request's context, else the task's newest annotation
    (not cancelled) with results, else its newest draft."""
    if isinstance(context, Mapping) and isinstance(context.get("result"), list) and context["result"]:
        return list(context["result"])
    for group in ("annotations", "drafts"):
        items = [a for a in task.get(group) or [] if isinstance(a, Mapping)]
        for item in sorted(items, key=lambda a: str(a.get("updated_at") or a.get("created_at") or ""),
                           reverse=True):
            if not item.get("was_cancelled") and item.get("result"):
                return list(item["result"])
    return []


def _job_digest(tenant: str, project: str, task_id: Any, media: Media, prompt: regions.Prompt) -> str:
    h = hashlib.sha256()
    for part in (tenant, project, str(task_id), media.source, json.dumps(sorted(prompt.names.items()))):
        h.update(part.encode() + b"\0")
    for frame, mask in sorted(prompt.masks.items()):
        h.update(f"{frame}:{mask.shape}".encode())
        h.update(np.ascontiguousarray(mask).tobytes())
    return h.hexdigest()[:32]
