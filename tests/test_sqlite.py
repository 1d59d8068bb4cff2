"""What only the SQLite store has: its schema versioned by PRAGMA user_version, brought up to
date as the store opens, so a file of an earlier version keeps everything it holds."""

import sqlite3
import subprocess
import sys

from profilestore.store import open_store
from profilestore.store.migrations import migrations, statements

ALL_MIGRATIONS = [
    "0001_initial", "0002_retries_and_retention", "0003_idempotency_keys", "0004_webhooks", "0005_active_hour",
    "0006_profiles_without_third_party_id",
]  # fmt: skip


def test_a_file_of_the_first_version_keeps_its_batches_and_failed_rows(tmp_path):
    path = tmp_path / "profilestore.db"
    with sqlite3.connect(path) as db:  # the file as version 1 left it
        for statement in statements(migrations("sqlite")[0][2]):
            db.execute(statement)
        db.execute("PRAGMA user_version = 1")
        db.execute("""INSERT INTO batches (client, version, accepted_ms, size, payload_bytes, header, cursor,
                      cursor_line, state, finished_ms) VALUES ('demo', 2, 1, 1, 20, x'00', 20, 3, 'complete', 2)""")
        db.execute("INSERT INTO failed_rows VALUES (1, 2, 'c1', 'bad', CAST('c1,a%zz' AS BLOB))")
        db.execute("""INSERT INTO profiles (client, tnt_id, created_ms, modified_ms, third_party_id, attributes,
                      active_ms) VALUES ('demo', 't1', 1, 1, 'c1', '{}', 7300000), ('demo', 't2', 1, 1, 'c2', '{}', 1)""")
    store = open_store(f"sqlite:///{path}")
    try:
        batch = store.batch(1)
        assert (batch.state, batch.last_error, batch.failing_since_ms, batch.next_attempt_ms) == (
            "complete",
            None,
            None,
            None,
        )
        (row,) = store.failed_rows(1)
        assert (row.id, row.raw, row.raw_length) == ("c1", b"c1,a%zz", 7)
        # Its profiles are found by the hour of their last write: the one inactive since 1 ms expires.
        assert store.write(None, lambda tx: tx.purge_inactive(3_600_001, 10)) == 1
        assert store.profile("demo", "thirdPartyId", "c1") is not None
        assert store.profile("demo", "thirdPartyId", "c2") is None
    finally:
        store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(ALL_MIGRATIONS)
        assert db.execute("SELECT tnt_id, active_hour FROM profiles").fetchall() == [("t1", 2)]


def test_migrate_applies_each_migration_once(tmp_path):
    url = f"sqlite:///{tmp_path / 'profilestore.db'}"
    command = [sys.executable, "-m", "profilestore", "migrate", "--store", url]
    first = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0 and f"applied {', '.join(ALL_MIGRATIONS)}" in first.stdout
    assert "the schema is up to date" in subprocess.run(command, capture_output=True, text=True, timeout=60).stdout
