"""Each store's schema as numbered migrations, `NNNN_name.sql` in a folder per dialect. A store
applies, in order, the ones it lacks; each is applied once and never changed afterwards."""

from __future__ import annotations

import re
from importlib import resources

MIGRATION_FILE = re.compile(r"(\d{4})_(\w+)\.sql")


def migrations(dialect: str) -> list[tuple[int, str, str]]:
    """(version, name, SQL) of every migration of the dialect ("sqlite", "postgresql"), in order."""
    found = []
    for entry in resources.files(__package__).joinpath(dialect).iterdir():
        match = MIGRATION_FILE.fullmatch(entry.name)
        if match:
            found.append((int(match[1]), match[2], entry.read_text()))
    return sorted(found)


def statements(script: str) -> list[str]:
    """A migration's statements, for a driver that runs one at a time: its comments dropped,
    split at each `;` (no statement holds one in a literal)."""
    code = re.sub(r"--[^\n]*", "", script)
    return [statement.strip() for statement in code.split(";") if statement.strip()]
