"""Health, for load balancers and supervisors: /api/health/live says the process answers;
/api/health says whether it can do its work, and answers 503 with the reasons when it cannot.
Neither needs the admin key."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from ..model import QueueState
from ..store.base import StoreUnavailable
from ..times import iso_ms

router = APIRouter(prefix="/api/health")
STORE_ANSWER_SECONDS = 2.0  # a store slower than this to count its queue is reported as down


@router.get("/live")
async def live() -> dict:
    return {"status": "ok"}


@router.get("")
async def health(request: Request) -> JSONResponse:
    """The store (a real query), the worker's heartbeat, and the queue: how long the oldest
    batch has waited and how many batches are retrying after failed attempts."""
    state = request.app.state
    problems: list[str] = []
    queue = await _queue_state(state.store, problems)
    worker = state.worker.problem() if state.worker else None
    if worker:
        problems.append(worker)
    failing = state.worker.failing() if state.worker else None
    if failing:
        what = f"batch {failing.batch_id}" if failing.batch_id else "its work"
        since = iso_ms(failing.failing_since_ms)
        problems.append(f"the worker keeps failing at {what} since {since}: {failing.last_error}")
    parts = {"worker": "elsewhere" if state.worker is None else (worker or "running")}
    if queue:
        parts["queue"] = _queue_json(queue, state.clock(), state.settings.health_max_wait_minutes, problems)
    body = {"status": "failing" if problems else "ok", "problems": problems, **parts}
    return JSONResponse(body, 503 if problems else 200)


async def _queue_state(store, problems: list[str]) -> QueueState | None:
    try:
        return await asyncio.wait_for(run_in_threadpool(store.queue_state), STORE_ANSWER_SECONDS)
    except StoreUnavailable as e:
        problems.append(f"the store is unavailable: {e.cause}")
    except TimeoutError:
        problems.append(f"the store did not answer within {STORE_ANSWER_SECONDS:g} s")
    except Exception as e:  # health says what is wrong, whatever it is
        problems.append(f"the store failed: {type(e).__name__}: {e}")
    return None


def _queue_json(queue: QueueState, now: int, max_wait_minutes: float, problems: list[str]) -> dict:
    waited = (now - queue.oldest_accepted_ms) / 1000 if queue.oldest_accepted_ms is not None else 0
    if queue.retrying:
        problems.append(f"{queue.retrying} batch(es) retrying after failed attempts (see lastError in /api/batches)")
    if waited > max_wait_minutes * 60:
        problems.append(f"a batch has waited {waited / 60:.0f} min, over the {max_wait_minutes:g} min allowed")
    return {"waiting": queue.waiting, "oldestWaitingSeconds": round(waited, 1), "retrying": queue.retrying}
