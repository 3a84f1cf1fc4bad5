"""How a run's attempts are counted and how a run ends in failure (the worker's job boundary).

An attempt begins each time a worker takes a session's lease to advance its current run, and is
counted in the store, so an attempt whose worker crashed (killed, out of memory) counts too. An
attempt that ends cleanly clears the count; one that began further on than the one before (more
frames published) starts the count again, so a run interrupted by unrelated outages is not failed.
Once ``max_attempts`` attempts in a row made no progress, or at once on a deterministic domain
error, the run ends: a terminal ``error`` event with a stable code and a safe message, the session
out of the active set, its status ``failed``. A new run (propagate again) starts afresh.
"""

from __future__ import annotations

import dataclasses
import logging
import time

from service.errors import BackendUnavailable, ImosError
from service.sessions.model import Attempts, Failure
from service.sessions.records import SessionRecords

log = logging.getLogger("imos.worker")

WORKER_LOST = "worker_lost"


def retryable(exc: BaseException) -> bool:
    """Errors another attempt may not meet: anything outside the domain tree (out of memory, a runtime
    fault) and a backend that is not there right now. Domain errors are the request's own and repeat."""
    return not isinstance(exc, ImosError) or isinstance(exc, BackendUnavailable)


def safe_message(code: str, attempts: int, exc: BaseException | None) -> str:
    """What the client is told: a domain error's own (safe) message, else only the error's kind
    (``exc`` None: the attempts before ended with ``code``, their worker lost or an error of that code)."""
    if isinstance(exc, ImosError) and exc.expose:
        return exc.public_message()
    if isinstance(exc, ImosError):
        return f"the run failed with an internal error ({code}); the server log has the details"
    if exc is None and code == WORKER_LOST:
        return (f"the run stopped its worker {attempts} times without progress (a crash or the worker "
                f"ran out of memory); it was given up")
    if exc is None:
        return f"the run failed {attempts} times ({code}); it was given up"
    return f"the run failed {attempts} times with an internal error ({type(exc).__name__}); it was given up"


async def begin(records: SessionRecords, sid: str, run: int) -> Attempts:
    """Count one more attempt at ``run`` (or the first, after progress or a new run). The store holds
    it as ``worker_lost`` until the attempt says otherwise; the value returned carries how the
    attempt before it ended."""
    progress = await records.progress(sid)
    published = sum(p.published for p in progress.values() if p.run == run)
    before = await records.attempts(sid)
    if before is None or before.run != run or published > before.published:
        now = Attempts(run, 1, published)
    else:
        now = dataclasses.replace(before, count=before.count + 1, published=published)
    await records.put_attempts(sid, dataclasses.replace(now, last_code=WORKER_LOST))
    return now


async def ended_cleanly(records: SessionRecords, sid: str) -> None:
    await records.put_attempts(sid, None)


async def failed_attempt(records: SessionRecords, sid: str, attempt: Attempts, exc: BaseException,
                         max_attempts: int) -> bool:
    """Book a failed attempt; end the run when it may not be retried. True when the run has ended."""
    code = exc.code if isinstance(exc, ImosError) else "internal"
    if retryable(exc) and attempt.count < max_attempts:
        await records.put_attempts(sid, dataclasses.replace(attempt, last_code=code))
        log.warning("run attempt failed; it will be retried",
                    extra={"session": sid, "run": attempt.run, "attempt": attempt.count, "code": code,
                           "error": type(exc).__name__})
        return False
    await end_run(records, sid, attempt.run, code, safe_message(code, attempt.count, exc), attempt.count)
    return True


async def end_run(records: SessionRecords, sid: str, run: int, code: str, message: str, attempts: int) -> None:
    log.error("run failed", extra={"session": sid, "run": run, "code": code, "attempts": attempts})
    await records.fail_run(sid, Failure(run, code, message, attempts, time.time()))


async def give_up_if_exhausted(records: SessionRecords, sid: str, attempt: Attempts, max_attempts: int) -> bool:
    """Before advancing: the attempts before this one all died without progress. True when ended."""
    if attempt.count <= max_attempts:
        return False
    count = attempt.count - 1
    await end_run(records, sid, attempt.run, attempt.last_code, safe_message(attempt.last_code, count, None), count)
    return True
