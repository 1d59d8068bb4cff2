"""The HTTP service: Target's wire formats and our /api extensions, over one store."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import Protocol

from fastapi import FastAPI

from ..auth import AuthService
from ..batches import BatchService
from ..config import Settings
from ..limits import CallLimiter
from ..model import Failing
from ..privacy import PrivacyService
from ..store import open_store
from ..times import now_ms
from ..updates import UpdateService
from ..worker import Worker, WorkerThread
from . import api, bulk, delivery, errors, health, profiles, single


class WorkerHandle(Protocol):
    """The worker that applies this service's batches, wherever it runs."""

    def wake(self) -> None:
        """A batch was accepted."""

    def problem(self) -> str | None:
        """What is wrong with the worker, or None."""

    def failing(self) -> Failing | None:
        """What the worker keeps failing at and retrying, or None."""


def create_app(
    settings: Settings,
    clock: Callable[[], int] = now_ms,
    sleep: Callable[[float], object] | None = None,
    worker: WorkerHandle | None = None,
) -> FastAPI:
    """The service; with settings.run_worker, a worker thread in this process applies batches,
    else `worker` (serve's worker process), if any, is told when one was accepted. Tests pass a
    fake clock, and a sleep that moves it, to test time-based rules."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        store = open_store(settings.store_url, settings.migrate, settings.store_timeout_seconds)
        app.state.settings, app.state.store, app.state.clock = settings, store, clock
        app.state.batches = BatchService(store, settings, clock)
        app.state.updates = UpdateService(store, settings, clock)
        app.state.auth = AuthService(store, settings, clock)
        app.state.privacy = PrivacyService(store, settings, clock)
        app.state.call_limiter = CallLimiter(clock)
        app.state.upload_slots = asyncio.Semaphore(settings.max_concurrent_uploads)
        app.state.worker = worker
        if settings.run_worker:
            loop = Worker(store, settings, clock, sleep)
            app.state.worker = WorkerThread(loop, settings.worker_stall_seconds)
            app.state.worker.start()
        try:
            yield
        finally:
            if settings.run_worker:
                app.state.worker.stop()
            await store.close_async()

    app = FastAPI(title="profilestore", lifespan=lifespan, docs_url="/api/docs", openapi_url="/api/openapi.json")
    app.include_router(bulk.router)
    app.include_router(single.router)
    app.router.routes.extend(profiles.routes)
    app.include_router(delivery.router)
    app.include_router(health.router)
    app.include_router(api.router)

    errors.install(app)
    return app
