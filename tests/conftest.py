from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from profilestore.config import Settings
from profilestore.web import create_app


@pytest.fixture
def make_service(tmp_path):
    """A factory: the service over a fresh SQLite store, with settings overridden as asked."""
    clients = []

    def make(**overrides) -> TestClient:
        settings = Settings(**{"data_dir": tmp_path / f"data{len(clients)}", **overrides})
        client = TestClient(create_app(settings), base_url="http://profiles.test")
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
