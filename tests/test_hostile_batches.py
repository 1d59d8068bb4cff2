"""Hostile batch files posted over HTTP: whatever their bytes, every row is accounted for,
exactly as an independent reading of Target's rules says (successfulUpdates + profilesNotFound
+ failedUpdates = batchSize), and nothing makes the service fail."""

import itertools
import os
import re
from urllib.parse import unquote_to_bytes

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support import submit, wait_complete, xml_fields

pytestmark = pytest.mark.slow  # generated batches (hypothesis) over HTTP

BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
LIMITS = {"pcId": 128, "thirdPartyId": 256}

pieces = st.sampled_from([
    b"a", b"Z9", b"-", b".", b"%41", b"%C3%A9", b"%2C", b"%0A", b"%2B", b"%2F", b"+", b"/", b"%", b"%z", b"%zz", b"%4",
    b"%00", b"%E9", b"%C3", b"%A9", b"\xe9", b"\xc3\xa9", b"\xc3", b"\x00", b"\r", b"=", b"&", b'"', b"x" * 130, b"y" * 260,
    b"\xc3%A9", b"%C3\xa9",  # a raw byte that is not UTF-8 alone, completed by an escape
])  # fmt: skip
cells = st.lists(pieces, max_size=4).map(b"".join)
lines = st.one_of(st.lists(cells, min_size=1, max_size=5).map(b",".join), st.sampled_from([b"", b"\r"]))
batches = st.tuples(
    st.sampled_from(["pcId", "thirdPartyId"]),
    st.integers(1, 3),
    st.lists(lines, max_size=12),
    st.booleans(),
    st.sampled_from([1, 2]),
)
clients = (f"hostile{n}" for n in itertools.count())


def row_fails(raw: bytes, key: str, width: int) -> bool:
    """Target's rules for one data line, read independently of the service's parser."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return True
    values = []
    for cell in text.split(","):
        if BAD_ESCAPE.search(cell):
            return True
        try:
            values.append(unquote_to_bytes(cell.replace("+", " ")).decode("utf-8"))
        except UnicodeDecodeError:
            return True
    if len(values) > width or any("\x00" in v for v in values):
        return True
    visitor_id = values[0]
    bad_characters = key == "thirdPartyId" and ("+" in visitor_id or "/" in visitor_id)
    return not visitor_id or len(visitor_id) > LIMITS[key] or bad_characters


def expected_counts(key: str, width: int, rows: list[bytes]) -> tuple[int, int]:
    """(data rows, failing rows) of the file."""
    data = [raw.removesuffix(b"\r") for raw in rows]
    data = [raw for raw in data if raw]
    return len(data), sum(row_fails(raw, key, width) for raw in data)


@settings(max_examples=60, deadline=None, derandomize=os.environ.get("CI") == "true",
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip
@given(batch=batches)
def test_every_row_of_a_hostile_batch_is_accounted_for(http, batch):
    key, names, rows, trailing_newline, version = batch
    header = f"batch={key},{','.join('abc'[:names])}".encode()
    body = b"\n".join([header, *rows]) + (b"\n" if trailing_newline else b"")
    size, failing = expected_counts(key, names + 1, rows)
    answer = submit(http, body, client=next(clients), version=version)
    if size == 0:
        assert answer.status_code == 400 and "Batch is empty" in xml_fields(answer)["message"]
        return
    assert answer.status_code == 200, answer.text
    record = wait_complete(http, xml_fields(answer)["batchId"])
    assert (record["status"], record["batchSize"], record["failedUpdates"]) == ("complete", size, failing)
    assert record["successfulUpdates"] + record["profilesNotFound"] + record["failedUpdates"] == size
    if version == 1:  # every client is new: v1 finds no profile
        assert record["successfulUpdates"] == 0
    else:
        assert record["profilesNotFound"] == 0
