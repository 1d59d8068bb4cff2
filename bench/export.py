"""bench/export: a client's profiles exported through a real `profilestore serve`.

Stores --profiles profiles (1,000,000 by default) straight through the store's insert_profiles,
in chunks (no HTTP, no batch: only the export is measured), with the standard batch's 8
attributes and values, a thirdPartyId on 90 % of them; then starts the service on that store and
times `GET /api/clients/bench/profiles/export` read to the end as a client reads it: the batch
file of each key (the two together hold every profile once) and ndjson. Reports seconds and
profiles per second, the peak memory of `serve`, and the naive floor: the same profiles read with
one SELECT from the SQLite file and written with the stdlib csv module, with no paging, no rule
and no HTTP.

    bench/export [--profiles 1000000] [--store postgresql://…]
"""

from __future__ import annotations

import argparse
import csv
import io
import random
import sqlite3
import tempfile
import time
from pathlib import Path

import orjson

from profilestore.ids import new_tnt_id
from profilestore.model import Profile
from profilestore.store import open_store
from service import CLIENT, Service, fresh_store, save
from standard_batch import HEADER, SEED, values, visitor_id

CHUNK = 10_000  # profiles per insert transaction
THIRD_PARTY_SHARE = 0.9
NOW_MS = int(time.time() * 1000)


def profiles(first: int, count: int, rng: random.Random) -> list[Profile]:
    """Profiles first..first+count, with the standard batch's attributes (15 % left out)."""
    made = []
    for n in range(first, first + count):
        attributes = {name: [v, NOW_MS, n] for name, v in zip(HEADER[1:], values(rng)) if rng.random() >= 0.15}
        third_party_id = visitor_id(n) if rng.random() < THIRD_PARTY_SHARE else None
        made.append(Profile(CLIENT, new_tnt_id(), NOW_MS, NOW_MS, third_party_id, None, attributes, NOW_MS))
    return made


def load(url: str, count: int) -> float:
    """Seconds to store `count` profiles through insert_profiles, CHUNK at a time."""
    rng = random.Random(SEED)
    store = open_store(url)
    started = time.perf_counter()
    try:
        for first in range(0, count, CHUNK):
            chunk = profiles(first, min(CHUNK, count - first), rng)
            store.write(CLIENT, lambda tx, chunk=chunk: tx.insert_profiles(chunk), durable=False)
    finally:
        store.close()
    return time.perf_counter() - started


def timed_export(service: Service, **params: str) -> tuple[float, int, int]:
    """(seconds, lines, bytes) of one export read to its end."""
    lines = size = 0
    started = time.perf_counter()
    with service.http.stream("GET", f"/api/clients/{CLIENT}/profiles/export", params=params) as answer:
        if answer.status_code != 200:
            raise SystemExit(f"the export failed: {answer.status_code} {answer.read().decode()}")
        for piece in answer.iter_raw():
            lines += piece.count(b"\n")
            size += len(piece)
    return time.perf_counter() - started, lines, size


def naive_floor(db_path: Path) -> float:
    """Seconds for the obvious first implementation: one SELECT of the client's profiles, each
    attributes object decoded and written as a CSV row with the stdlib csv module."""
    started = time.perf_counter()
    out = csv.writer(io.StringIO())
    with sqlite3.connect(db_path) as db:
        for third_party_id, tnt_id, attributes in db.execute(
            "SELECT third_party_id, tnt_id, attributes FROM profiles WHERE client = ?", (CLIENT,)
        ):
            stored = orjson.loads(attributes)
            out.writerow([third_party_id or tnt_id, *(stored[n][0] if n in stored else "" for n in HEADER[1:])])
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=1_000_000, help="profiles to store and export")
    parser.add_argument("--store", help="a PostgreSQL database URL (default: a fresh SQLite file)")
    args = parser.parse_args()
    if args.store and not args.store.startswith(("postgresql://", "postgres://")):
        parser.error("--store takes a PostgreSQL URL; the default store is a fresh SQLite file")

    with tempfile.TemporaryDirectory(prefix="profilestore-bench-") as tmp, fresh_store(Path(tmp), args.store) as url:
        open_store(url).close()  # the schema, before the clock starts
        load_s = load(url, args.profiles)
        print(f"stored {args.profiles:,} profiles in {load_s:.1f} s", flush=True)
        service = Service(Path(tmp), url)
        try:
            by_key = {key: timed_export(service, format="batch", key=key) for key in ("thirdPartyId", "pcId")}
            ndjson = timed_export(service, format="ndjson")
            peak = service.peak_rss_mb()
        finally:
            service.stop()
        floor = None if args.store else naive_floor(Path(url.removeprefix("sqlite:///")))

    batch_s = sum(s for s, _, _ in by_key.values())
    rows = sum(lines - 1 for _, lines, _ in by_key.values())  # less each file's header
    assert rows == args.profiles == ndjson[1], (rows, ndjson[1])
    results = {
        "command": "bench/export"
        + (f" --profiles {args.profiles}" if args.profiles != 1_000_000 else "")
        + (" --store postgresql://…" if args.store else ""),  # fmt: skip
        "store": "postgresql" if args.store else "sqlite",
        "profiles": args.profiles,
        "loadSeconds": round(load_s, 1),
        "batch": {
            "seconds": round(batch_s, 2),
            "rowsPerSecond": round(rows / batch_s),
            "bytes": sum(b for _, _, b in by_key.values()),
            "byKey": {k: {"seconds": round(s, 2), "rows": n - 1} for k, (s, n, _) in by_key.items()},
        },
        "ndjson": {"seconds": round(ndjson[0], 2), "rowsPerSecond": round(ndjson[1] / ndjson[0]), "bytes": ndjson[2]},
        "peakRssMB": round(peak),
        "floorSeconds": round(floor, 2) if floor else None,
    }
    path = save("export" + ("-postgresql" if args.store else ""), results)
    print(f"batch files: {results['batch']['rowsPerSecond']:>9,} profiles/s ({batch_s:.2f} s, both keys)")
    print(f"ndjson:      {results['ndjson']['rowsPerSecond']:>9,} profiles/s ({ndjson[0]:.2f} s)")
    print(f"peak RSS of serve: {peak:,.0f} MB")
    if floor:
        print(f"naive floor (one SELECT, csv module, no HTTP): {floor:.2f} s")
    print(f"results: {path}")


if __name__ == "__main__":
    main()
