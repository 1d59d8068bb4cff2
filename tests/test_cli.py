"""The `profilestore` command against a real service."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from support import accepted_id, attributes, eventually, serve_process, submit, wait_complete


def cli(*args: str, url: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PROFILESTORE_URL": url, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "profilestore", *args], env=env, capture_output=True, text=True)


def test_upload_wait_status_and_profile_get(store_url, tmp_path):
    batch = tmp_path / "batch.txt"
    batch.write_text("batch=thirdPartyId,city\ncrm-1,Oslo\n,Rome\n")
    with serve_process(store_url, tmp_path) as server:
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


@pytest.mark.slow
def test_upload_v1_counts_unknown_profiles(store_url, tmp_path):
    batch = tmp_path / "batch.txt"
    batch.write_text("batch=thirdPartyId,city\nnobody,Oslo\n")
    with serve_process(store_url, tmp_path) as server:
        uploaded = cli("upload", str(batch), "--client", "demo", "--v1", "--wait", url=server.url)
        assert "1 profiles not found" in uploaded.stdout


@pytest.mark.slow
def test_upload_of_a_bad_file_shows_the_reason(store_url, tmp_path):
    batch = tmp_path / "batch.txt"
    batch.write_text("pcId,city\n1,Oslo\n")
    with serve_process(store_url, tmp_path) as server:
        uploaded = cli("upload", str(batch), "--client", "demo", url=server.url)
        assert uploaded.returncode == 1
        assert "400: The batch must start with 'batch='" in uploaded.stderr


@pytest.mark.slow
def test_status_of_an_unknown_batch(store_url, tmp_path):
    with serve_process(store_url, tmp_path) as server:
        shown = cli("status", "demo-1700000000000-9", url=server.url)
        assert shown.returncode == 1 and "404: No batch found" in shown.stderr


@pytest.mark.slow
def test_a_separate_worker_process_applies_batches(store_url, tmp_path):
    with serve_process(store_url, tmp_path, extra_args=["--no-worker"]) as server:
        http = httpx.Client(base_url=server.url)
        batch_id = accepted_id(submit(http, "batch=thirdPartyId,city\ncrm-1,Oslo\n"))
        assert http.get(f"/api/batches/{batch_id}").json()["state"] == "queued"
        worker = subprocess.Popen([sys.executable, "-m", "profilestore", "worker", "--store", store_url])
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


@pytest.mark.slow
def test_tokens_and_auth_from_the_command_line(store_url, tmp_path):
    batch = tmp_path / "batch.txt"
    batch.write_text("batch=thirdPartyId,city\ncrm-1,Oslo\n")
    with serve_process(store_url, tmp_path, {"PROFILESTORE_ADMIN_KEY": "adm"}) as server:
        created = cli("token", "create", "demo", "--days", "30", "--admin-key", "adm", url=server.url)
        assert created.returncode == 0, created.stderr
        secret = created.stdout.strip().splitlines()[-1]
        assert secret.startswith("pst_")
        turned_on = cli("client", "set", "demo", "--auth", "--daily-rows", "100", "--admin-key", "adm", url=server.url)
        assert '"authRequired": true' in turned_on.stdout and '"dailyRows": 100' in turned_on.stdout

        refused = cli("upload", str(batch), "--client", "demo", url=server.url)
        assert refused.returncode == 1 and "401: Client demo requires authentication" in refused.stderr
        uploaded = cli("upload", str(batch), "--client", "demo", "--wait", "--token", secret, url=server.url)
        assert "1 applied" in uploaded.stdout, uploaded.stderr
        fetched = cli(
            "profile", "get", "crm-1", "--client", "demo", "--third-party-id", "--token", secret, url=server.url
        )
        assert '"value": "Oslo"' in fetched.stdout

        listed = cli("token", "list", "demo", "--admin-key", "adm", url=server.url)
        token_id = listed.stdout.split()[0]
        assert "live" in listed.stdout and secret not in listed.stdout
        assert cli("token", "revoke", "demo", token_id, "--admin-key", "adm", url=server.url).returncode == 0
        revoked = cli(
            "profile", "get", "crm-1", "--client", "demo", "--third-party-id", "--token", secret, url=server.url
        )
        assert "403: The token was revoked" in revoked.stderr
        assert "401: The admin API needs" in cli("token", "list", "demo", url=server.url).stderr


def test_serve_refuses_a_bad_ingestion_window(tmp_path):
    env = {**os.environ, "PROFILESTORE_INGEST_WINDOWS": "weekdays 9-5"}
    run = subprocess.run([sys.executable, "-m", "profilestore", "serve", "--data-dir", str(tmp_path)], env=env,
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert run.returncode == 1
    assert "PROFILESTORE_INGEST_WINDOWS: Bad ingestion window 'weekdays 9-5'" in run.stderr


def _children(pid: int) -> list[int]:
    """The process's children, started by any of its threads."""
    return [int(p) for task in Path(f"/proc/{pid}/task").iterdir() for p in (task / "children").read_text().split()]


def _gone(pid: int) -> bool:
    """Whether the process has exited (it may be a zombie its parent has not reaped yet)."""
    try:
        return "State:\tZ" in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True


def test_a_worker_stops_cleanly_however_many_signals_arrive_at_once(store_url):
    # Regression: signal handlers that set Events deadlocked when a second signal came in
    # while the first was being handled, leaving a worker that never stopped.
    worker = subprocess.Popen([sys.executable, "-m", "profilestore", "worker", "--store", store_url],
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert "worker on store" in worker.stdout.readline()
    for _ in range(200):
        worker.send_signal(signal.SIGUSR1)
    worker.send_signal(signal.SIGTERM)
    worker.send_signal(signal.SIGUSR1)
    assert worker.wait(timeout=30) == 0


@pytest.mark.slow
def test_the_worker_of_serve_dies_with_it_and_is_replaced_if_it_dies_alone(store_url, tmp_path):
    with serve_process(store_url, tmp_path) as server:
        http = httpx.Client(base_url=server.url)
        (first,) = _children(server.process.pid)
        os.kill(first, signal.SIGKILL)
        eventually(lambda: _gone(first), f"saw the killed worker {first} exit")
        batch_id = accepted_id(submit(http, "batch=thirdPartyId,city\ncrm-1,Oslo\n"))
        assert wait_complete(http, batch_id)["successfulUpdates"] == 1, "a new worker applied it"
        (second,) = _children(server.process.pid)
        server.kill()
        eventually(lambda: _gone(second), f"saw worker {second} exit after serve's SIGKILL: it was left behind")
