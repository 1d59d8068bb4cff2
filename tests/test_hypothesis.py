"""Two ways of doing the same thing that must agree, for any input: parse_rows, which
percent-decodes a chunk's lines all at once in C (binascii) and falls back to one line at a
time, and parse_row, which decodes one line cell by cell."""

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from profilestore.batchfile import parse_header, parse_row, parse_rows

# Pieces of cells that decode; then pieces that make a line fail, or that the fast decoder
# must not take for what they look like (escaped separators, `=`, which quoted-printable uses).
good_pieces = st.one_of(
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters="%,"), max_size=6),
    st.text(st.characters(codec="utf-8", exclude_characters="%,\n\x00"), max_size=4),
    st.integers(0x01, 0x7F).map(lambda byte: f"%{byte:02X}"),
    st.sampled_from(["%C3%A9", "%c3%a9", "%E2%82%AC", "%2C", "%2c", "%0A", "%0a", "%0D", "+", "%2B", "%2F", "/", "=",
                     "=3D", "%3D", "=41", "%25", "\r", "\t", "x" * 130, "y" * 260]),
).map(lambda piece: piece.encode() if isinstance(piece, str) else piece)  # fmt: skip
bad_pieces = st.one_of(
    st.integers(0x80, 0xFF).map(lambda byte: f"%{byte:02x}".encode()),  # alone, not UTF-8
    st.integers(0x80, 0xFF).map(lambda byte: bytes([byte])),
    st.sampled_from([b"%", b"%4", b"%G1", b"%zz", b"%%41", b"%00", b"\x00", b"\xc3%A9", b"%C3\xa9", b"\xed\xa0\x80"]),
)
any_pieces = st.one_of(good_pieces, bad_pieces)


def lines_of(pieces) -> st.SearchStrategy[bytes]:
    """Non-blank lines (take_lines never gives a blank one, nor one with a LF) of 1 to 6 cells."""
    cells = st.lists(pieces, max_size=4).map(b"".join)
    return st.lists(cells, min_size=1, max_size=6).map(b",".join).filter(lambda line: line not in (b"", b"\r"))


headers = st.tuples(
    st.sampled_from(["pcId", "thirdPartyId"]),
    st.lists(st.sampled_from(["a", "b", "c", "#note", "#more"]), unique=True, max_size=4),
).map(lambda header: parse_header(f"batch={','.join([header[0], *header[1]])}\n".encode()))
# Half the chunks have only lines that decode, so that the chunk is decoded all at once.
chunks = st.one_of(st.lists(lines_of(good_pieces), min_size=1, max_size=8),
                   st.lists(lines_of(any_pieces), min_size=1, max_size=8))  # fmt: skip


@settings(max_examples=300, deadline=None, derandomize=os.environ.get("CI") == "true")
@given(header=headers, raws=chunks)
def test_a_chunk_decoded_at_once_gives_each_line_what_decoding_it_cell_by_cell_gives(header, raws):
    lines = [(2 + 3 * i, raw) for i, raw in enumerate(raws)]  # line numbers with gaps, as blank lines leave
    together = parse_rows(header, lines)
    alone = [parse_row(header, line_no, raw) for line_no, raw in lines]
    assert [(type(r), r) for r in together] == [(type(r), r) for r in alone]
