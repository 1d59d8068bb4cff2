"""What only the PostgreSQL store has: versioned migrations, safe when processes start at once,
and clear errors when the database is not there or not ready."""

import os
import subprocess
import sys
import time
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from fastapi.testclient import TestClient

from profilestore.config import Settings
from profilestore.store.migrations import migrations
from profilestore.store.postgresql import MIGRATIONS_TABLE
from profilestore.testing import schema_url
from profilestore.web import create_app
from support import apply, attributes, query

ALL_MIGRATIONS = [
    (1, "initial"),
    (2, "attributes_text"),
    (3, "retries_and_retention"),
    (4, "idempotency_keys"),
    (5, "webhooks"),
    (6, "profiles_without_third_party_id"),
]


def start(*args: str, env: dict | None = None) -> subprocess.Popen:
    command = [sys.executable, "-m", "profilestore", *args]
    return subprocess.Popen(command, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


def profilestore(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    process = start(*args, env=env)
    stdout, stderr = process.communicate(timeout=120)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@pytest.mark.slow
def test_migrate_applies_each_migration_once(postgresql_url):
    first = profilestore("migrate", "--store", postgresql_url)
    assert first.returncode == 0, first.stderr
    assert "applied 0001_initial, 0002_attributes_text, 0003_retries_and_retention" in first.stdout
    again = profilestore("migrate", "--store", postgresql_url)
    assert "the schema is up to date" in again.stdout
    assert query(postgresql_url, "SELECT version, name FROM profilestore_migrations ORDER BY version") == ALL_MIGRATIONS


@pytest.mark.slow
def test_processes_starting_at_once_migrate_exactly_once(postgresql_url):
    started = [start("migrate", "--store", postgresql_url) for _ in range(6)]
    outputs = [p.communicate(timeout=120) for p in started]
    assert [p.returncode for p in started] == [0] * 6, outputs
    for version, name in ALL_MIGRATIONS:  # each by one process, not always the same one
        assert sum(f"{version:04d}_{name}" in out for out, _ in outputs) == 1, outputs
    assert query(postgresql_url, "SELECT version, name FROM profilestore_migrations ORDER BY version") == ALL_MIGRATIONS


@pytest.mark.slow
def test_without_migrate_at_start_an_outdated_schema_is_refused(postgresql_url):
    no_migrations = {"PROFILESTORE_MIGRATE": "false"}
    refused = profilestore("worker", "--store", postgresql_url, env=no_migrations)
    assert refused.returncode == 1
    assert (
        f"the database lacks migrations {[version for version, _ in ALL_MIGRATIONS]}: run `profilestore migrate`"
        in refused.stderr
    )
    assert profilestore("migrate", "--store", postgresql_url).returncode == 0
    worker = start("worker", "--store", postgresql_url, env=no_migrations)
    assert "worker on store" in worker.stdout.readline(), "a migrated schema is accepted"
    worker.terminate()
    assert worker.wait(30) == 0


def test_a_store_of_an_earlier_version_keeps_its_profiles_when_migrated(postgresql_url):
    _, _, initial = migrations("postgresql")[0]
    with psycopg.connect(postgresql_url, autocommit=True) as conn:  # the store as version 1 left it
        conn.execute(initial)
        conn.execute(MIGRATIONS_TABLE)
        conn.execute("INSERT INTO profilestore_migrations (version, name) VALUES (1, 'initial')")
        now = int(time.time() * 1000)
        conn.execute(
            """INSERT INTO profiles VALUES ('demo', 'tnt1', %(now)s, %(now)s, 'c1', NULL,
            '{"city": ["Zürich", 1, 0], "tier": ["gold", 1, 0]}', %(now)s, %(now)s / 3600000)""",
            {"now": now},
        )
    app = create_app(Settings(store=postgresql_url))  # migrates as it starts
    with TestClient(app, client=("127.0.0.1", 50000)) as http:
        assert attributes(http, "c1") == {"city": "Zürich", "tier": "gold"}
        assert apply(http, "batch=thirdPartyId,tier\nc1,platinum\n")["successfulUpdates"] == 1
        assert attributes(http, "c1") == {"city": "Zürich", "tier": "platinum"}


@pytest.mark.slow
def test_an_unreachable_server_is_a_clear_error():
    refused = profilestore("serve", "--store", "postgresql://postgres@127.0.0.1:9/test")
    assert refused.returncode == 1
    assert "store postgresql://postgres@127.0.0.1:9/test: cannot connect to PostgreSQL" in refused.stderr


def test_a_missing_schema_is_a_clear_error(postgresql_server):
    url = schema_url(postgresql_server, "no_such_schema")
    refused = profilestore("migrate", "--store", url)
    assert refused.returncode == 1
    assert "no schema of the search_path exists in the database; create it first" in refused.stderr


@pytest.mark.slow
def test_a_user_who_may_not_create_tables_gets_a_clear_error(postgresql_server):
    role, schema = "profilestore_reader", f"readonly_{os.getpid()}"
    with psycopg.connect(postgresql_server, autocommit=True) as admin:
        admin.execute(f"DROP ROLE IF EXISTS {role}")
        admin.execute(f"CREATE ROLE {role} LOGIN")
        admin.execute(f"CREATE SCHEMA {schema}")
        admin.execute(f"GRANT USAGE ON SCHEMA {schema} TO {role}")  # it may look, not create
        try:
            server = urlsplit(postgresql_server)
            as_role = urlunsplit(server._replace(netloc=f"{role}@{server.hostname}:{server.port or 5432}"))
            url = schema_url(as_role, schema)
            refused = profilestore("migrate", "--store", url)
        finally:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")
            admin.execute(f"DROP OWNED BY {role}")
            admin.execute(f"DROP ROLE {role}")
    assert refused.returncode == 1
    assert "cannot migrate the PostgreSQL store: permission denied for schema" in refused.stderr
    assert "Traceback" not in refused.stderr
