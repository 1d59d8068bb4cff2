"""Each store's schema as numbered migrations, `NNNN_name.sql` in a folder per dialect, with
`schema.sql` beside them: the schema as they leave it, to read (tests/test_migrations.py checks
that the two agree). A store applies, in order, the migrations it lacks; each is applied once
and never changed afterwards.

One runner (`migrate`, `pending`) decides which migrations a database lacks and applies them in
order, recording each; a dialect says how, in a `Database`: SQLite records the last one applied
in PRAGMA user_version and applies them all in one transaction; PostgreSQL records each in the
profilestore_migrations table and applies each in its own transaction, under an advisory lock.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Container
from contextlib import AbstractContextManager, nullcontext
from importlib import resources
from typing import NamedTuple

MIGRATION_FILE = re.compile(r"(\d{4})_(\w+)\.sql")


class Migration(NamedTuple):
    version: int
    name: str
    script: str

    @property
    def label(self) -> str:
        """Its file's name without `.sql`, as `profilestore migrate` reports it."""
        return f"{self.version:04d}_{self.name}"


def migrations(dialect: str) -> list[Migration]:
    """Every migration of the dialect ("sqlite", "postgresql"), in order."""
    found = []
    for entry in resources.files(__package__).joinpath(dialect).iterdir():
        match = MIGRATION_FILE.fullmatch(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text()))
    return sorted(found)


def schema(dialect: str) -> str:
    """The dialect's schema.sql: the schema as its migrations leave it."""
    return resources.files(__package__).joinpath(dialect, "schema.sql").read_text()


def statements(script: str) -> list[str]:
    """A migration's statements, for a driver that runs one at a time: its comments dropped,
    split at each `;` (no statement holds one in a literal)."""
    code = re.sub(r"--[^\n]*", "", script)
    return [statement.strip() for statement in code.split(";") if statement.strip()]


class Database(ABC):
    """One database, as the runner sees it: how its dialect runs a migration and keeps the
    record of those applied, and how it keeps other processes out meanwhile."""

    dialect: str  # the folder of its migrations

    def whole_run(self) -> AbstractContextManager[object]:
        """Around the whole run of migrate(); nothing, unless the dialect needs it."""
        return nullcontext()

    def each_migration(self) -> AbstractContextManager[object]:
        """Around each migration, its check that it is not applied yet included."""
        return nullcontext()

    @abstractmethod
    def applied(self) -> Container[int]:
        """The versions applied."""

    @abstractmethod
    def run(self, script: str) -> None:
        """Run a migration's SQL."""

    @abstractmethod
    def record(self, migration: Migration) -> None:
        """Note that the migration is applied."""


def pending(db: Database) -> list[Migration]:
    """The migrations the database lacks, in order."""
    applied = db.applied()
    return [migration for migration in migrations(db.dialect) if migration.version not in applied]


def migrate(db: Database) -> list[str]:
    """Apply the migrations the database lacks, in order, recording each; their labels. Each is
    checked again inside each_migration(), so that processes migrating at once (kept apart by
    the dialect's lock) apply it once."""
    done = []
    with db.whole_run():
        for migration in migrations(db.dialect):
            with db.each_migration():
                if migration.version in db.applied():
                    continue
                db.run(migration.script)
                db.record(migration)
                done.append(migration.label)
    return done
