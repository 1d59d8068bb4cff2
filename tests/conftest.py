from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from profilestore.config import Settings
from profilestore.web import create_app


@pytest.fixture
def make_service(tmp_path):
    """A factory: the service over a fresh SQLite store, with settings overridden as asked,
    optionally a fake clock and sleep, called from `peer` (loopback unless told otherwise)."""
    clients = []

    def make(clock=None, sleep=None, peer="127.0.0.1", **overrides) -> TestClient:
        settings = Settings(**{"data_dir": tmp_path / f"data{len(clients)}", **overrides})
        app = create_app(settings, **({"clock": clock} if clock else {}), sleep=sleep)
        client = TestClient(app, base_url="http://profiles.test", client=(peer, 50000))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def http(make_service) -> TestClient:
    """The service with Target's default limits."""
    return make_service()
