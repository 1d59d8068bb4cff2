"""bench/bodies: the memory of `serve`, and fetch latency, while the largest bodies arrive.

Stores 100,000 profiles, then sends each kind of body once and four times at once while wrk
fetches profiles (a separate load process, from the first body sent to the last answer), and
reports the peak resident memory of `serve` and of its worker process in each case, and the
fetch latency meanwhile. The bodies are the largest each path takes, and the ones that cost a
naive reader the most:

- a batch of 49.9 MB of 3-byte lines (refused: 16 million rows, over the 500,000 limit);
- a batch of 49.9 MB in 500,000 rows (accepted, and applied afterwards by the worker);
- a Delivery request of the largest size taken (256 KB by default) of empty JSON objects;
- a Delivery request of 60 MB, Target's own limit (refused before it is read).

    bench/bodies [--seconds-between 2]
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from profilestore.config import MB, Settings
from service import CLIENT, Service, fresh_store, save
from standard_batch import standard_batch

LUA = Path(__file__).parent / "fetch.lua"
PROFILES = 100_000
LIMIT = Settings().max_batch_bytes - 1


def short_lines() -> bytes:
    header = b"batch=pcId,a\n"
    return header + b"p,\n" * ((LIMIT - len(header)) // 3)


def many_rows() -> bytes:
    """500,000 rows filling the batch limit: the standard batch's ids, padded values."""
    header = b"batch=thirdPartyId,note\n"
    width = (LIMIT - len(header)) // 500_000
    return header + b"".join(b"c%07d,%s\n" % (n, b"x" * (width - 10)) for n in range(500_000))


def empty_objects(size: int) -> bytes:
    body = b'{"context": {"channel": "web"}, "property": [' + b"{}," * ((size - 64) // 3)
    return body.rstrip(b",") + b"]}"


CASES = {
    "nothing (the fetches alone, for comparison)": ("nothing", bytes),
    "batch of 49.9 MB of short lines (refused, too many rows)": ("batch", short_lines),
    "batch of 49.9 MB in 500,000 rows (accepted)": ("batch", many_rows),
    "Delivery request of 256 KB of empty objects (the largest taken)": ("delivery", lambda: empty_objects(Settings().max_delivery_bytes - 1)),
    "Delivery request of 60 MB (Target's limit; refused)": ("delivery", lambda: empty_objects(60 * MB)),
}  # fmt: skip


def send(url: str, kind: str, body: Path) -> int:
    """POST the body with curl (a client in C, so that this machine's two cores go to the
    service and to wrk, not to sending); the answer's status."""
    if kind == "nothing":
        time.sleep(2)
        return 0
    path = (
        f"/m2/{CLIENT}/profile/batchUpdate" if kind == "batch" else f"/rest/v1/delivery?client={CLIENT}&sessionId=bench"
    )
    command = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--data-binary", f"@{body}", f"{url}{path}"]
    return int(subprocess.run(command, capture_output=True, text=True, check=True).stdout)


def processes(service: Service) -> dict[str, int]:
    """serve's pid and its worker process's."""
    pid = service.server.process.pid
    children = [int(c) for task in Path(f"/proc/{pid}/task").iterdir() for c in (task / "children").read_text().split()]
    return {"serve": pid, **({"worker": children[0]} if children else {})}


def reset_peaks(pids: dict[str, int]) -> None:
    for pid in pids.values():
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM to the current RSS


def memory_mb(pid: int, field: str) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return round(int(next(line for line in status.splitlines() if line.startswith(field)).split()[1]) / 1024)


def case(service: Service, kind: str, body: Path, at_once: int) -> dict:
    pids = processes(service)
    reset_peaks(pids)
    before = {name: memory_mb(pid, "VmRSS") for name, pid in pids.items()}
    command = ["wrk", "-t1", "-c8", "-d600s", "--latency", "-s", str(LUA), service.url, "--", str(PROFILES)]
    load = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    started = time.perf_counter()
    with ThreadPoolExecutor(at_once) as pool:
        statuses = sorted(pool.map(lambda _: send(service.url, kind, body), range(at_once)))
    seconds = time.perf_counter() - started
    load.send_signal(signal.SIGINT)  # wrk stops and reports what it measured so far
    fetches = json.loads(next(line for line in load.communicate()[0].splitlines() if line.startswith("{")))
    peaks = {name: memory_mb(pid, "VmHWM") for name, pid in pids.items()}
    return {
        "atOnce": at_once, "answers": statuses, "seconds": round(seconds, 2),
        "rssBeforeMB": before, "peakRssMB": peaks,
        "fetch": {k: fetches[k] for k in ("requests", "p50Ms", "p99Ms", "maxMs", "non2xx", "socketErrors")},
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds-between", type=float, default=2, help="a pause between cases")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("bench/bodies needs wrk: apt-get install wrk")
    results = []
    with tempfile.TemporaryDirectory(prefix="profilestore-bench-") as tmp, fresh_store(Path(tmp)) as store_url:
        service = Service(Path(tmp), store_url)
        try:
            service.apply(standard_batch(PROFILES).read_bytes())
            for name, (kind, make) in CASES.items():
                body = Path(tmp) / "body"
                body.write_bytes(make())
                for at_once in (1,) if kind == "nothing" else (1, 4):
                    figures = {"case": name, "bodyBytes": body.stat().st_size, **case(service, kind, body, at_once)}
                    results.append(figures)
                    print(f"{name}, {at_once} at once: answers {figures['answers']}, serve peak "
                          f"{figures['peakRssMB']['serve']} MB (from {figures['rssBeforeMB']['serve']}), worker peak "
                          f"{figures['peakRssMB'].get('worker')} MB; fetch p99 {figures['fetch']['p99Ms']} ms, "
                          f"max {figures['fetch']['maxMs']} ms", flush=True)  # fmt: skip
                    service.wait_idle()
                    time.sleep(args.seconds_between)
        finally:
            service.stop()
    path = save("bodies", {"command": "bench/bodies", "profiles": PROFILES, "load": "wrk -t1 -c8, random thirdPartyIds",
                           "cases": results})  # fmt: skip
    print(f"results: {path}")


if __name__ == "__main__":
    main()
