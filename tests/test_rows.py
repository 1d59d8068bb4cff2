"""Row rules: what each cell means, and rows that fail alone with their line and reason."""

import re

from support import apply, attributes


def failures(http, record) -> list[tuple[int, str, str]]:
    rows = http.get(f"/api/batches/{record['batchId']}/failures").json()["failedRows"]
    return [(r["line"], r["id"], r["reason"]) for r in rows]


def test_ragged_rows_and_empty_cells_leave_attributes_unchanged(http):
    apply(http, "batch=thirdPartyId,a,b,c\nc1,1,2,3\n")
    apply(http, "batch=thirdPartyId,a,b,c\nc1,,20\n")
    assert attributes(http, "c1") == {"a": "1", "b": "20", "c": "3"}


def test_names_and_values_are_percent_decoded_utf8_with_plus_as_space(http):
    apply(http, "batch=thirdPartyId,home%20city,note\nc1,S%C3%A3o+Paulo,caf%C3%A9+%2B+cr%C3%A8me\n")
    assert attributes(http, "c1") == {"home city": "São Paulo", "note": "café + crème"}


# Cells are decoded a chunk at a time, with escaped separators standing in for themselves and
# `=` escaped for the decoder: these values must come out exactly as sent, whether the chunk's
# lines are decoded together or, when one of them is malformed, one by one.
TRICKY = {
    "a%2Cb": ("Shoes%2C Bags", "Shoes, Bags"),
    "a%0Ab": ("two%0alines%0D%0A", "two\nlines\r\n"),
    "x=1": ("=3D%3d=", "=3D=="),
    "q": ("%c3%a9t%C3%A9+%2b+%25", "été + %"),
    "t": ("back%5Cslash%09tab%5Cn", "back\\slash\ttab\\n"),  # what PostgreSQL's text COPY escapes
}


def tricky_batch(bad_line: str = "") -> str:
    lines = [f"{visitor_id},{cell}" for visitor_id, (cell, _) in TRICKY.items()]
    return "batch=thirdPartyId,v\n" + "\n".join(lines + ([bad_line] if bad_line else [])) + "\n"


def test_escaped_commas_newlines_and_equals_signs_are_data(http):
    assert apply(http, tricky_batch())["successfulUpdates"] == len(TRICKY)
    for visitor_id, (_, value) in TRICKY.items():
        assert attributes(http, visitor_id) == {"v": value}  # the id as sent is percent-encoded: fit for a URL


def test_a_malformed_line_leaves_the_other_lines_of_its_chunk_decoded_the_same(http):
    record = apply(http, tricky_batch(bad_line="bad,50%"))
    assert (record["successfulUpdates"], record["failedUpdates"]) == (len(TRICKY), 1)
    assert failures(http, record) == [(len(TRICKY) + 2, "bad", "column 'v' ('50%'): invalid percent-encoding")]
    for visitor_id, (_, value) in TRICKY.items():
        assert attributes(http, visitor_id) == {"v": value}  # the id as sent is percent-encoded: fit for a URL


def test_raw_utf8_and_raw_ampersand_are_data(http):
    record = apply(http, "batch=thirdPartyId,city,shop\nc1,東京,A&B\nc2,Zürich,C\n")
    assert record["successfulUpdates"] == 2
    assert attributes(http, "c1") == {"city": "東京", "shop": "A&B"}
    assert attributes(http, "c2") == {"city": "Zürich", "shop": "C"}


def test_names_and_values_keep_their_case(http):
    apply(http, "batch=thirdPartyId,Tier,tier\nc1,Gold,gold\n")
    assert attributes(http, "c1") == {"Tier": "Gold", "tier": "gold"}


def test_bad_rows_fail_alone_with_line_and_reason(http):
    long_id = "x" * 257
    batch = (
        "batch=thirdPartyId,city\n"
        "ok1,Oslo\n"  # line 2
        ",Rome\n"  # 3: empty id
        f"{long_id},Rome\n"  # 4: too long
        "a%2Bb,Rome\n"  # 5: + after decoding
        "a%2Fb,Rome\n"  # 6: / after decoding
        "bad,R%zzome\n"  # 7: invalid percent-encoding
        "wide,Rome,extra\n"  # 8: more fields than the header
        "ok2,Bergen\n"  # 9
    )
    record = apply(http, batch)
    assert (record["successfulUpdates"], record["failedUpdates"], record["consumedCount"]) == (2, 6, 8)
    assert failures(http, record) == [
        (3, "", "empty thirdPartyId"),
        (4, long_id, "thirdPartyId is 257 characters, the limit is 256"),
        (5, "a+b", "thirdPartyId may not contain '+' or '/'"),
        (6, "a/b", "thirdPartyId may not contain '+' or '/'"),
        (7, "bad", "column 'city' ('R%zzome'): invalid percent-encoding"),
        (8, "wide", "3 fields, but the header has 2"),
    ]
    assert attributes(http, "ok1") == {"city": "Oslo"} and attributes(http, "ok2") == {"city": "Bergen"}
    assert attributes(http, "bad") is None


def test_thirdpartyid_of_256_characters_is_fine(http):
    record = apply(http, f"batch=thirdPartyId,city\n{'y' * 256},Oslo\n")
    assert record["successfulUpdates"] == 1


def test_percent_encoded_bytes_that_are_not_utf8_fail_the_row(http):
    record = apply(http, "batch=pcId,city\np1,%E9t%E9\np2,ok\n")
    assert failures(http, record) == [(2, "p1", "column 'city' ('%E9t%E9'): percent-encoded bytes are not valid UTF-8")]


def test_raw_bytes_that_are_not_utf8_fail_the_row_under_its_id(http):
    body = b"batch=pcId,city\np1,\xe9t\xe9\np2,ok\n\xe9,x\n"
    record = apply(http, body)
    assert failures(http, record) == [(2, "p1", "the line is not valid UTF-8"), (4, "", "the line is not valid UTF-8")]
    assert attributes(http, "p2", by="tntId") == {"city": "ok"}


def test_blank_lines_are_not_rows_but_keep_line_numbers(http):
    record = apply(http, "batch=pcId,city\n\np1,Oslo\n\n,Rome\n")
    assert record["batchSize"] == 2
    assert failures(http, record) == [(5, "", "empty pcId")]


def test_v1_updates_existing_profiles_and_counts_the_others_as_not_found(http):
    apply(http, "batch=thirdPartyId,city\nknown,Oslo\n", version=2)
    record = apply(http, "batch=thirdPartyId,city\nknown,Rome\nunknown,Paris\n", version=1)
    assert (record["successfulUpdates"], record["profilesNotFound"], record["failedUpdates"]) == (1, 1, 0)
    assert attributes(http, "known") == {"city": "Rome"}
    assert attributes(http, "unknown") is None


def test_v1_by_pcid_does_not_create_profiles(http):
    record = apply(http, "batch=pcId,city\nnew-tnt,Oslo\n", version=1)
    assert record["profilesNotFound"] == 1
    assert attributes(http, "new-tnt", by="tntId") is None


def test_v2_pcid_row_creates_a_profile_with_that_tntid(http):
    apply(http, "batch=pcId,city\nabc.28_0,Oslo\n")
    assert attributes(http, "abc.28_0", by="tntId") == {"city": "Oslo"}


def test_v2_thirdpartyid_row_creates_a_profile_with_a_new_tntid_in_targets_shape(http):
    apply(http, "batch=thirdPartyId,city\ncrm-1,Oslo\n")
    profile = http.get("/api/profiles/thirdPartyId/crm-1", params={"client": "demo"}).json()
    assert profile["thirdPartyId"] == "crm-1"
    assert re.fullmatch(r"[0-9a-f]{32}\.\d{2}_0", profile["tntId"])
    assert attributes(http, profile["tntId"], by="tntId") == {"city": "Oslo"}


def test_v2_row_with_only_an_id_creates_an_empty_profile(http):
    record = apply(http, "batch=thirdPartyId,city\nc1\nc2,\n")
    assert record["successfulUpdates"] == 2
    assert attributes(http, "c1") == {} and attributes(http, "c2") == {}


def test_clients_are_separate(http):
    apply(http, "batch=thirdPartyId,city\nc1,Oslo\n", client="acme")
    assert attributes(http, "c1", client="acme") == {"city": "Oslo"}
    assert attributes(http, "c1", client="demo") is None


def test_comment_columns_are_ignored(http):
    apply(http, "batch=thirdPartyId,city,#note\nc1,Oslo,whatever\n")
    assert attributes(http, "c1") == {"city": "Oslo"}


def test_percent_encoded_hash_is_a_real_name(http):
    apply(http, "batch=thirdPartyId,%23tag\nc1,vip\n")
    assert attributes(http, "c1") == {"#tag": "vip"}


def test_nul_characters_fail_their_row_alone(http):
    batch = "batch=thirdPartyId,city\nc1,Oslo\nc2,Os%00lo\nc3,Os\x00lo\nc%004,Rome\nc\x005,Rome\nc5,Bergen\n"
    record = apply(http, batch)
    assert (record["successfulUpdates"], record["failedUpdates"]) == (2, 4)
    assert failures(http, record) == [
        (3, "c2", "column 'city' ('Os%00lo'): the NUL character (%00) is not allowed"),
        (4, "c3", "column 'city' ('Os\\x00lo'): the NUL character (%00) is not allowed"),
        (5, "c%004", "thirdPartyId 'c%004': the NUL character (%00) is not allowed"),
        (6, "c%005", "thirdPartyId 'c\\x005': the NUL character (%00) is not allowed"),
    ]
    assert attributes(http, "c1") == {"city": "Oslo"} and attributes(http, "c5") == {"city": "Bergen"}


def test_a_raw_byte_that_is_not_utf8_does_not_pass_by_joining_an_escape(http):
    # Regression: raw \xc3 followed by %A9 decoded to "é" on the fast path.
    record = apply(http, b"batch=pcId,city\np1,\xc3%A9\np2,Z%C3%BCrich\n")
    assert failures(http, record) == [(2, "p1", "the line is not valid UTF-8")]
    assert attributes(http, "p2", by="tntId") == {"city": "Zürich"}


def test_a_pcid_longer_than_a_tnt_id_can_be_fails_the_row(http):
    record = apply(http, f"batch=pcId,city\n{'p' * 129},Oslo\n{'p' * 128},Rome\n")
    assert failures(http, record) == [(2, "p" * 129, "pcId is 129 characters, the limit is 128")]


def test_a_reason_quotes_only_the_beginning_of_a_long_cell(http):
    record = apply(http, f"batch=pcId,city\np1,{'a' * 5000}%zz\n")
    assert failures(http, record) == [(2, "p1", f"column 'city' ('{'a' * 60}…'): invalid percent-encoding")]


def test_a_failed_rows_id_is_kept_decoded_whatever_failed(http):
    record = apply(http, "batch=thirdPartyId,city\nc%31,Oslo,extra\n")
    assert failures(http, record) == [(2, "c1", "3 fields, but the header has 2")]
