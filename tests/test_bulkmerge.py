"""Two ways of merging a batch's chunk that must agree, for any batches: the lean merge
(bulkmerge.merge_chunk, rows straight into the stored JSON, handing a chunk it cannot decide to
the general merge) and the general merge alone (batches.merge_rows, lean=False). Random
scenarios of batches, single updates, links, clock jumps and purges run step by step on two
fresh stores of the kind under test, one with each worker; every step must answer alike, and
after each step that applies batches the stores must hold the same: each profile attribute by
attribute ([value, modified_ms, order]), its times and merged tntIds, and each batch's record
with its failed rows."""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from dataclasses import asdict
from functools import cache

from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from profilestore import batches
from profilestore.batches import BatchService
from profilestore.config import Settings
from profilestore.profiles import VisitorIds, purge_expired
from profilestore.store import open_store
from profilestore.store.rows import profile_from_row
from profilestore.times import DAY_MS, HOUR_MS
from profilestore.updates import UpdateService
from profilestore.worker import Worker
from support import FakeClock

CLIENT = "demo"
# A few ids, so that rows repeat them within a chunk and across chunks and batches; each is a
# pcId (the tntId of the profile a pcId row makes) and a thirdPartyId, of different profiles.
IDS = ["v0", "v1", "v2"]
NAMES = ["a", "b", "c"]
NEW_TNT_ID = re.compile(r"[0-9a-f]{32}\.01_0")  # made at random when a thirdPartyId row creates a profile


class TickingClock(FakeClock):
    """A fake clock that also moves a millisecond each time it is read, so that the chunks of a
    batch are written at different times; both runs read theirs the same number of times."""

    def __call__(self) -> int:
        self.ms += 1
        return self.ms


# -- scenarios ---------------------------------------------------------------------------------


@cache  # one strategy per cap: made anew for every line, they took half the time of generating
def cells(cap: int) -> st.SearchStrategy[bytes]:
    """A good cell as sent: empty (leave unchanged), short, with encoded `,` and newline; given
    a cap, also long enough to come near the profile size cap, or past it."""
    short = st.sampled_from([b"x", b"Oslo", b"1", b"2", b"%2C", b"a%2Cb", b"%0A", b"l1%0Al2", b"caf%C3%A9",
                             "\u20ac".encode(), b"a+b", b"%25", b"%2c%0a"])  # fmt: skip
    if not cap:
        return st.one_of(st.just(b""), short, short)
    lengths = st.sampled_from([cap // 8, cap // 4, cap // 2, cap - 12, cap])
    # Characters of 3 bytes, sent raw: a value's bytes, not its characters, count against the cap.
    long = st.one_of(lengths.map(lambda n: b"y" * n), lengths.map(lambda n: "\u20ac".encode() * (n // 3)))
    return st.one_of(st.just(b""), short, short, long)


BAD_CELLS = [b"%zz", b"%", b"%C3", b"%00", b"\xff"]
BAD_IDS = [b"v%zz", b"v%00", b"%C3", b"v%2B1", b"v%2F1", b"w" * 300]  # + and / refused in thirdPartyIds only


@cache
def lines(width: int, cap: int) -> st.SearchStrategy[bytes]:
    return _lines(width, cap)


@st.composite
def _lines(draw, width: int, cap: int) -> bytes:
    """A data line of a batch whose header has `width` columns after the key: mostly good
    rows, some of them all empty, and some malformed; cells near the cap if given one."""
    kind = draw(st.sampled_from(["row"] * 10 + ["too many fields", "empty id", "bad cell", "bad id"]))
    visitor_id = draw(st.sampled_from(IDS)).encode()
    good = draw(st.one_of(st.lists(cells(cap), min_size=width, max_size=width), st.lists(cells(cap), max_size=width)))
    if kind == "too many fields":
        return b",".join([visitor_id, *draw(st.lists(cells(cap), min_size=width + 1, max_size=width + 2))])
    if kind == "empty id":
        return b",".join([b"", *(good or [b"x"])])
    if kind == "bad id":
        return b",".join([draw(st.sampled_from(BAD_IDS)), *good])
    if kind == "bad cell" and width:
        at = draw(st.integers(0, width - 1))
        good = (good + [b""] * width)[:width]
        good[at] = draw(st.sampled_from(BAD_CELLS))
    return b",".join([visitor_id, *good])


@st.composite
def batch_files(draw, cap: int, keys: list[str]) -> tuple[int, bytes]:
    """(version, payload): a batch of rows keyed by one of the keys, sometimes with a comment
    column, blank lines and CRLF line ends."""
    key = draw(st.sampled_from(keys))
    names = draw(st.lists(st.sampled_from(NAMES), unique=True, max_size=3))
    if draw(st.integers(0, 5)) == 0:
        names.insert(draw(st.integers(0, len(names))), "#note")
    near_cap = draw(st.sampled_from([0, 0, cap]))  # most chunks are the lean merge's to take
    rows = draw(st.lists(lines(len(names), near_cap), min_size=1, max_size=12))
    end = draw(st.sampled_from([b"\n", b"\n", b"\r\n"]))
    blank_after = draw(st.lists(st.integers(0, 6).map(lambda n: n == 0), min_size=len(rows), max_size=len(rows)))
    body = b"".join(row + end + (end if blank else b"") for row, blank in zip(rows, blank_after))
    header = ",".join([key, *names]).encode()
    return draw(st.sampled_from([1, 2, 2, 2])), b"batch=" + header + end + body


ADVANCES = st.sampled_from([1_000, 1_000, HOUR_MS, HOUR_MS, 14 * DAY_MS, 15 * DAY_MS]).map(lambda ms: ("advance", ms))


def single_writes(cap: int, names: list[str], id_kind: str) -> st.SearchStrategy[tuple]:
    """What may happen between a batch's acceptance and its application: single updates
    (mostly of the batch's own kind of id and attributes, so that its rows meet them), in-page
    writes that link a tntId to a thirdPartyId, pcId profiles merged into others, the clock
    moving on."""
    some_id = st.sampled_from(IDS)
    values = st.sampled_from(["", "u", "u", "u,2", "w" * (cap // 2)])
    any_values = st.dictionaries(st.sampled_from([*NAMES, "d"]), values, max_size=2)
    aimed = st.tuples(st.just("update"), st.just(id_kind), some_id,
                      st.dictionaries(st.sampled_from(names or NAMES), values, min_size=1, max_size=2))  # fmt: skip
    update = st.tuples(st.just("update"), st.sampled_from(["tntId", "thirdPartyId"]), some_id, any_values)
    # (tntId, thirdPartyId) of an in-page write: either or both
    visitor_ids = st.one_of(st.tuples(some_id, st.none()), st.tuples(st.none(), some_id), st.tuples(some_id, some_id))
    visit = st.tuples(visitor_ids, any_values).map(lambda visit: ("visit", *visit[0], visit[1]))
    retire = st.lists(some_id, min_size=2, max_size=2, unique=True).map(lambda pair: ("retire", *pair))
    return st.one_of(aimed, aimed, update, visit, retire, retire, ADVANCES)


@st.composite
def rounds(draw, cap: int, keys: list[str]) -> list[tuple]:
    """One or two batches accepted, maybe single writes and the like, the batches applied, then
    maybe the clock moving on or expired profiles purged."""
    files = draw(st.lists(batch_files(cap, keys), min_size=1, max_size=2))
    key, *names = files[0][1].split(b"\n", 1)[0].removeprefix(b"batch=").rstrip(b"\r").decode().split(",")
    id_kind = "tntId" if key == "pcId" else "thirdPartyId"
    meanwhile = draw(st.lists(single_writes(cap, [n for n in names if n != "#note"], id_kind), max_size=2))
    after = draw(st.lists(st.one_of(ADVANCES, st.just(("purge",))), max_size=1))
    return [*(("submit", *file) for file in files), *meanwhile, ("apply",), *after]


@st.composite
def scenarios(draw) -> tuple[dict, list[tuple]]:
    """(settings, steps): a few rounds, with a small size cap and chunks of a few rows; most
    scenarios key all their batches alike, so that their rows meet the same profiles, and most
    start with a profile for each id, so that single writes find one."""
    cap = draw(st.sampled_from([300, 1200, 1200]))
    overrides = {
        "chunk_rows": draw(st.integers(3, 5)),
        "max_profile_bytes": cap,
        "profile_lifetime_days": draw(st.sampled_from([14, 14, 14, 0])),
    }
    keys = draw(st.sampled_from([["pcId"], ["thirdPartyId"], ["pcId", "thirdPartyId"]]))
    seeds = [("submit", 2, f"batch={key},a,b\nv0,s,s\nv1,s,\nv2,,s\n".encode()) for key in keys]
    start = [*seeds, ("apply",)] if draw(st.integers(0, 3)) else []
    then = draw(st.lists(rounds(cap, keys), min_size=2, max_size=4))
    return overrides, [*start, *(step for steps in then for step in steps)]


# -- running -----------------------------------------------------------------------------------


class Run:
    """One store with its worker, merging by the lean path where it can (lean) or by the general
    one only, on a clock of its own."""

    def __init__(self, url: str, overrides: dict, lean: bool):
        self.clock = TickingClock()
        self.settings = Settings(store=url, **overrides)
        self.store = open_store(url)
        self.worker = Worker(self.store, self.settings, self.clock, sleep=lambda seconds: None)
        if not lean:
            self.worker.batches = BatchService(self.store, self.settings, self.clock, lean=False)
        self.updates = UpdateService(self.store, self.settings, self.clock)

    def do(self, step: tuple) -> object:
        """Run one step; what it answered, or the error it raised."""
        try:
            return self._do(*step)
        except Exception as e:
            return f"{type(e).__name__}: {e}"

    def _do(self, action: str, *args) -> object:
        if action == "submit":
            version, payload = args
            batch, _ = self.worker.batches.submit(CLIENT, version, payload)
            return batch.seq
        if action == "apply":
            applied = 0
            while self.worker.apply_next():
                applied += 1
            return applied
        if action == "update":
            id_kind, visitor_id, values = args
            return self.updates.update_profile(CLIENT, id_kind, visitor_id, values).attributes
        if action == "visit":
            tnt_id, third_party_id, values = args
            return self.updates.update_visitor(CLIENT, VisitorIds(tnt_id, third_party_id), values).attributes
        if action == "retire":  # a pcId profile merged into another, as the Delivery API's linking does
            retired, into = (self.store.profile(CLIENT, "tntId", tnt_id) for tnt_id in args)
            if not (retired and into and (retired.tnt_id, into.tnt_id) == args):
                return "not two profiles"
            self.store.write(CLIENT, lambda tx: tx.retire_profile(CLIENT, *args))
            return "retired"
        if action == "advance":
            self.clock.ms += args[0]
            return None
        assert action == "purge"
        lifetime_ms = self.settings.lifetime_ms
        return purge_expired(self.store, self.clock(), lifetime_ms, 1_000) if lifetime_ms else 0

    def close(self) -> None:
        self.store.close()


def shown(tnt_id: str) -> str:
    return "(a new tntId)" if NEW_TNT_ID.fullmatch(tnt_id) else tnt_id


def snapshot(store) -> dict[str, object]:
    """Every profile of the client, by its thirdPartyId or else its tntId (those a thirdPartyId
    row makes are random), and every batch, by seq."""
    profiles = [profile_from_row(row) for row in store.profile_rows(CLIENT, None, 1_000)]
    assert len(profiles) < 1_000
    found: dict[str, object] = {}
    for p in profiles:
        key = f"thirdPartyId={p.third_party_id}" if p.third_party_id else f"tntId={p.tnt_id}"
        merged = [shown(tnt_id) for tnt_id in store.merged_tnt_ids(CLIENT, p.tnt_id)]
        found[key] = {"tntId": shown(p.tnt_id), "mcvid": p.mcvid, "created_ms": p.created_ms,
                      "modified_ms": p.modified_ms, "active_ms": p.active_ms, "attributes": p.attributes,
                      "merged": merged}  # fmt: skip
    for batch in store.batches(CLIENT, 1_000):
        failed = [(r.line, r.id, r.reason, r.raw, r.raw_length) for r in store.failed_rows(batch.seq)]
        found[f"batch {batch.seq}"] = {**asdict(batch), "failed rows": failed}
    return found


def differences(lean: dict, general: dict) -> str:
    return "\n".join(
        f"{key}:\n  lean:    {lean.get(key)}\n  general: {general.get(key)}"
        for key in sorted(lean.keys() | general.keys())
        if lean.get(key) != general.get(key)
    )


@contextmanager
def counting_lean_chunks():
    """A list that counts the chunks the lean merge merged (rather than handed on) meanwhile."""
    merged: list[int] = [0]
    lean_merge = batches.merge_chunk

    def counted(*args, **kwargs):
        result = lean_merge(*args, **kwargs)
        merged[0] += result is not None
        return result

    batches.merge_chunk = counted
    try:
        yield merged
    finally:
        batches.merge_chunk = lean_merge


def run_both(new_store_url, overrides: dict, steps: list[tuple]) -> tuple[int, int]:
    """Run the steps on a lean store and a general one, comparing what each step answered, and
    the stores after each step that applied batches and after the last; the chunks the lean
    merge merged in each run (in the general one, none)."""
    lean, general = Run(new_store_url(), overrides, lean=True), Run(new_store_url(), overrides, lean=False)
    chunks = {lean: 0, general: 0}
    try:
        with counting_lean_chunks() as merged:
            for number, step in enumerate(steps, start=1):
                answers = []
                for run in (lean, general):
                    before = merged[0]
                    answers.append(run.do(step))
                    chunks[run] += merged[0] - before
                assert answers[0] == answers[1], f"step {number} ({step[0]}) answered differently"
                if step[0] != "apply" and number < len(steps):
                    continue  # the other steps write by rules both runs share
                stored, expected = snapshot(lean.store), snapshot(general.store)
                assert stored == expected, f"after step {number} ({step[0]}):\n{differences(stored, expected)}"
        return chunks[lean], chunks[general]
    finally:
        lean.close()
        general.close()


# Cases random scenarios meet only now and then, run every time.
EURO = "\u20ac".encode()  # 3 bytes
ROOMY = {"chunk_rows": 3, "max_profile_bytes": 1200, "profile_lifetime_days": 14}
# A single update accepted between a batch's acceptance and its application: its attribute stays.
LATER_SINGLE_UPDATE = [("submit", 2, b"batch=thirdPartyId,a,b\nv0,x,y\n"), ("apply",),
                       ("submit", 2, b"batch=thirdPartyId,a,b\nv0,z,z\nv1,z,\n"),
                       ("update", "thirdPartyId", "v0", {"a": "u"}), ("apply",)]  # fmt: skip
# pcId rows naming tntIds merged into one profile, in one chunk: by a plain merge, then by an
# in-page write linking them to a thirdPartyId's profile.
MERGED_TNT_IDS = [("submit", 2, b"batch=pcId,a\nv0,x\nv1,y\n"), ("apply",), ("retire", "v0", "v1"),
                  ("submit", 2, b"batch=pcId,a,b\nv0,,p\nv1,q,\nv0,%2C,\n"), ("apply",),
                  ("submit", 2, b"batch=thirdPartyId,c\nv0,t\n"), ("apply",), ("visit", "v1", "v0", {}),
                  ("submit", 2, b"batch=pcId,a,c\nv0,m,\nv1,,n\nv2,o,o\n"), ("apply",)]  # fmt: skip
# A profile of wide characters near the cap: a row that passes it fails, though its characters
# are far fewer than the cap's bytes.
WIDE_NEAR_THE_CAP = [("submit", 2, b"batch=pcId,a,b\nv0," + EURO * 96 + b"\n"), ("apply",),
                     ("submit", 2, b"batch=pcId,b\nv0," + EURO * 4 + b"\nv1,x\nv0,x\n"), ("apply",)]  # fmt: skip
# Ids again within a chunk and in the next one, new profiles and known ones, some rows all empty.
DUPLICATES = [("submit", 2, b"batch=thirdPartyId,a,b\nv0,x,\nv0,,y\nv1,1,\nv1,2,%2C\nv1,,\nv0,,z\n"),
              ("submit", 2, b"batch=pcId,a,b\nv0,x,\nv0,,y\nv0,z,\nv0,,\nv1,,\n"), ("apply",)]  # fmt: skip
# A profile that expired before the batch's rows reach it: they start a new one.
EXPIRED = [("submit", 2, b"batch=thirdPartyId,a\nv0,x\n"), ("apply",), ("advance", 15 * DAY_MS),
           ("submit", 2, b"batch=thirdPartyId,b\nv0,y\nv1,y\n"), ("apply",)]  # fmt: skip


@settings(max_examples=80, deadline=None, derandomize=os.environ.get("CI") == "true",
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(scenario=scenarios())
@example(scenario=(ROOMY, LATER_SINGLE_UPDATE))
@example(scenario=(ROOMY, MERGED_TNT_IDS))
@example(scenario=({**ROOMY, "max_profile_bytes": 300}, WIDE_NEAR_THE_CAP))
@example(scenario=(ROOMY, DUPLICATES))
@example(scenario=(ROOMY, EXPIRED))
def test_the_lean_merge_leaves_the_store_the_general_merge_leaves(new_store_url, scenario):
    overrides, steps = scenario
    lean_chunks, _ = run_both(new_store_url, overrides, steps)
    event(f"chunks merged by the lean path: {min(lean_chunks, 5)}{'+' if lean_chunks >= 5 else ''}")


def test_the_lean_merge_takes_chunks_of_new_profiles_and_of_known_ones(new_store_url):
    # Else the test above would pass with the lean merge handing every chunk on, or never asked.
    fresh = b"batch=thirdPartyId,a\n" + b"".join(b"c%d,x\n" % i for i in range(6))
    again = b"batch=thirdPartyId,a,b\n" + b"".join(b"c%d,y,%d\n" % (i, i) for i in range(6))
    steps = [("submit", 2, fresh), ("apply",), ("submit", 2, again), ("apply",)]
    assert run_both(new_store_url, ROOMY, steps) == (4, 0)  # two chunks of three rows each time
