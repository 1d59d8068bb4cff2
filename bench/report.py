"""Turn bench/results/*.json into the benchmark table of docs/benchmarks.md and bench/results/benchmarks.png.

python bench/report.py     (bench/ingest, bench/reads, bench/bodies and bench/export run it after themselves)
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
PAGE = Path(__file__).parent.parent / "docs" / "benchmarks.md"
MET = {True: "yes", False: "no", None: "see below"}
CHART = RESULTS / "benchmarks.png"
MARKED = re.compile(r"<!-- bench:begin -->.*<!-- bench:end -->", flags=re.S)


def load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def rate(results: dict, ingest_pass: str) -> str:
    """A pass's rate end to end, its time against the naive floor's in the same run (this
    machine's speed varies from hour to hour), and what the store alone reached (the bound)."""
    figures, alone = results[ingest_pass], results.get("storeAlone")
    text = f"{figures['rowsPerSecond']:,} rows/s ({figures['seconds']} s, {results['ratioToFloor'][ingest_pass]} × the floor)"
    if alone:
        text += (
            f"; the store alone: {alone[ingest_pass + 'RowsPerSecond']:,} rows/s ({alone[ingest_pass + 'Seconds']} s)"
        )
    return text


def share_of_store_alone(results: dict, target: float, store: str = "") -> tuple[str, str, str, bool | None]:
    """Each pass's rate as a share of the store alone's in the same run: how much of the time
    is the store's own."""
    alone = results.get("storeAlone")
    if not alone:
        return (f"{store}rate / the store alone's (insert, update)", f"≥ {target}", "not measured", None)
    shares = {p: results[p]["rowsPerSecond"] / alone[p + "RowsPerSecond"] for p in ("insert", "update")}
    cpu = results.get("cpuMicrosecondsPerRow", {})
    measured = f"{shares['insert']:.2f}, {shares['update']:.2f}" + (
        f" (CPU of serve and its worker: {cpu['insert']} and {cpu['update']} µs a row)" if cpu else ""
    )
    return (
        f"{store}rate / the store alone's (insert, update)",
        f"≥ {target}",
        measured,
        min(shares.values()) >= target,
    )


def rows(
    ingest: dict | None, preloaded: dict | None, reads: dict | None, postgresql: dict | None, bodies: dict | None = None,
    exported: dict | None = None, postgresql_reads: dict | None = None,
) -> list[tuple[str, str, str, bool | None]]:  # fmt: skip
    """(what, target, measured, met) for every target of the benchmark, PostgreSQL and fault issues."""
    table = []
    if ingest:
        i, u, f = ingest["insert"], ingest["update"], ingest["ratioToFloor"]
        table += [
            ("insert pass, standard batch", "≥ 150,000 rows/s", rate(ingest, "insert"), i["rowsPerSecond"] >= 150_000),
            ("update pass, standard batch", "≥ 120,000 rows/s", rate(ingest, "update"), u["rowsPerSecond"] >= 120_000),
            share_of_store_alone(ingest, 0.75),
            ("time / naive floor's (insert, update)", "≤ 0.4", f"{f['insert']}, {f['update']} (floor {ingest['floor']['insertSeconds']} s, {ingest['floor']['updateSeconds']} s)", max(f.values()) <= 0.4),
            ("peak memory of the service", "≤ 500 MB", f"{ingest['peakRssMB']} MB", ingest["peakRssMB"] <= 500),
        ]  # fmt: skip
    if ingest and preloaded:
        ratio = preloaded["insert"]["rowsPerSecond"] / ingest["insert"]["rowsPerSecond"]
        table.append((
            f"insert pass with {preloaded['preloadedProfiles']:,} profiles stored", "≥ 80 % of the empty-store rate",
            f"{preloaded['insert']['rowsPerSecond']:,} rows/s = {ratio:.0%} (building the store took {preloaded['preloadSeconds']:,.0f} s)",
            ratio >= 0.8,
        ))  # fmt: skip
    if reads:
        idle, busy, seen = reads["idle"], reads["duringBatch"], reads["oneRowBatchVisible"]
        table += [
            ("fetch throughput, idle", "≥ 3,000 req/s", f"{idle['requestsPerSecond']:,} req/s", idle["requestsPerSecond"] >= 3000),
            ("fetch latency, idle", "p99 ≤ 10 ms", f"p50 {idle['p50Ms']} ms, p99 {idle['p99Ms']} ms, p99.9 {idle['p999Ms']} ms", idle["p99Ms"] <= 10),
            ("fetch latency, standard batch applying", "p99 ≤ 30 ms", f"{busy['requestsPerSecond']:,} req/s; p50 {busy['p50Ms']} ms, p99 {busy['p99Ms']} ms, p99.9 {busy['p999Ms']} ms", busy["p99Ms"] <= 30),
            ("1-row batch visible through fetch", "p99 ≤ 1 s", f"p50 {seen['p50Ms']} ms, p99 {seen['p99Ms']} ms ({seen['tries']} tries)", seen["p99Ms"] <= 1000),
        ]  # fmt: skip
    if postgresql:
        i, u, sizes = postgresql["insert"], postgresql["update"], postgresql["profilesTable"]
        passes = [u, *postgresql["laterUpdatePasses"]]
        table += [
            ("PostgreSQL: insert pass, standard batch", "≥ 65,000 rows/s", rate(postgresql, "insert"), i["rowsPerSecond"] >= 65_000),
            ("PostgreSQL: update pass, standard batch", "≥ 50,000 rows/s", rate(postgresql, "update"), u["rowsPerSecond"] >= 50_000),
            share_of_store_alone(postgresql, 0.7, "PostgreSQL: "),
            (f"PostgreSQL: profiles table after the insert and {len(passes)} update passes", "bloat measured and addressed",
             " → ".join(f"{s['tableMB']:,} MB" for s in sizes) + f" (indexes {sizes[0]['indexesMB']} → {sizes[-1]['indexesMB']} MB; "
             f"{sizes[-1]['hotUpdates'] / max(sizes[-1]['updates'], 1):.1%} of updates HOT)", None),
        ]  # fmt: skip
    if postgresql_reads:
        idle = postgresql_reads["idle"]
        table += [
            ("PostgreSQL: fetch throughput, idle", "≥ 3,000 req/s", f"{idle['requestsPerSecond']:,} req/s ({postgresql_reads['profiles']:,} profiles)", idle["requestsPerSecond"] >= 3000),
            ("PostgreSQL: fetch latency, idle", "p99 ≤ 15 ms", f"p50 {idle['p50Ms']} ms, p99 {idle['p99Ms']} ms, p99.9 {idle['p999Ms']} ms", idle["p99Ms"] <= 15),
        ]  # fmt: skip
    if bodies:
        four = [c for c in bodies["cases"] if c["atOnce"] == 4]
        peak = max(c["peakRssMB"]["serve"] for c in four)
        slowest = max(c["fetch"]["p99Ms"] for c in four)
        table += [
            ("peak memory of serve, four of the largest bodies at once", "< 1 GB",
             "; ".join(f"{c['case']}: {c['peakRssMB']['serve']:,} MB" for c in four), peak < 1024),
            ("fetch latency meanwhile", "p99 < 50 ms",
             "; ".join(f"{c['case']}: p99 {c['fetch']['p99Ms']} ms" for c in four), slowest < 50),
        ]  # fmt: skip
    if exported:
        batch, ndjson, floor = exported["batch"], exported["ndjson"], exported.get("floorSeconds")
        table.append((
            f"export of {exported['profiles']:,} profiles as batch files (both keys)", "< 20 s",
            f"{batch['seconds']} s = {batch['rowsPerSecond']:,} profiles/s; ndjson {ndjson['seconds']} s; "
            f"peak memory of serve {exported['peakRssMB']} MB" + (f" (naive floor {floor} s)" if floor else ""),
            batch["seconds"] < 20,
        ))  # fmt: skip
    return table


def markdown(table, results: list[dict]) -> str:
    machine = results[0]["machine"]
    lines = [
        f"Measured on {results[0]['when']}: {machine['cores']} cores ({machine['cpu']}), {machine['memoryGiB']} GiB, "
        f"Python {machine['python']}, SQLite {machine['sqlite']}, the machine's PostgreSQL with its default settings; "
        "the service with its default settings. "
        "Commands: " + ", ".join(f"`{r['command']}`" + _when(r, results[0]) for r in results) + ".",
        "",
        "| Measure | Target | Measured | Met |",
        "|---|---|---|---|",
    ]
    lines += [f"| {what} | {target} | {measured} | {MET[met]} |" for what, target, measured, met in table]
    lines += ["", f"![benchmarks]({Path(os.path.relpath(CHART, PAGE.parent)).as_posix()})"]
    return "\n".join(lines)


def _when(result: dict, first: dict) -> str:
    """The date of a result measured on another day than the first."""
    return "" if result["when"] == first["when"] else f" (on {result['when']})"


def chart(ingest: dict | None, preloaded: dict | None, reads: dict | None, postgresql: dict | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    if ingest:
        bars = {"insert": (ingest, "insert"), "update": (ingest, "update")}
        if preloaded:
            bars[f"insert, {preloaded['preloadedProfiles'] // 1_000_000}M stored"] = (preloaded, "insert")
        if postgresql:
            bars["PostgreSQL\ninsert"] = (postgresql, "insert")
            bars["PostgreSQL\nupdate"] = (postgresql, "update")
        at = range(len(bars))
        left.bar(
            [x - 0.2 for x in at],
            [r[p]["rowsPerSecond"] / 1000 for r, p in bars.values()],
            width=0.4,
            color="#4477aa",
            label="end to end",
        )
        left.bar(
            [x + 0.2 for x in at],
            [r.get("storeAlone", {}).get(p + "RowsPerSecond", 0) / 1000 for r, p in bars.values()],
            width=0.4,
            color="#bbbbbb",
            label="the store alone (bound)",
        )
        left.set_xticks(list(at), list(bars))
        left.axhline(150, color="#cc3311", linestyle="--", label="insert target 150k")
        left.axhline(120, color="#ee7733", linestyle=":", label="update target 120k")
        if postgresql:
            left.axhline(80, color="#009988", linestyle="--", label="PostgreSQL insert target 80k")
            left.axhline(50, color="#33bbee", linestyle=":", label="PostgreSQL update target 50k")
        left.set_ylabel("thousand rows/s")
        left.set_title("Bulk ingest of the standard batch")
        left.tick_params(axis="x", labelsize=8)
        left.legend(fontsize=7)
    if reads:
        names = ["p50", "p99", "p99.9"]
        for offset, (label, figures) in enumerate((("idle", reads["idle"]), ("batch applying", reads["duringBatch"]))):
            values = [figures["p50Ms"], figures["p99Ms"], figures["p999Ms"]]
            right.bar(
                [i + offset * 0.4 for i in range(3)],
                values,
                width=0.4,
                label=f"{label} ({figures['requestsPerSecond']:,} req/s)",
            )
        right.set_xticks([i + 0.2 for i in range(3)], names)
        right.axhline(10, color="#cc3311", linestyle="--", label="p99 target idle")
        right.axhline(30, color="#ee7733", linestyle=":", label="p99 target during batch")
        right.set_ylabel("ms")
        right.set_title("Profile fetch latency, 1M profiles")
        right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(CHART, dpi=100)


def main() -> None:
    ingest, preloaded, reads = load("ingest"), load("ingest-preload-10000000"), load("reads")
    postgresql, bodies, exported = load("ingest-postgresql"), load("bodies"), load("export")
    postgresql_reads = load("reads-postgresql")
    results = [r for r in (ingest, preloaded, reads, postgresql, bodies, exported, postgresql_reads) if r]
    if not results:
        raise SystemExit("no results yet: run bench/ingest, bench/reads, bench/bodies or bench/export")
    table = rows(ingest, preloaded, reads, postgresql, bodies, exported, postgresql_reads)
    chart(ingest, preloaded, reads, postgresql)
    text = PAGE.read_text()
    if not MARKED.search(text):
        raise SystemExit(f"{PAGE} has no <!-- bench:begin --> ... <!-- bench:end --> markers for the table")
    section = "<!-- bench:begin -->\n" + markdown(table, results) + "\n<!-- bench:end -->"
    PAGE.write_text(MARKED.sub(lambda _: section, text))
    print(markdown(table, results))


if __name__ == "__main__":
    main()
