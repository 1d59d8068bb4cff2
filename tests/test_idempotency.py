"""Idempotent submits: a batch sent again with its Idempotency-Key is answered, not applied twice."""

import threading

import httpx
import pytest

from support import FakeClock, accepted_id, serve_process, submit, wait_complete, xml_fields
from test_cli import cli

BATCH = "batch=thirdPartyId,city\nc1,Oslo\n"
KEY = {"Idempotency-Key": "crm-nightly-2026-12-01"}


def batch_ids(http, client: str = "demo") -> list[str]:
    return [b["batchId"] for b in http.get("/api/batches", params={"client": client}).json()["batches"]]


def test_the_same_key_and_body_answer_the_first_batch_and_store_nothing(http):
    first = submit(http, BATCH, headers=KEY)
    again = submit(http, BATCH, headers=KEY)
    assert again.status_code == 200 and again.text == first.text
    assert again.headers["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first.headers
    assert batch_ids(http) == [accepted_id(first)]


def test_the_same_key_with_another_body_is_refused_naming_the_first_batch(http):
    first = accepted_id(submit(http, BATCH, headers=KEY))
    refused = submit(http, "batch=thirdPartyId,city\nc1,Rome\n", headers=KEY)
    assert refused.status_code == 409
    fields = xml_fields(refused)
    assert fields["success"] == "false"
    assert "Idempotency-Key 'crm-nightly-2026-12-01' was used at " in fields["message"]
    assert f"for batch {first}, with another file or version; send a new key for a new batch" in fields["message"]
    assert batch_ids(http) == [first]


def test_the_same_key_and_body_as_v1_instead_of_v2_is_another_batch(http):
    accepted_id(submit(http, BATCH, headers=KEY))
    assert submit(http, BATCH, version=1, headers=KEY).status_code == 409


def test_keys_are_per_client(http):
    assert accepted_id(submit(http, BATCH, headers=KEY)) != accepted_id(
        submit(http, BATCH, client="other", headers=KEY)
    )


def test_without_a_key_every_submit_is_a_new_batch(http):
    assert accepted_id(submit(http, BATCH)) != accepted_id(submit(http, BATCH))


def test_a_key_answers_its_batch_for_the_window_then_makes_a_new_one(make_service):
    clock = FakeClock()
    http = make_service(clock=clock, idempotency_hours=2)
    first = accepted_id(submit(http, BATCH, headers=KEY))
    clock.advance(seconds=2 * 3600 - 1)
    assert accepted_id(submit(http, BATCH, headers=KEY)) == first
    clock.advance(seconds=1)
    later = accepted_id(submit(http, BATCH, headers=KEY))
    assert later != first
    assert accepted_id(submit(http, BATCH, headers=KEY)) == later  # the key now answers the new one


def test_a_replay_does_not_count_against_the_daily_quota(make_service):
    http = make_service(daily_rows=1)
    first = accepted_id(submit(http, BATCH, headers=KEY))
    assert accepted_id(submit(http, BATCH, headers=KEY)) == first


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("", "(got 0 characters)"),
        ("k" * 256, "(got 256 characters)"),
        ("tab\there", "(got 8 characters, some not printable)"),
    ],
)
def test_a_malformed_key_is_refused_and_nothing_is_stored(http, key, problem):
    refused = submit(http, BATCH, headers={"Idempotency-Key": key})
    assert refused.status_code == 400
    message = xml_fields(refused)["message"]
    assert message == f"Idempotency-Key must be 1 to 255 printable ASCII characters {problem}"
    assert batch_ids(http) == []


def test_a_key_of_255_characters_is_taken(http):
    assert accepted_id(submit(http, BATCH, headers={"Idempotency-Key": "k" * 255}))


@pytest.mark.slow
def test_parallel_submits_with_one_key_make_exactly_one_batch(store_url, tmp_path):
    with serve_process(store_url, tmp_path) as server, httpx.Client(base_url=server.url, timeout=60) as http:
        answers: list[httpx.Response] = []
        start = threading.Barrier(8)

        def send() -> None:
            start.wait()
            answers.append(submit(http, BATCH, headers=KEY))

        senders = [threading.Thread(target=send) for _ in range(8)]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join()
        assert len({accepted_id(answer) for answer in answers}) == 1
        assert sum(answer.headers.get("Idempotent-Replayed") == "true" for answer in answers) == 7
        assert len(batch_ids(http)) == 1
        assert wait_complete(http, accepted_id(answers[0]))["successfulUpdates"] == 1


@pytest.mark.slow
def test_the_cli_sends_a_key_made_from_the_file_so_a_rerun_is_safe(store_url, tmp_path):
    batch = tmp_path / "batch.txt"
    batch.write_text(BATCH)
    with serve_process(store_url, tmp_path) as server:
        first = cli("upload", str(batch), "--client", "demo", url=server.url)
        assert first.returncode == 0, first.stderr
        batch_id = first.stdout.split("accepted batch ")[1].split()[0]
        rerun = cli("upload", str(batch), "--client", "demo", url=server.url)
        assert rerun.returncode == 0, rerun.stderr
        assert f"already accepted as batch {batch_id}: nothing sent again" in rerun.stdout
        forced = cli("upload", str(batch), "--client", "demo", "--no-idempotency-key", url=server.url)
        assert "accepted batch " in forced.stdout and batch_id not in forced.stdout
        with httpx.Client(base_url=server.url) as http:
            assert len(batch_ids(http)) == 2
