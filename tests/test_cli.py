"""The `profilestore` command against a real service."""

import os
import subprocess
import sys

import httpx

from support import accepted_id, attributes, serve_process, submit, wait_complete


def cli(*args: str, url: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PROFILESTORE_URL": url, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "profilestore", *args], env=env, capture_output=True, text=True)


def test_upload_wait_status_and_profile_get(tmp_path):
    batch = tmp_path / "batch.txt"
    batch.write_text("batch=thirdPartyId,city\ncrm-1,Oslo\n,Rome\n")
    with serve_process(tmp_path / "data") as server:
        uploaded = cli("upload", str(batch), "--client", "demo", "--wait", url=server.url)
        assert uploaded.returncode == 0, uploaded.stderr
        batch_id = uploaded.stdout.split("accepted batch ")[1].split()[0]
        assert "complete" in uploaded.stdout
        assert "2 rows consumed: 1 applied, 0 profiles not found, 1 failed" in uploaded.stdout
        assert f"/api/batches/{batch_id}/failures.csv" in uploaded.stdout

        shown = cli("status", batch_id, url=server.url)
        assert shown.returncode == 0 and f"{batch_id}: complete" in shown.stdout

        fetched = cli("profile", "get", "crm-1", "--client", "demo", "--third-party-id", url=server.url)
        assert fetched.returncode == 0 and '"value": "Oslo"' in fetched.stdout


def test_upload_v1_counts_unknown_profiles(tmp_path):
    batch = tmp_path / "batch.txt"
    batch.write_text("batch=thirdPartyId,city\nnobody,Oslo\n")
    with serve_process(tmp_path / "data") as server:
        uploaded = cli("upload", str(batch), "--client", "demo", "--v1", "--wait", url=server.url)
        assert "1 profiles not found" in uploaded.stdout


def test_upload_of_a_bad_file_shows_the_reason(tmp_path):
    batch = tmp_path / "batch.txt"
    batch.write_text("pcId,city\n1,Oslo\n")
    with serve_process(tmp_path / "data") as server:
        uploaded = cli("upload", str(batch), "--client", "demo", url=server.url)
        assert uploaded.returncode == 1
        assert "400: The batch must start with 'batch='" in uploaded.stderr


def test_status_of_an_unknown_batch(tmp_path):
    with serve_process(tmp_path / "data") as server:
        shown = cli("status", "demo-1700000000000-9", url=server.url)
        assert shown.returncode == 1 and "404: No batch found" in shown.stderr


def test_a_separate_worker_process_applies_batches(tmp_path):
    data_dir = tmp_path / "data"
    with serve_process(data_dir, extra_args=["--no-worker"]) as server:
        http = httpx.Client(base_url=server.url)
        batch_id = accepted_id(submit(http, "batch=thirdPartyId,city\ncrm-1,Oslo\n"))
        assert http.get(f"/api/batches/{batch_id}").json()["state"] == "queued"
        worker = subprocess.Popen([sys.executable, "-m", "profilestore", "worker", "--data-dir", str(data_dir)])
        try:
            assert wait_complete(http, batch_id)["successfulUpdates"] == 1
            assert attributes(http, "crm-1") == {"city": "Oslo"}
        finally:
            worker.terminate()
            assert worker.wait(timeout=30) == 0


def test_unreachable_service_is_a_clear_error(tmp_path):
    shown = cli("status", "demo-1700000000000-9", url="http://127.0.0.1:9")
    assert shown.returncode == 1
    assert "Cannot reach profilestore at http://127.0.0.1:9" in shown.stderr
