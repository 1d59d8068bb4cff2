from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from fastapi.testclient import TestClient

from profilestore.config import Settings
from profilestore.testing import schema_url
from profilestore.web import create_app

POSTGRESQL_URL = os.environ.get("PROFILESTORE_TEST_POSTGRESQL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def postgresql_server() -> str:
    """The PostgreSQL server the tests use; without one they skip, except under CI."""
    import psycopg

    try:
        psycopg.connect(POSTGRESQL_URL, connect_timeout=5).close()
    except psycopg.OperationalError as e:
        reason = f"no PostgreSQL server at {POSTGRESQL_URL} (set PROFILESTORE_TEST_POSTGRESQL): {e}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return POSTGRESQL_URL


@contextmanager
def postgresql_schemas(server: str) -> Iterator[Callable[[], str]]:
    """A factory of URLs of fresh schemas in the PostgreSQL database, dropped afterwards."""
    import psycopg

    made: list[str] = []

    def new_schema() -> str:
        made.append(f"test_{uuid.uuid4().hex[:12]}")
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {made[-1]}")
        return schema_url(server, made[-1])

    yield new_schema
    with psycopg.connect(server, autocommit=True) as conn:
        for schema in made:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


# A PostgreSQL store costs a schema and its migrations per test, twice SQLite's setup: the inner
# loop (-m "not slow") runs the tests of both kinds on SQLite only, CI on both.
@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def new_store_url(request, tmp_path):
    """A factory of URLs of fresh, empty stores of the kind under test: SQLite files in the
    test's folder, or schemas of their own in the PostgreSQL database."""
    if request.param == "sqlite":
        made = itertools.count()
        yield lambda: f"sqlite:///{tmp_path / f'data{next(made)}' / 'profilestore.db'}"
        return
    with postgresql_schemas(request.getfixturevalue("postgresql_server")) as new_schema:
        yield new_schema


@pytest.fixture
def postgresql_url(postgresql_server) -> Iterator[str]:
    """A fresh, empty schema in the PostgreSQL database, for tests of that store alone."""
    with postgresql_schemas(postgresql_server) as new_schema:
        yield new_schema()


@pytest.fixture
def store_url(new_store_url) -> str:
    """One fresh store of the kind under test."""
    return new_store_url()


@contextmanager
def service_factory(new_store_url: Callable[[], str] | None) -> Iterator[Callable[..., TestClient]]:
    """A factory: the service over a fresh store (or the one given as store=), with settings
    overridden as asked, optionally a fake clock and sleep, called from `peer` (loopback
    unless told otherwise)."""
    clients = []

    def make(clock=None, sleep=None, peer="127.0.0.1", **overrides) -> TestClient:
        settings = Settings(**{"store": overrides.pop("store", None) or new_store_url(), **overrides})
        app = create_app(settings, **({"clock": clock} if clock else {}), sleep=sleep)
        client = TestClient(app, base_url="http://profiles.test", client=(peer, 50000))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def make_service(new_store_url):
    """service_factory over fresh stores of the kind under test."""
    with service_factory(new_store_url) as make:
        yield make


@pytest.fixture
def make_service_on():
    """service_factory for a store the test names (store=...), of one kind only."""
    with service_factory(None) as make:
        yield make


@pytest.fixture
def http(make_service) -> TestClient:
    """The service with Target's default limits."""
    return make_service()
