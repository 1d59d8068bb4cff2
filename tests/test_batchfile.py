"""The batch file parser on its own (tests/test_rows.py and tests/test_rejections.py test it
through HTTP): the header, the counting and taking of lines, and what each data line becomes,
a row with its id and attributes or a failed row with its reason."""

import re

import pytest

from profilestore.batchfile import Row, count_rows, decode_cell, parse_header, parse_row, parse_rows, take_lines
from profilestore.errors import BadRequest
from profilestore.model import KEPT_ID_CHARS, KEPT_LINE_BYTES, FailedRow

HEADER = b"batch=pcId,a,b\n"


def refusal(payload: bytes) -> str:
    """The message parse_header refuses the file with."""
    with pytest.raises(BadRequest) as refused:
        parse_header(payload)
    return refused.value.message


def parsed(raw: bytes, header: bytes = HEADER, line: int = 2) -> Row | FailedRow:
    """The line as the worker parses it (parse_rows), checked against parse_row, which must agree."""
    head = parse_header(header)
    (result,) = parse_rows(head, [(line, raw)])
    alone = parse_row(head, line, raw)
    assert (type(result), result) == (type(alone), alone), "parse_rows and parse_row disagree"
    return result


def failure(raw: bytes, header: bytes = HEADER) -> tuple[str, str]:
    """(id, reason) of a line that must fail."""
    result = parsed(raw, header)
    assert isinstance(result, FailedRow), result
    return result.id, result.reason


# parse_header


@pytest.mark.parametrize("key", ["pcId", "thirdPartyId"])
def test_the_first_header_cell_names_the_key_column(key):
    header = parse_header(f"batch={key},a,b\nc1,1,2\n".encode())
    assert (header.key, header.names, header.width) == (key, ("a", "b"), 3)


@pytest.mark.parametrize("key", ["pcid", "mbox3rdPartyId", "tntId", "a", "#pcId"])
def test_any_other_key_column_is_refused_naming_the_two_it_may_be(key):
    message = f"Unknown key column {key!r}: the first header must be pcId or thirdPartyId"
    assert refusal(f"batch={key},a\n".encode()) == message


@pytest.mark.parametrize("payload", [b"", b"pcId,a\nc1,1\n", b"Batch=pcId,a\n", b"\nbatch=pcId,a\n", b"batch"])
def test_a_file_that_does_not_start_with_batch_is_refused_with_an_example(payload):
    assert refusal(payload) == "The batch must start with 'batch=' followed by the header, e.g. batch=pcId,attr1,attr2"


def test_a_header_of_the_key_alone_has_no_attributes():
    header = parse_header(b"batch=thirdPartyId\nc1\n")
    assert (header.key, header.names, header.width) == ("thirdPartyId", (), 1)


def test_a_byte_order_mark_before_the_header_is_skipped():
    payload = b"\xef\xbb\xbfbatch=pcId,a\nc1,1\n"
    header = parse_header(payload)
    assert (header.key, header.names, header.line) == ("pcId", ("a",), b"batch=pcId,a")
    assert payload[header.body_offset :] == b"c1,1\n"


def test_a_crlf_header_line_loses_its_cr_and_the_body_starts_after_its_lf():
    payload = b"batch=pcId,a,b\r\nc1,1,2\r\n"
    header = parse_header(payload)
    assert (header.names, header.line) == (("a", "b"), b"batch=pcId,a,b")
    assert payload[header.body_offset :] == b"c1,1,2\r\n"


@pytest.mark.parametrize("payload", [b"batch=pcId,a", b"batch=pcId,a\n", b"batch=pcId,a\r\n", b"batch=pcId,a\r"])
def test_a_file_of_the_header_alone_has_its_body_at_the_end(payload):
    assert parse_header(payload).body_offset == len(payload)


@pytest.mark.parametrize("payload", [b"batch=pcId,a\rc1,1\rc2,2\r", b"batch=pcId,a\rc1,1"])
def test_a_file_whose_lines_end_with_cr_alone_is_refused_with_the_fix(payload):
    message = "The file's lines end with CR alone (an old Mac text file): save it with LF or CRLF line ends"
    assert refusal(payload) == message


def test_header_names_are_percent_decoded_with_plus_as_a_space():
    header = parse_header(b"batch=pcId,home%20city,first+name,caf%C3%A9,%23tag,50%25\n")
    assert header.names == ("home city", "first name", "café", "#tag", "50%")


@pytest.mark.parametrize(("names", "duplicate"), [("a,b,a", "a"), ("a+b,a%20b", "a b"), ("%61,a", "a")])
def test_a_name_given_twice_however_it_is_written_is_refused(names, duplicate):
    message = f"Duplicate header name {duplicate!r}: each attribute may appear once"
    assert refusal(f"batch=pcId,{names}\n".encode()) == message


EMPTY_CELLS = [("batch=pcId,a,,b", 3), ("batch=pcId,a,", 3), ("batch=", 1), ("batch=,a", 1)]


@pytest.mark.parametrize(("header", "column"), EMPTY_CELLS)
def test_an_empty_header_cell_is_refused_with_its_column(header, column):
    assert refusal(header.encode() + b"\n") == f"Header column {column} is empty"


def test_a_raw_hash_starts_a_comment_column_that_has_no_name():
    header = parse_header(b"batch=thirdPartyId,#reason,a,#note,#note\n")
    assert (header.names, header.width) == ((None, "a", None, None), 5)


@pytest.mark.parametrize(("cell", "problem"), [
    ("a%2", "invalid percent-encoding"),
    ("a%ZZ", "invalid percent-encoding"),
    ("%", "invalid percent-encoding"),
    ("caf%C3", "percent-encoded bytes are not valid UTF-8"),
    ("a%00", "the NUL character (%00) is not allowed"),
])  # fmt: skip
def test_a_header_name_that_cannot_be_decoded_is_refused_with_its_column_and_problem(cell, problem):
    assert refusal(f"batch=pcId,a,{cell}\n".encode()) == f"Header column 3 ({cell!r}): {problem}"


def test_a_header_line_that_is_not_utf8_is_refused():
    assert refusal(b"batch=pcId,caf\xe9\nc1,1\n") == "The header line is not valid UTF-8"


# count_rows


@pytest.mark.parametrize(("body", "rows"), [
    (b"", 0),
    (b"c1,1\nc2,2\n", 2),
    (b"c1,1\nc2,2", 2),  # the last line has no line end
    (b"c1,1\r\nc2,2\r\n", 2),
    (b"c1,1\r\nc2,2", 2),
    (b"c1,1\n\n\nc2,2\n\n", 2),  # blank lines are not rows
    (b"\nc1,1\n", 1),
    (b"c1,1\r\n\r\nc2,2\r\n\r\n", 2),
    (b"c1,1\n\r", 1),  # a last line of a CR alone is blank
    (b"\n\n\r\n", 0),
])  # fmt: skip
def test_the_rows_of_a_file_are_its_lines_after_the_header_that_are_not_blank(body, rows):
    payload = b"batch=pcId,a\n" + body
    assert count_rows(payload, parse_header(payload)) == rows


@pytest.mark.parametrize("blank", [b"", b"\n", b"\r\n"])
def test_rows_are_counted_the_same_across_the_counting_windows(blank):
    rows = 50_000  # some 500 kB: several of count_rows' windows
    payload = b"batch=pcId,a\n" + b"".join(b"c%d,1\n%s" % (i, blank) for i in range(rows))
    assert count_rows(payload, parse_header(payload)) == rows


# take_lines


def test_lines_are_taken_with_their_numbers_in_the_file_skipping_blank_ones():
    payload = b"batch=pcId,a\nc1,1\r\n\r\n\nc2,2\nc3,3"
    lines, offset, line_no = take_lines(payload, parse_header(payload).body_offset, 2, limit=10)
    assert lines == [(2, b"c1,1"), (5, b"c2,2"), (6, b"c3,3")]
    assert (offset, line_no) == (len(payload), 7)


def test_taking_lines_stops_at_the_limit_and_goes_on_where_it_stopped():
    payload = b"batch=pcId,a\nc1,1\n\nc2,2\nc3,3\n"
    first, offset, line_no = take_lines(payload, parse_header(payload).body_offset, 2, limit=2)
    rest, end, last = take_lines(payload, offset, line_no, limit=2)
    assert (first, rest) == ([(2, b"c1,1"), (4, b"c2,2")], [(5, b"c3,3")])
    assert (end, last) == (len(payload), 6)


def test_taking_lines_at_the_end_of_the_file_takes_none():
    payload = b"batch=pcId,a\nc1,1\n"
    assert take_lines(payload, len(payload), 3, limit=10) == ([], len(payload), 3)


def test_a_line_keeps_every_cr_but_its_last():
    payload = b"batch=pcId,a\nc1,a\r\r\n"
    assert take_lines(payload, parse_header(payload).body_offset, 2, limit=10)[0] == [(2, b"c1,a\r")]


# parse_rows and parse_row: rows


@pytest.mark.parametrize(("raw", "visitor_id", "attributes"), [
    (b"c1,1,2", "c1", {"a": "1", "b": "2"}),
    (b"c1,1", "c1", {"a": "1"}),  # a missing trailing field is no attribute at all
    (b"c1", "c1", {}),
    (b"c1,,2", "c1", {"a": "", "b": "2"}),  # an empty cell is an empty value (which the rules skip)
    (b"c1,,", "c1", {"a": "", "b": ""}),
    (b"c1,S%C3%A3o+Paulo,a%20b", "c1", {"a": "São Paulo", "b": "a b"}),
    (b"c1,1%2C5,two%0Alines", "c1", {"a": "1,5", "b": "two\nlines"}),
    (b"c1,1%2c5,two%0alines", "c1", {"a": "1,5", "b": "two\nlines"}),
    (b"c1,%2B,%25", "c1", {"a": "+", "b": "%"}),
    (b"c1,caf\xc3\xa9,\xe6\x9d\xb1\xe4\xba\xac", "c1", {"a": "café", "b": "東京"}),
    (b"c1,=3D,a=b", "c1", {"a": "=3D", "b": "a=b"}),
    (b"c1,%0D,\r", "c1", {"a": "\r", "b": "\r"}),
    (b"c1%2Cx,1", "c1,x", {"a": "1"}),
    (b"c+1,1", "c 1", {"a": "1"}),
    (b"x" * 128 + b",1", "x" * 128, {"a": "1"}),
])  # fmt: skip
def test_a_good_line_becomes_a_row_of_decoded_cells(raw, visitor_id, attributes):
    assert parsed(raw, line=7) == Row(7, visitor_id, attributes, raw)


def test_a_comment_column_is_never_read():
    header = b"batch=thirdPartyId,a,#note,b\n"
    assert parsed(b"c1,1,any %ZZ \x00 %FF,2", header).attributes == {"a": "1", "b": "2"}
    assert parsed(b"c1,1,note", header).attributes == {"a": "1"}


@pytest.mark.parametrize(("raw", "visitor_id"), [(b"c+1,1", "c 1"), (b"x" * 256 + b",1", "x" * 256)])
def test_a_third_party_id_of_256_characters_or_with_a_raw_plus_is_good(raw, visitor_id):
    assert parsed(raw, b"batch=thirdPartyId,a\n").id == visitor_id


# parse_rows and parse_row: failed rows


@pytest.mark.parametrize(("raw", "visitor_id", "reason"), [
    (b"c1,1,2,3", "c1", "4 fields, but the header has 3"),
    (b"c1,1,2,", "c1", "4 fields, but the header has 3"),  # a trailing comma is one more field
    (b"c%2C1,1,2,3", "c,1", "4 fields, but the header has 3"),
    (b",1,2", "", "empty pcId"),
    (b"x" * 129 + b",1", "x" * 129, "pcId is 129 characters, the limit is 128"),
    (b"c1,%ZZ,1", "c1", "column 'a' ('%ZZ'): invalid percent-encoding"),
    (b"c1,1,50%", "c1", "column 'b' ('50%'): invalid percent-encoding"),
    (b"c1,%4,1", "c1", "column 'a' ('%4'): invalid percent-encoding"),
    (b"c1,%C3,1", "c1", "column 'a' ('%C3'): percent-encoded bytes are not valid UTF-8"),
    (b"c1,%FF", "c1", "column 'a' ('%FF'): percent-encoded bytes are not valid UTF-8"),
    (b"c1,\x00,1", "c1", "column 'a' ('\\x00'): the NUL character (%00) is not allowed"),
    (b"c1,a%00b,1", "c1", "column 'a' ('a%00b'): the NUL character (%00) is not allowed"),
    (b"%zz,1", "%zz", "pcId '%zz': invalid percent-encoding"),
    (b"%FF,1", "%FF", "pcId '%FF': percent-encoded bytes are not valid UTF-8"),
    (b"c1%00,1", "c1%00", "pcId 'c1%00': the NUL character (%00) is not allowed"),
    (b"c1\x00,1", "c1%00", "pcId 'c1\\x00': the NUL character (%00) is not allowed"),  # the id as %00, fit for a CSV
])  # fmt: skip
def test_a_bad_line_fails_with_its_id_and_the_reason(raw, visitor_id, reason):
    assert failure(raw) == (visitor_id, reason)


@pytest.mark.parametrize(("raw", "visitor_id"), [
    (b"c1,caf\xe9,1", "c1"),
    (b"c1,\xc3%A9,1", "c1"),  # a raw byte that is not UTF-8 alone, completed by an escape
    (b"caf\xe9,1", ""),
    (b"\xff", ""),
])  # fmt: skip
def test_a_line_that_is_not_utf8_fails_with_the_id_if_that_is_utf8(raw, visitor_id):
    assert failure(raw) == (visitor_id, "the line is not valid UTF-8")


@pytest.mark.parametrize(("raw", "visitor_id", "reason"), [
    (b",1", "", "empty thirdPartyId"),
    (b"a/b,1", "a/b", "thirdPartyId may not contain '+' or '/'"),
    (b"a%2Fb,1", "a/b", "thirdPartyId may not contain '+' or '/'"),
    (b"a%2Bb,1", "a+b", "thirdPartyId may not contain '+' or '/'"),  # a raw + is a space, an encoded one a +
    (b"x" * 257 + b",1", "x" * 257, "thirdPartyId is 257 characters, the limit is 256"),
])  # fmt: skip
def test_a_bad_third_party_id_fails_with_the_reason(raw, visitor_id, reason):
    assert failure(raw, b"batch=thirdPartyId,a\n") == (visitor_id, reason)


def test_a_long_cell_is_quoted_by_its_beginning_in_the_reason():
    cell = "%ZZ" * 30
    assert failure(f"c1,{cell}".encode())[1] == f"column 'a' ({cell[:60] + '…'!r}): invalid percent-encoding"


def test_a_failed_row_keeps_its_line_number_and_the_line_as_sent():
    result = parsed(b"c1,%ZZ,1", line=41)
    assert (result.line, result.raw, result.raw_length) == (41, b"c1,%ZZ,1", 8)


def test_a_failed_row_keeps_the_beginning_of_a_long_line_and_its_length():
    raw = b"c1,%ZZ," + b"x" * (2 * KEPT_LINE_BYTES)
    result = parsed(raw)
    assert (result.raw, result.raw_length) == (raw[:KEPT_LINE_BYTES], len(raw))


def test_a_failed_row_keeps_the_beginning_of_a_long_id():
    length = KEPT_ID_CHARS + 500
    result = parsed(b"x" * length + b",1")
    assert (result.id, result.reason) == ("x" * KEPT_ID_CHARS + "…", f"pcId is {length:,} characters, the limit is 128")


def test_the_lines_of_a_chunk_are_parsed_alone_when_one_of_them_is_malformed():
    lines = [(2, b"c1,1%2C5,x"), (3, b"c2,50%,y"), (5, b"c3,two%0Alines")]
    results = parse_rows(parse_header(HEADER), lines)
    assert results[0] == Row(2, "c1", {"a": "1,5", "b": "x"}, b"c1,1%2C5,x")
    failed = results[1]
    assert (failed.line, failed.id, failed.reason) == (3, "c2", "column 'a' ('50%'): invalid percent-encoding")
    assert results[2] == Row(5, "c3", {"a": "two\nlines"}, b"c3,two%0Alines")


# decode_cell


@pytest.mark.parametrize(("cell", "value"), [
    ("", ""),
    ("plain", "plain"),
    ("a+b", "a b"),
    ("a%20b", "a b"),
    ("%2B", "+"),
    ("%2b%2C%2c", "+,,"),
    ("caf%C3%A9", "café"),
    ("%e2%82%ac", "€"),
    ("café", "café"),
    ("a=b", "a=b"),
    ("%25%41", "%A"),
])  # fmt: skip
def test_a_cell_is_percent_decoded_utf8_with_plus_as_a_space(cell, value):
    assert decode_cell(cell) == value


@pytest.mark.parametrize(("cell", "problem"), [
    ("%", "invalid percent-encoding"),
    ("50%", "invalid percent-encoding"),
    ("%4", "invalid percent-encoding"),
    ("%zz", "invalid percent-encoding"),
    ("%%41", "invalid percent-encoding"),
    ("%C3", "percent-encoded bytes are not valid UTF-8"),
    ("%ED%A0%80", "percent-encoded bytes are not valid UTF-8"),  # a surrogate
    ("%00", "the NUL character (%00) is not allowed"),
    ("a\x00", "the NUL character (%00) is not allowed"),
])  # fmt: skip
def test_a_malformed_cell_is_a_value_error_that_says_why(cell, problem):
    with pytest.raises(ValueError, match=f"^{re.escape(problem)}$"):
        decode_cell(cell)
