"""The migrations give exactly the schema file, on each dialect (as procrastinate's
tests/migration): a database made by applying every migration in store/migrations/<dialect>/ and
one made from that folder's schema.sql have the same tables, columns (names, types, defaults,
not-null, keys), indexes (their columns and WHERE) and constraints.

So this fails when someone adds a migration without updating schema.sql, or edits schema.sql
alone: change both. The comparison reads the database's own description of its schema, not the
SQL text, since ALTER TABLE leaves a table's text unlike one written whole."""

import re
import sqlite3
from pathlib import Path

import psycopg
import pytest

from profilestore.store import migrate
from profilestore.store.migrations import schema

# -- SQLite ------------------------------------------------------------------------------------


def sqlite_schema(url: str) -> dict[str, tuple]:
    """What a SQLite file's schema holds, each under its own key, for a readable diff: each
    table (without rowid, strict, AUTOINCREMENT, foreign keys), each column (its place, type,
    not-null, default, place in the primary key), each index (its table, unique, origin, WHERE,
    and its columns with their order and collation), each view and trigger."""
    db = sqlite3.connect(url.removeprefix("sqlite:///"))
    try:
        described = {}
        for table, sql in db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'").fetchall():
            _, _, _, _, without_rowid, strict = db.execute("SELECT * FROM pragma_table_list(?)", (table,)).fetchone()
            foreign_keys = db.execute(f"PRAGMA foreign_key_list({table})").fetchall()
            described[f"table {table}"] = (without_rowid, strict, "AUTOINCREMENT" in sql.upper(), foreign_keys)
            for place, name, *rest in db.execute(f"PRAGMA table_xinfo({table})"):
                described[f"column {table}.{name}"] = (place, *rest)
            for _, index, unique, origin, partial in db.execute(f"PRAGMA index_list({table})").fetchall():
                index_sql = db.execute("SELECT sql FROM sqlite_master WHERE name = ?", (index,)).fetchone()
                where = where_of(index_sql[0]) if partial else None  # an index made by a key has no SQL
                keys = [row for row in db.execute(f"PRAGMA index_xinfo({index})") if row[5]]
                columns = [(name, descending, collation) for _, _, name, descending, collation, _ in keys]
                described[f"index {index}"] = (table, unique, origin, where, columns)
        others = db.execute("SELECT type, name, sql FROM sqlite_master WHERE type IN ('view', 'trigger')")
        for kind, name, sql in others:
            described[f"{kind} {name}"] = (normalised(sql),)
        return described
    finally:
        db.close()


def where_of(index_sql: str) -> str:
    return normalised(re.split(r"\bWHERE\b", index_sql, maxsplit=1, flags=re.I)[1])


def normalised(sql: str) -> str:
    return " ".join(sql.replace("(", " ( ").replace(")", " ) ").split())


def sqlite_from_schema_file(url: str) -> str:
    path = url.removeprefix("sqlite:///")
    Path(path).parent.mkdir(parents=True)
    with sqlite3.connect(path) as db:
        db.executescript(schema("sqlite"))
    return url


@pytest.mark.parametrize("new_store_url", ["sqlite"], indirect=True)
def test_the_sqlite_migrations_give_the_schema_file(new_store_url):
    migrated = new_store_url()
    assert migrate(migrated)
    assert sqlite_schema(migrated) == sqlite_schema(sqlite_from_schema_file(new_store_url()))


@pytest.mark.parametrize("new_store_url", ["sqlite"], indirect=True)
def test_the_sqlite_comparison_sees_a_column_or_index_the_file_lacks(new_store_url):
    url = sqlite_from_schema_file(new_store_url())
    before = sqlite_schema(url)
    with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
        db.execute("ALTER TABLE tokens ADD COLUMN note TEXT")
        db.execute("CREATE INDEX tokens_note ON tokens (note) WHERE note IS NOT NULL")
    after = sqlite_schema(url)
    assert set(after) - set(before) == {"column tokens.note", "index tokens_note"}
    assert after["index tokens_note"] == ("tokens", 0, "c", "note IS NOT NULL", [("note", 0, "BINARY")])


# -- PostgreSQL --------------------------------------------------------------------------------

# The migration runner's own record, which schema.sql leaves out.
RUNNERS_TABLE = "profilestore_migrations"
POSTGRESQL_DESCRIPTIONS = {
    "table": """SELECT t.table_name, t.table_type, c.reloptions FROM information_schema.tables t
        LEFT JOIN pg_class c ON c.oid = format('%%I.%%I', t.table_schema, t.table_name)::regclass
        WHERE t.table_schema = current_schema() AND t.table_name <> %(runners)s""",
    "column": """SELECT c.table_name || '.' || c.column_name,
            rank() OVER (PARTITION BY c.table_name ORDER BY c.ordinal_position), c.data_type,
            c.character_maximum_length, c.collation_name, c.column_default, c.is_nullable, c.is_identity,
            c.identity_generation, c.is_generated, c.generation_expression, a.attstorage
        FROM information_schema.columns c
        JOIN pg_attribute a ON a.attrelid = format('%%I.%%I', c.table_schema, c.table_name)::regclass
            AND a.attname = c.column_name
        WHERE c.table_schema = current_schema() AND c.table_name <> %(runners)s""",
    "index": """SELECT indexname, tablename, replace(indexdef, current_schema() || '.', '') FROM pg_indexes
        WHERE schemaname = current_schema() AND tablename <> %(runners)s""",
    "constraint": """SELECT r.relname || '.' || c.conname, c.contype, pg_get_constraintdef(c.oid)
        FROM pg_constraint c JOIN pg_class r ON r.oid = c.conrelid
        WHERE c.connamespace = current_schema()::regnamespace AND r.relname <> %(runners)s""",
    "sequence": """SELECT sequence_name, data_type, start_value, increment, cycle_option
        FROM information_schema.sequences WHERE sequence_schema = current_schema()""",
}


def postgresql_schema(url: str) -> dict[str, tuple]:
    """What a schema holds, each under its own key, for a readable diff: each table (its kind and
    options), column (its place, type, collation, default, not-null, identity, storage), index
    (its definition, without the schema's name), constraint and sequence; but for the runner's
    own table."""
    with psycopg.connect(url) as db:
        return {
            f"{kind} {name}": tuple(rest)
            for kind, query in POSTGRESQL_DESCRIPTIONS.items()
            for name, *rest in db.execute(query, {"runners": RUNNERS_TABLE})
        }


def postgresql_from_schema_file(url: str) -> str:
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(schema("postgresql"))
    return url


@pytest.mark.parametrize("new_store_url", ["postgresql"], indirect=True)
def test_the_postgresql_migrations_give_the_schema_file(new_store_url):
    migrated = new_store_url()
    assert migrate(migrated)
    assert postgresql_schema(migrated) == postgresql_schema(postgresql_from_schema_file(new_store_url()))


@pytest.mark.parametrize("new_store_url", ["postgresql"], indirect=True)
def test_the_postgresql_comparison_sees_a_column_or_index_the_file_lacks(new_store_url):
    url = postgresql_from_schema_file(new_store_url())
    before = postgresql_schema(url)
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("ALTER TABLE tokens ADD COLUMN note text")
        db.execute("CREATE INDEX tokens_note ON tokens (note) WHERE note IS NOT NULL")
    after = postgresql_schema(url)
    assert set(after) - set(before) == {"column tokens.note", "index tokens_note"}
    definition = "CREATE INDEX tokens_note ON tokens USING btree (note) WHERE (note IS NOT NULL)"
    assert after["index tokens_note"] == ("tokens", definition)
