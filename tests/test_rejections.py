"""Structural problems refuse the whole request with a clear message, and store nothing."""

import gzip

import pytest
from fastapi.testclient import TestClient

from profilestore.config import Settings
from profilestore.web import create_app
from support import accepted_id, apply, attributes, seq_of, submit, xml_fields

MB = 1024 * 1024


@pytest.fixture
def stored(http):
    """A service holding one applied batch; asserts afterwards that nothing else was stored."""
    first = accepted_id(submit(http, "batch=thirdPartyId,city\nc1,Paris\n"))
    apply(http, "batch=thirdPartyId,city\nc2,Rome\n")
    yield http
    assert attributes(http, "c1") == {"city": "Paris"}
    next_id = accepted_id(submit(http, "batch=thirdPartyId,city\nc3,Oslo\n"))
    assert seq_of(next_id) == seq_of(first) + 2, "a refused batch must not be stored"


def refused(response, status: int, message_part: str) -> None:
    assert response.status_code == status, response.text
    fields = xml_fields(response)
    assert fields["success"] == "false"
    assert message_part in fields["message"]
    assert "batchId" not in fields


def test_missing_batch_prefix(stored):
    refused(submit(stored, "thirdPartyId,city\nc1,Oslo\n"), 400, "must start with 'batch='")


def test_unknown_key_column(stored):
    refused(submit(stored, "batch=email,city\nc1,Oslo\n"), 400, "Unknown key column 'email'")


def test_key_column_is_case_sensitive(stored):
    refused(submit(stored, "batch=PCID,city\nc1,Oslo\n"), 400, "Unknown key column 'PCID'")


def test_duplicate_header_names(stored):
    refused(submit(stored, "batch=pcId,city,zip,city\nc1,Oslo,1,2\n"), 400, "Duplicate header name 'city'")


def test_duplicate_header_names_after_decoding(stored):
    refused(submit(stored, "batch=pcId,my+city,my%20city\nc1,a,b\n"), 400, "Duplicate header name 'my city'")


def test_empty_header_name(stored):
    refused(submit(stored, "batch=pcId,city,,zip\nc1,Oslo\n"), 400, "Header column 3 is empty")


def test_bad_percent_encoding_in_header(stored):
    refused(submit(stored, "batch=pcId,ci%zzty\nc1,Oslo\n"), 400, "Header column 2")


def test_no_data_rows(stored):
    refused(submit(stored, "batch=pcId,city\n\n\r\n"), 400, "Batch is empty")


def test_empty_body(stored):
    refused(submit(stored, ""), 400, "must start with 'batch='")


def test_body_of_50_mb(stored):
    body = b"batch=pcId,city\n" + b"x" * (50 * MB - 16)
    refused(submit(stored, body), 413, "The batch is 52,428,800 bytes or more; it must be under 52,428,800 bytes")


def test_body_of_50_mb_after_decompression(stored):
    body = b"batch=pcId,city\n" + b"1,a\n" * (50 * MB // 4)
    refused(submit(stored, gzip.compress(body), headers={"Content-Encoding": "gzip"}), 413, "after decompression")


def test_more_than_500000_rows(stored):
    body = "batch=pcId,n\n" + "p,1\n" * 500_001
    refused(submit(stored, body), 413, "500,001 data rows; the limit is 500,000")


def test_limits_are_configurable(make_service):
    http = make_service(max_batch_bytes=1000, max_batch_rows=2)
    refused(submit(http, "batch=pcId,n\n1,1\n2,2\n3,3\n"), 413, "the limit is 2 rows")
    refused(submit(http, "batch=pcId,n\n" + "1,1\n" * 300), 413, "it must be under 1,000 bytes")
    accepted_id(submit(http, "batch=pcId,n\n1,1\n2,2\n"))


def test_body_that_is_not_gzip(stored):
    refused(submit(stored, b"batch=pcId\n1\n", headers={"Content-Encoding": "gzip"}), 400, "not valid gzip")


def test_truncated_gzip(stored):
    body = gzip.compress(b"batch=pcId,city\n1,Oslo\n" * 100)
    refused(submit(stored, body[: len(body) // 2], headers={"Content-Encoding": "gzip"}), 400, "truncated")


def test_unsupported_content_encoding(stored):
    refused(submit(stored, b"batch=pcId\n1\n", headers={"Content-Encoding": "br"}), 415, "Unsupported Content-Encoding")


def test_multipart_with_two_files(stored):
    files = [("a", ("a.txt", b"batch=pcId\n1\n")), ("b", ("b.txt", b"batch=pcId\n2\n"))]
    refused(stored.post("/m2/demo/v2/profile/batchUpdate", files=files), 400, "one file part")


def test_multipart_without_a_file(stored):
    response = stored.post(
        "/m2/demo/v2/profile/batchUpdate",
        content=b'--xx\r\nContent-Disposition: form-data; name="batch"\r\n\r\npcId\n1\n\r\n--xx--\r\n',
        headers={"Content-Type": "multipart/form-data; boundary=xx"},
    )
    refused(response, 400, "no file part")


def test_invalid_client_code(stored):
    refused(submit(stored, "batch=pcId,n\n1,1\n", client="bad client!"), 400, "Invalid client code")


def test_nul_in_a_header_name(stored):
    refused(
        submit(stored, "batch=pcId,ci%00ty\nc1,Oslo\n"),
        400,
        "Header column 2 ('ci%00ty'): the NUL character (%00) is not allowed",
    )


def test_lines_ended_by_cr_alone_are_refused_naming_the_line_ends(stored):
    refused(submit(stored, b"batch=pcId,city\rp1,Oslo\rp2,Rome\r"), 400,
            "The file's lines end with CR alone (an old Mac text file): save it with LF or CRLF line ends")  # fmt: skip


@pytest.mark.parametrize("trailer", [b"junk", b"\x00" * 8])
def test_bytes_after_the_gzip_data_are_refused_naming_them(stored, trailer):
    body = gzip.compress(b"batch=pcId,city\np1,Oslo\n") + trailer
    for headers in ({"Content-Encoding": "gzip"}, {}):
        refused(submit(stored, body, headers=headers), 400,
                f"{len(trailer)} bytes follow the end of the gzip data; send the gzip file alone")  # fmt: skip


def test_an_unexpected_error_is_a_500_in_the_paths_format(new_store_url):
    app = create_app(Settings(store=new_store_url()))

    def fail() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/m2/{client}/fails", fail)
    app.add_api_route("/api/fails", fail)
    with TestClient(app, raise_server_exceptions=False) as http:
        target = http.get("/m2/demo/fails")
        assert target.status_code == 500 and target.headers["content-type"].startswith("application/xml")
        assert xml_fields(target) == {"success": "false", "message": "The service failed on this request; the error is in its log"}  # fmt: skip
        ours = http.get("/api/fails")
        assert ours.status_code == 500
        assert ours.json() == {"status": 500, "message": "The service failed on this request; the error is in its log"}
