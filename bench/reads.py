"""bench/reads: profile fetches over HTTP with 1,000,000 profiles stored.

Loads 1,000,000 profiles through the bulk API, then drives the Profile Fetch API with wrk (a
separate load process, keep-alive connections, random ids): first idle, then while the
standard batch is being applied (sent twice, so that it outlasts the measurement). Last, the
time from a 1-row batch being accepted to its row being visible through the fetch API, over
many tries.

    bench/reads [--profiles 1000000] [--seconds 10] [--connections 16] [--store postgresql://…]

With --store, the service runs on a new schema of that PostgreSQL database (dropped at the
end), and the results go to reads-postgresql.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from service import CLIENT, Service, fresh_store, save
from standard_batch import standard_batch

LUA = Path(__file__).parent / "fetch.lua"


def wrk(url: str, seconds: int, connections: int, profiles: int) -> dict:
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(LUA), url, "--", str(profiles)]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    figures = json.loads(next(line for line in output.splitlines() if line.startswith("{")))
    figures["requestsPerSecond"] = round(figures["requests"] / figures["seconds"])
    return figures


def visibility(service: Service, tries: int) -> dict:
    """Seconds from a 1-row batch's acceptance to its row being fetchable."""
    delays = []
    for n in range(tries):
        visitor = f"visible-{n}"
        service.submit(f"batch=thirdPartyId,seen\n{visitor},yes\n".encode())
        accepted = time.perf_counter()
        while (
            service.http.get(f"/rest/v1/profiles/thirdPartyId/{visitor}", params={"client": CLIENT}).status_code != 200
        ):
            time.sleep(0.001)
        delays.append(time.perf_counter() - accepted)
    delays.sort()
    return {
        "tries": tries,
        "p50Ms": round(statistics.median(delays) * 1000, 1),
        "p99Ms": round(delays[min(len(delays) - 1, int(len(delays) * 0.99))] * 1000, 1),
        "maxMs": round(delays[-1] * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--tries", type=int, default=200, help="1-row batches for the visibility figure")
    parser.add_argument("--store", help="a PostgreSQL database URL (default: a fresh SQLite file)")
    args = parser.parse_args()
    if args.store and not args.store.startswith(("postgresql://", "postgres://")):
        parser.error("--store takes a PostgreSQL URL; the default store is a fresh SQLite file")
    if shutil.which("wrk") is None:
        raise SystemExit("bench/reads needs wrk: apt-get install wrk")
    batch = standard_batch().read_bytes()

    with (
        tempfile.TemporaryDirectory(prefix="profilestore-bench-") as tmp,
        fresh_store(Path(tmp), args.store) as store_url,
    ):
        service = Service(Path(tmp), store_url)
        try:
            for first in range(0, args.profiles, 500_000):
                service.apply(standard_batch(min(500_000, args.profiles - first), first).read_bytes())
            print(f"{args.profiles:,} profiles stored", flush=True)
            idle = wrk(service.url, args.seconds, args.connections, args.profiles)
            print(
                f"idle:          {idle['requestsPerSecond']:>7,} req/s  p50 {idle['p50Ms']} ms  p99 {idle['p99Ms']} ms  "
                f"p99.9 {idle['p999Ms']} ms",
                flush=True,
            )
            # The batch twice, applied back to back: once no longer outlasts the measurement.
            batch_ids = [service.submit(batch)[0] for _ in range(2)]
            busy = wrk(service.url, args.seconds, args.connections, args.profiles)
            busy["batchStillApplying"] = (
                service.http.get(f"/api/batches/{batch_ids[-1]}").json()["status"] == "incomplete"
            )
            print(
                f"during batch:  {busy['requestsPerSecond']:>7,} req/s  p50 {busy['p50Ms']} ms  p99 {busy['p99Ms']} ms  "
                f"p99.9 {busy['p999Ms']} ms  (batch still applying at the end: {busy['batchStillApplying']})",
                flush=True,
            )
            for batch_id in batch_ids:
                service.wait(batch_id)
            visible = visibility(service, args.tries)
            print(
                f"1-row batch visible after: p50 {visible['p50Ms']} ms, p99 {visible['p99Ms']} ms, max {visible['maxMs']} ms"
            )
        finally:
            service.stop()
    path = save("reads-postgresql" if args.store else "reads", {
        "command": "bench/reads"
        + (f" --profiles {args.profiles}" if args.profiles != 1_000_000 else "")
        + (" --store postgresql://…" if args.store else ""),
        "store": "postgresql" if args.store else "sqlite",
        "profiles": args.profiles,
        "load": f"wrk -t2 -c{args.connections} -d{args.seconds}s, random thirdPartyIds",
        "idle": idle,
        "duringBatch": busy,
        "oneRowBatchVisible": visible,
    })  # fmt: skip
    print(f"results: {path}")


if __name__ == "__main__":
    main()
