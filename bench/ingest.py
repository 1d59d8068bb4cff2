"""bench/ingest: the standard batch through a real `profilestore serve`, end to end.

Starts the service with its default settings on a fresh store, submits the standard batch over
HTTP as a client does, polls until it is complete, and reports rows per second from the first
byte sent to `complete`, for an insert pass (new profiles) and an update pass (the same ids
again), the CPU time per row and the peak memory of `serve` and its worker, the naive floor
(the same file parsed with the stdlib csv module and upserted with one executemany into a
plain SQLite table), and the store alone: the time the store takes to look up and write the
profiles the batch made, in the worker's chunks, which bounds what any worker could reach.

    bench/ingest [--preload 10000000] [--rows 500000] [--store postgresql://…] [--update-passes N]

With --store, the service runs on a new schema of that PostgreSQL database (dropped at the
end), and the profiles table's size and dead rows are reported after every pass.
"""

from __future__ import annotations

import argparse
import csv
import sqlite3
import tempfile
import time
from functools import partial
from pathlib import Path

from profilestore.config import Settings
from profilestore.store import open_store
from profilestore.store.base import WriteTx
from profilestore.store.rows import profile_values
from profilestore.worker import spare_the_collector
from service import CLIENT, Service, fresh_store, save
from standard_batch import standard_batch, visitor_id


def naive_floor(path: Path, db_path: Path) -> float:
    """Seconds for the obvious first implementation to upsert the file into SQLite."""
    started = time.perf_counter()
    with path.open(newline="", encoding="utf-8") as f, sqlite3.connect(db_path) as db:
        reader = csv.reader(f)
        header = next(reader)
        columns = [f"a{i}" for i in range(1, len(header))]
        db.execute(f"CREATE TABLE IF NOT EXISTS profiles (id TEXT PRIMARY KEY, {', '.join(columns)})")
        width = len(header)
        db.executemany(
            f"INSERT INTO profiles VALUES ({', '.join('?' * width)}) ON CONFLICT (id) DO UPDATE SET "
            + ", ".join(f"{c} = coalesce(excluded.{c}, {c})" for c in columns),
            (row + [None] * (width - len(row)) for row in reader),
        )
    return time.perf_counter() - started


def store_alone(source_url: str, target_url: str, rows: int) -> tuple[float, float]:
    """Seconds the store alone takes for an insert and an update pass of the profiles the
    batch made: chunk by chunk, the lookup by thirdPartyId and the write of the rows, as the
    worker asks the store for them (WriteTx.stored_profiles, write_profile_rows), with the rows
    made beforehand: no line parsed, no rule applied, no JSON made. No worker, however fast,
    can beat it."""
    spare_the_collector()  # as the worker does
    source, target = open_store(source_url), open_store(target_url)
    chunk_rows = Settings().chunk_rows
    seconds = [0.0, 0.0]
    try:
        for n, write in enumerate((_insert, _update)):
            for first in range(0, rows, chunk_rows):
                ids = [visitor_id(i) for i in range(first, min(first + chunk_rows, rows))]
                made = [profile_values(p) for p in source.write(CLIENT, partial(_by_id, ids=ids)).values()]
                started = time.perf_counter()
                target.write(CLIENT, partial(write, ids=ids, made=made), durable=False)
                seconds[n] += time.perf_counter() - started
    finally:
        source.close()
        target.close()
    return seconds[0], seconds[1]


def _insert(tx: WriteTx, ids: list[str], made: list[tuple]) -> None:
    tx.stored_profiles(CLIENT, "thirdPartyId", ids)  # what the worker asks the store before it writes
    tx.write_profile_rows(made, [])


def _update(tx: WriteTx, ids: list[str], made: list[tuple]) -> None:
    stored = tx.stored_profiles(CLIENT, "thirdPartyId", ids)
    # PROFILE_COLUMNS: modified_ms, attributes and active_ms are 3, 6 and 7; the thirdPartyId is 4
    tx.write_profile_rows([], [(row[3], row[6], row[7], stored[row[4]].address) for row in made])


def _by_id(tx: WriteTx, ids: list[str]) -> dict:
    return tx.profiles_by(CLIENT, "thirdPartyId", ids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500_000, help="rows of the standard batch")
    parser.add_argument("--preload", type=int, default=0, help="profiles to store first (in batches of --rows)")
    parser.add_argument("--store", help="a PostgreSQL database URL (default: a fresh SQLite file)")
    parser.add_argument("--update-passes", type=int, default=1, help="update passes, to watch the table grow")
    args = parser.parse_args()
    if args.store and not args.store.startswith(("postgresql://", "postgres://")):
        parser.error("--store takes a PostgreSQL URL; the default store is a fresh SQLite file")
    batch = standard_batch(args.rows).read_bytes()

    with tempfile.TemporaryDirectory(prefix="profilestore-bench-") as tmp, fresh_store(Path(tmp), args.store) as url:
        service = Service(Path(tmp), url)
        try:
            preload_seconds = 0.0
            for first in range(args.rows, args.rows + args.preload, args.rows):
                _, seconds = service.apply(standard_batch(args.rows, first).read_bytes())
                preload_seconds += seconds
                print(f"preloaded {first:,} profiles ({seconds:.1f} s for the last {args.rows:,})", flush=True)
            cpu = [service.cpu_seconds()]
            insert, insert_s = service.apply(batch)
            cpu.append(service.cpu_seconds())
            table = [service.profiles_table()]
            updates = []
            for _ in range(args.update_passes):
                updates.append(service.apply(batch))
                cpu.append(service.cpu_seconds())
                table.append(service.profiles_table())
                print(
                    f"update pass {len(updates)}: {args.rows / updates[-1][1]:,.0f} rows/s; profiles table {table[-1]}",
                    flush=True,
                )
            update, update_s = updates[0]
            peak = service.peak_rss_mb()
        finally:
            service.stop()
        with fresh_store(Path(tmp), args.store, "store-alone") as empty_url:
            store_insert, store_update = store_alone(url, empty_url, args.rows)
        floor_insert = naive_floor(standard_batch(args.rows), Path(tmp) / "floor.db")
        floor_update = naive_floor(standard_batch(args.rows), Path(tmp) / "floor.db")

    assert all(r["successfulUpdates"] == args.rows for r, _ in [(insert, 0), *updates]), (insert, updates)
    results = {
        "command": "bench/ingest"
        + (f" --preload {args.preload}" if args.preload else "")
        + (" --store postgresql://…" if args.store else "")
        + (f" --update-passes {args.update_passes}" if args.update_passes != 1 else ""),
        "store": "postgresql" if args.store else "sqlite",
        "rows": args.rows,
        "batchBytes": len(batch),
        "preloadedProfiles": args.preload,
        "preloadSeconds": round(preload_seconds, 1),
        "insert": {"seconds": round(insert_s, 2), "rowsPerSecond": round(args.rows / insert_s)},
        "update": {"seconds": round(update_s, 2), "rowsPerSecond": round(args.rows / update_s)},
        "laterUpdatePasses": [{"seconds": round(s, 2), "rowsPerSecond": round(args.rows / s)} for _, s in updates[1:]],
        "profilesTable": table if args.store else None,
        "peakRssMB": round(peak),
        # serve's and its worker's, per row (PostgreSQL's own is not in it)
        "cpuMicrosecondsPerRow": {
            "insert": round((cpu[1] - cpu[0]) / args.rows * 1e6, 1),
            "update": round((cpu[2] - cpu[1]) / args.rows * 1e6, 1),
        },
        "floor": {"insertSeconds": round(floor_insert, 2), "updateSeconds": round(floor_update, 2)},
        "ratioToFloor": {"insert": round(insert_s / floor_insert, 2), "update": round(update_s / floor_update, 2)},
        "storeAlone": {
            "insertSeconds": round(store_insert, 2),
            "updateSeconds": round(store_update, 2),
            "insertRowsPerSecond": round(args.rows / store_insert),
            "updateRowsPerSecond": round(args.rows / store_update),
        },
    }
    name = (
        "ingest"
        + (f"-preload-{args.preload}" if args.preload else "")
        + ("-" + args.store.split(":")[0] if args.store else "")
    )
    path = save(name, results)
    print(f"insert pass: {results['insert']['rowsPerSecond']:>9,} rows/s ({insert_s:.2f} s)")
    print(f"update pass: {results['update']['rowsPerSecond']:>9,} rows/s ({update_s:.2f} s)")
    per_row = results["cpuMicrosecondsPerRow"]
    print(f"CPU per row: insert {per_row['insert']} µs, update {per_row['update']} µs (serve and its worker)")
    print(f"peak RSS:    {peak:>9,.0f} MB")
    print(
        f"naive floor: insert {floor_insert:.2f} s, update {floor_update:.2f} s; "
        f"ours / floor: {results['ratioToFloor']['insert']} and {results['ratioToFloor']['update']}"
    )
    print(
        f"store alone: insert {store_insert:.2f} s ({args.rows / store_insert:,.0f} rows/s), "
        f"update {store_update:.2f} s ({args.rows / store_update:,.0f} rows/s): the bound for any worker"
    )
    print(f"results: {path}")


if __name__ == "__main__":
    main()
