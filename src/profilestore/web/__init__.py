"""The HTTP service: Target's wire formats and our /api extensions, over one store."""

from __future__ import annotations

import threading
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from ..batches import BatchService
from ..config import Settings
from ..errors import Rejected
from ..store import open_store
from ..updates import UpdateService
from ..worker import Worker
from . import api, bulk, delivery, profiles, single, xml


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        store = open_store(settings.store_url)
        service = BatchService(store, settings)
        app.state.settings, app.state.store, app.state.batches = settings, store, service
        app.state.updates = UpdateService(store, settings)
        worker = Worker(service, settings.worker_poll_seconds)
        thread = threading.Thread(target=worker.run, name="worker", daemon=True)
        if settings.run_worker:
            thread.start()
        app.state.worker_wake = worker.wake
        try:
            yield
        finally:
            worker.stop()
            if thread.is_alive():
                thread.join()
            store.close()

    app = FastAPI(title="profilestore", lifespan=lifespan, docs_url="/api/docs", openapi_url="/api/openapi.json")
    app.include_router(bulk.router)
    app.include_router(single.router)
    app.include_router(profiles.router)
    app.include_router(delivery.router)
    app.include_router(api.router)

    @app.exception_handler(Rejected)
    async def rejected(request: Request, error: Rejected):
        if request.url.path.startswith("/m2/"):
            return xml.refused(error.status, error.message)
        return JSONResponse({"status": error.status, "message": error.message}, error.status)

    return app
