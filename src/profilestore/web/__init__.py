"""The HTTP service: Target's wire formats and our /api extensions, over one store."""

from __future__ import annotations

import threading
from contextlib import asynccontextmanager
from typing import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from ..auth import AuthService
from ..batches import BatchService
from ..config import Settings
from ..errors import Rejected
from ..ids import now_ms
from ..limits import CallLimiter
from ..privacy import PrivacyService
from ..store import open_store
from ..updates import UpdateService
from ..worker import Worker
from . import api, bulk, delivery, profiles, single, xml


def create_app(
    settings: Settings,
    clock: Callable[[], int] = now_ms,
    sleep: Callable[[float], object] | None = None,
    wake: Callable[[], object] | None = None,
) -> FastAPI:
    """The service; with settings.run_worker, a worker thread in this process applies batches,
    else `wake` tells the worker elsewhere that one was accepted. Tests pass a fake clock, and
    a sleep that moves it, to test time-based rules."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        store = open_store(settings.store_url, settings.migrate)
        service = BatchService(store, settings, clock)
        app.state.settings, app.state.store, app.state.batches, app.state.clock = settings, store, service, clock
        app.state.updates = UpdateService(store, settings, clock)
        app.state.auth = AuthService(store, settings, clock)
        app.state.privacy = PrivacyService(store, settings, clock)
        app.state.call_limiter = CallLimiter(clock)
        worker = Worker(service, settings.worker_poll_seconds, sleep) if settings.run_worker else None
        thread = threading.Thread(target=worker.run, name="worker", daemon=True) if worker else None
        if thread:
            thread.start()
        app.state.worker_wake = worker.wake if worker else (wake or (lambda: None))
        try:
            yield
        finally:
            if worker:
                worker.stop()
                thread.join()
            store.close()

    app = FastAPI(title="profilestore", lifespan=lifespan, docs_url="/api/docs", openapi_url="/api/openapi.json")
    app.include_router(bulk.router)
    app.include_router(single.router)
    app.router.routes.extend(profiles.routes)
    app.include_router(delivery.router)
    app.include_router(api.public)
    app.include_router(api.router)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError):
        problems = "; ".join(f"{'.'.join(map(str, e['loc'][1:]))}: {e['msg']}" for e in error.errors())
        return await rejected(request, Rejected(400, f"Invalid request: {problems}"))

    @app.exception_handler(Rejected)
    async def rejected(request: Request, error: Rejected):
        if request.url.path.startswith("/m2/"):
            return xml.refused(error.status, error.message, error.headers)
        return JSONResponse({"status": error.status, "message": error.message}, error.status, error.headers)

    return app
