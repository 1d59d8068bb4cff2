"""Submitting a batch in every form a client sends one, and Target's XML answer."""

import gzip
import re

from support import accepted_id, apply, attributes, submit, wait_complete, xml_fields

BATCH = "batch=thirdPartyId,city\nc1,Paris\n"


def test_raw_body_sent_as_a_form_is_read_as_text(http):
    # curl --data-binary sends application/x-www-form-urlencoded; parsed as a form, the `&`
    # and `=` would be lost.
    record = apply(http, "batch=thirdPartyId,shop\nc1,Fish%20%26%20Chips&Co=1\n")
    assert record["successfulUpdates"] == 1
    assert attributes(http, "c1") == {"shop": "Fish & Chips&Co=1"}


def test_answer_has_success_batch_id_status_url_and_message(http):
    fields = xml_fields(submit(http, BATCH))
    assert fields["success"] == "true"
    assert re.fullmatch(r"demo-\d{13}-\d+", fields["batchId"])
    assert fields["batchStatus"] == f"http://profiles.test/m2/demo/v2/profile/batchStatus?batchId={fields['batchId']}"
    assert fields["message"] == "Batch submitted for processing"


def test_v1_status_url_has_no_v2_segment(http):
    fields = xml_fields(submit(http, BATCH, version=1))
    assert "/m2/demo/profile/batchStatus?batchId=" in fields["batchStatus"]


def test_status_url_uses_the_configured_public_url(make_service):
    http = make_service(public_url="https://edge.example.com/")
    url = xml_fields(submit(http, BATCH))["batchStatus"]
    assert url.startswith("https://edge.example.com/m2/demo/v2/profile/batchStatus?batchId=demo-")


def test_batch_ids_count_up(http):
    first, second = accepted_id(submit(http, BATCH)), accepted_id(submit(http, BATCH))
    assert int(second.rsplit("-", 1)[1]) == int(first.rsplit("-", 1)[1]) + 1


def test_multipart_upload_with_one_file(http):
    response = http.post("/m2/demo/v2/profile/batchUpdate", files={"file": ("batch.txt", BATCH.encode())})
    wait_complete(http, accepted_id(response))
    assert attributes(http, "c1") == {"city": "Paris"}


def test_gzip_content_encoding(http):
    response = submit(http, gzip.compress(BATCH.encode()), headers={"Content-Encoding": "gzip"})
    wait_complete(http, accepted_id(response))
    assert attributes(http, "c1") == {"city": "Paris"}


def test_gzip_compressed_multipart_upload(http):
    files = {"file": ("batch.txt", BATCH.encode())}
    request = http.build_request("POST", "/m2/demo/v2/profile/batchUpdate", files=files)
    body = gzip.compress(request.read())
    headers = {"Content-Type": request.headers["Content-Type"], "Content-Encoding": "gzip"}
    response = http.post("/m2/demo/v2/profile/batchUpdate", content=body, headers=headers)
    wait_complete(http, accepted_id(response))
    assert attributes(http, "c1") == {"city": "Paris"}


def test_gz_file_sent_as_is(http):
    # curl --data-binary @batch.txt.gz, with no Content-Encoding header
    response = submit(http, gzip.compress(BATCH.encode()))
    wait_complete(http, accepted_id(response))
    assert attributes(http, "c1") == {"city": "Paris"}


def test_crlf_line_endings_and_byte_order_mark(http):
    record = apply(http, "\ufeffbatch=thirdPartyId,city\r\nc1,Paris\r\nc2,Rome\r\n")
    assert record["successfulUpdates"] == 2
    assert attributes(http, "c2") == {"city": "Rome"}


def test_gzip_of_several_members_is_read_whole(http):
    # Regression: `cat a.gz b.gz` (and what pigz and bgzip write) lost every member but the first.
    body = gzip.compress(b"batch=thirdPartyId,city\nc1,Paris\n") + gzip.compress(b"c2,Rome\nc3,Oslo\n")
    for headers in ({"Content-Encoding": "gzip"}, {}):
        record = wait_complete(http, accepted_id(submit(http, body, headers=headers)))
        assert (record["batchSize"], record["successfulUpdates"]) == (3, 3)
    assert attributes(http, "c3") == {"city": "Oslo"}
