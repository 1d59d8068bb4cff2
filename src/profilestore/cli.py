"""The `profilestore` command: run the service or a worker, and talk to a running service."""

from __future__ import annotations

import hashlib
import logging
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from xml.etree import ElementTree

import click
import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .config import Settings
from .limits import parse_windows
from .store import migrate, open_store
from .store.base import Store, StoreError
from .worker import Worker, WorkerProcess, WorkerThread, die_with, run_worker_process, spare_the_collector

console = Console()
DEFAULT_URL = "http://127.0.0.1:8080"
service_url = click.option(
    "--url", envvar="PROFILESTORE_URL", default=DEFAULT_URL, show_default=True, help="The running service."
)
client_token = click.option(
    "--token", envvar="PROFILESTORE_TOKEN", help="Profile API token, for a client that requires authentication."
)
admin_key = click.option("--admin-key", envvar="PROFILESTORE_ADMIN_KEY", help="The service's admin key, if it has one.")
store_options = [
    click.option("--store", help="Store URL, e.g. sqlite:///data/profilestore.db (default: a file in --data-dir)."),
    click.option("--data-dir", type=click.Path(path_type=Path), help="Folder of the embedded store."),
]


def with_store_options(fn):
    for option in reversed(store_options):
        fn = option(fn)
    return fn


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages.")
def main(verbose: bool) -> None:
    """A self-hosted visitor profile store that speaks Adobe Target's Profile APIs."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.DEBUG if verbose else logging.WARNING)  # not every request


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@with_store_options
@click.option("--public-url", help="Base URL of the batchStatus links (default: the URL the client called).")
@click.option("--no-worker", is_flag=True, help="Only serve HTTP; batches are applied by `profilestore worker`.")
def serve(host, port, store, data_dir, public_url, no_worker) -> None:
    """Run the HTTP service, and the worker that applies batches in a child process."""
    from .web import create_app, server

    settings = _checked(
        Settings.from_env(
            store=store, data_dir=data_dir, public_url=public_url, run_worker=False if no_worker else None
        )
    )
    _opened(settings).close()  # a store problem stops serve here, with its message
    console.print(f"profilestore on http://{host}:{port} with store {settings.store_url}")
    # The worker gets a process of its own: in this one, its parsing would hold the GIL that the
    # HTTP server needs, and reads would wait (p99 of fetches: 110 ms with it here; see docs/notes.md).
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # see WorkerProcess
    child = WorkerProcess(settings.store_url, settings.worker_stall_seconds) if settings.run_worker else None
    app = create_app(replace(settings, run_worker=False), worker=child)
    spare_the_collector()  # an export decodes millions of profiles, as the worker does (bench/export)
    try:
        server.run(app, host, port, settings)
    finally:
        if child:
            child.stop()


@main.command()
@with_store_options
@click.option("--parent-pid", type=int, hidden=True, help="Stop when this process (serve) dies.")
@click.option("--heartbeat-fd", type=int, hidden=True, help="Report to serve through this pipe.")
def worker(store, data_dir, parent_pid, heartbeat_fd) -> None:
    """Apply accepted batches (for a service started with --no-worker). Exits with status 70
    if its worker loop dies or stalls, for a supervisor to start it again."""
    # Signals are taken one at a time by the main thread (sigtimedwait), never by a handler: a
    # handler that sets an Event can be re-entered by the next signal while it holds the
    # Event's lock, and deadlock. Blocked before any thread starts, so every thread inherits it.
    signals = {signal.SIGINT, signal.SIGTERM, signal.SIGUSR1}  # SIGUSR1: `serve` accepted a batch
    signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    signal.signal(signal.SIGUSR1, signal.SIG_DFL)  # serve starts us with it ignored; blocked, it waits
    if parent_pid:
        die_with(parent_pid)
    settings = _checked(Settings.from_env(store=store, data_dir=data_dir))
    db = _opened(settings)
    worker_loop = Worker(db, settings)
    runner = WorkerThread(worker_loop, settings.worker_stall_seconds)
    spare_the_collector()
    console.print(f"worker on store {settings.store_url}")
    run_worker_process(runner, signals, heartbeat_fd)
    runner.stop()
    db.close()


@main.command("migrate")
@with_store_options
def migrate_command(store, data_dir) -> None:
    """Bring the store's schema up to date (serve and worker do it too as they start, unless
    PROFILESTORE_MIGRATE=false). Safe to run while other processes start or run."""
    settings = Settings.from_env(store=store, data_dir=data_dir)
    with _store_problems(settings):
        applied = migrate(settings.store_url)
    console.print(f"applied {', '.join(applied)}" if applied else "the schema is up to date", soft_wrap=True)


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--client", required=True, help="Target client code.")
@click.option("--v1", is_flag=True, help="Bulk API v1: update existing profiles only (default v2: create missing).")
@click.option("--wait", is_flag=True, help="Show progress until the batch is applied, then its counts.")
@click.option(
    "--idempotency-key",
    metavar="KEY",
    help="Send this Idempotency-Key (default: one made from the file, so that sending the same file "
    "again within PROFILESTORE_IDEMPOTENCY_HOURS answers its first batch instead of applying it twice).",
)
@click.option("--no-idempotency-key", is_flag=True, help="Send no Idempotency-Key: the file makes a new batch.")
@click.option(
    "--dry-run", is_flag=True,
    help="Store nothing: show what the batch would do (refused, or each row's outcome; admin API).",
)  # fmt: skip
@client_token
@admin_key
@service_url
def upload(
    file: Path, client: str, v1: bool, wait: bool, idempotency_key: str | None, no_idempotency_key: bool,
    dry_run: bool, token: str | None, admin_key: str | None, url: str,
) -> None:  # fmt: skip
    """Submit a batch file, as `curl --data-binary @FILE` would. Rerunning it with the same file
    is safe: the file's own Idempotency-Key makes the service answer the batch it made first.
    With --dry-run, nothing is stored: it shows what the batch would do, and exits 1 if the
    batch would be refused or rows would fail."""
    body = file.read_bytes()
    if dry_run:
        with _service(url, admin_key) as http:
            answer = http.post(
                f"/api/clients/{client}/batches/validate", params={"version": 1 if v1 else 2}, content=body
            )
            if not _print_dry_run(_json(answer)):
                raise SystemExit(1)
        return
    path = f"/m2/{client}/profile/batchUpdate" if v1 else f"/m2/{client}/v2/profile/batchUpdate"
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if not no_idempotency_key:
        headers["Idempotency-Key"] = idempotency_key or _file_key(body, 1 if v1 else 2)
    with _service(url, token) as http:
        answer = http.post(path, content=body, headers=headers)
        batch_id = _xml(answer).get("batchId", "")
        if answer.headers.get("idempotent-replayed") == "true":
            console.print(f"already accepted as batch [bold]{batch_id}[/bold]: nothing sent again "
                          "(--no-idempotency-key makes a new batch)")  # fmt: skip
        else:
            console.print(f"accepted batch [bold]{batch_id}[/bold]")
        if wait:
            _print_record(_wait_for(http, client, batch_id), url)


@main.command()
@click.argument("batch_id")
@admin_key
@service_url
def status(batch_id: str, admin_key: str | None, url: str) -> None:
    """Show a batch's state and counts (admin API)."""
    with _service(url, admin_key) as http:
        _print_record(_json(http.get(f"/api/batches/{batch_id}")), url)


@main.group()
def profile() -> None:
    """Read profiles."""


@profile.command("get")
@click.argument("visitor_id")
@click.option("--client", required=True, help="Target client code.")
@click.option("--third-party-id", "by_third_party", is_flag=True, help="VISITOR_ID is a thirdPartyId, not a tntId.")
@client_token
@service_url
def profile_get(visitor_id: str, client: str, by_third_party: bool, token: str | None, url: str) -> None:
    """Print a profile as the Profile Fetch API returns it."""
    path = f"/rest/v1/profiles/thirdPartyId/{visitor_id}" if by_third_party else f"/rest/v1/profiles/{visitor_id}"
    with _service(url, token) as http:
        console.print_json(data=_json(http.get(path, params={"client": client})))


@main.command("export")
@click.option("--client", required=True, help="Target client code.")
@click.option(
    "--format", "export_format", type=click.Choice(["batch", "ndjson"]), default="batch", show_default=True,
    help="batch: a v2 batch file that can be uploaded back as it is; ndjson: one /api profile record a line.",
)  # fmt: skip
@click.option(
    "--key", type=click.Choice(["thirdPartyId", "pcId"]), default="thirdPartyId", show_default=True,
    help="For --format batch: thirdPartyId exports the profiles that have one, keyed by it; pcId those that "
    "have none, keyed by their tntId. The two files hold every profile once.",
)  # fmt: skip
@click.option("--modified-since", help="Only profiles modified at or after this ISO-8601 time, e.g. 2026-12-01T00:00Z.")
@click.option("--attributes", help="Only these attributes, comma-separated; profiles with none of them are left out.")
@admin_key
@service_url
def export_command(
    client: str, export_format: str, key: str, modified_since: str | None, attributes: str | None,
    admin_key: str | None, url: str,
) -> None:  # fmt: skip
    """Write a client's live profiles to stdout (admin API), e.g. `profilestore export --client demo > demo.txt`."""
    params = {"format": export_format, "key": key, "modifiedSince": modified_since, "attributes": attributes}
    out = sys.stdout.buffer
    with _service(url, admin_key) as http:
        path = f"/api/clients/{client}/profiles/export"
        with http.stream("GET", path, params={k: v for k, v in params.items() if v is not None}) as answer:
            if answer.status_code != 200:
                answer.read()
                _json(answer)
            for piece in answer.iter_bytes():
                out.write(piece)
    out.flush()


@main.group()
def token() -> None:
    """Profile API tokens of a client (admin API)."""


@token.command("create")
@click.argument("client")
@click.option("--days", type=float, help="How long the token lives (default: the service's, 90 days).")
@click.option("--keep-previous-hours", type=float, default=0, help="Keep the client's live tokens this long.")
@admin_key
@service_url
def token_create(client: str, days: float | None, keep_previous_hours: float, admin_key: str | None, url: str) -> None:
    """Create a token; it replaces the client's live tokens unless --keep-previous-hours. Shown once."""
    with _service(url, admin_key) as http:
        body = {"expiresInDays": days, "keepPreviousHours": keep_previous_hours}
        created = _json(http.post(f"/api/clients/{client}/tokens", json=body))
    console.print(f"token {created['id']} for {client}, expires {created['expiresAt']} (shown only now):")
    click.echo(created["token"])


@token.command("list")
@click.argument("client")
@admin_key
@service_url
def token_list(client: str, admin_key: str | None, url: str) -> None:
    """List a client's tokens (never their secrets)."""
    with _service(url, admin_key) as http:
        for t in _json(http.get(f"/api/clients/{client}/tokens"))["tokens"]:
            console.print(f"{t['id']}  {t['state']:8}  created {t['createdAt']}  expires {t['expiresAt']}")


@token.command("revoke")
@click.argument("client")
@click.argument("token_id")
@admin_key
@service_url
def token_revoke(client: str, token_id: str, admin_key: str | None, url: str) -> None:
    """Revoke one token at once."""
    with _service(url, admin_key) as http:
        revoked = _json(http.delete(f"/api/clients/{client}/tokens/{token_id}"))
    console.print(f"token {revoked['id']} revoked at {revoked['revokedAt']}")


@main.group("client")
def client_group() -> None:
    """A client's authentication and quotas (admin API)."""


@client_group.command("show")
@click.argument("client")
@admin_key
@service_url
def client_show(client: str, admin_key: str | None, url: str) -> None:
    """Show a client's authentication and quotas (authRequired, dailyRows, callsPerMinute)."""
    with _service(url, admin_key) as http:
        console.print_json(data=_json(http.get(f"/api/clients/{client}")))


@client_group.command("set")
@click.argument("client")
@click.option("--auth/--no-auth", default=None, help="Require profile API tokens, or not.")
@click.option("--daily-rows", type=int, help="Rows accepted per UTC day (0: no limit).")
@click.option("--calls-per-minute", type=int, help="Bulk and status calls per minute (0: no limit).")
@admin_key
@service_url
def client_set(client, auth, daily_rows, calls_per_minute, admin_key, url) -> None:
    """Change a client's authentication or quotas, then show its settings."""
    change = {"authRequired": auth, "dailyRows": daily_rows, "callsPerMinute": calls_per_minute}
    with _service(url, admin_key) as http:
        body = {k: v for k, v in change.items() if v is not None}
        console.print_json(data=_json(http.patch(f"/api/clients/{client}", json=body)))


def _checked(settings: Settings) -> Settings:
    """Refuse a bad setting at start-up with its message, not with a traceback later."""
    try:
        parse_windows(settings.ingest_windows)
    except ValueError as e:
        raise click.ClickException(f"PROFILESTORE_INGEST_WINDOWS: {e}") from None
    return settings


def _opened(settings: Settings) -> Store:
    """The store, migrated unless PROFILESTORE_MIGRATE=false."""
    with _store_problems(settings):
        return open_store(settings.store_url, settings.migrate, settings.store_timeout_seconds)


@contextmanager
def _store_problems(settings: Settings) -> Iterator[None]:
    """A store that cannot be opened as the command's error, in one line."""
    try:
        yield
    except StoreError as e:
        raise click.ClickException(f"store {settings.store_url}: {e}") from None


@contextmanager
def _service(url: str, secret: str | None = None) -> Iterator[httpx.Client]:
    """A client of the running service, sending `secret` (a token or the admin key) if given."""
    headers = {"Authorization": f"Bearer {secret}"} if secret else {}
    try:
        with httpx.Client(base_url=url, timeout=300, headers=headers) as http:
            yield http
    except httpx.TransportError as e:
        raise click.ClickException(f"Cannot reach profilestore at {url}: {e}") from None


def _json(answer: httpx.Response) -> dict:
    if answer.status_code not in (200, 201):
        raise click.ClickException(f"{answer.status_code}: {answer.json().get('message', answer.text)}")
    return answer.json()


def _file_key(body: bytes, version: int) -> str:
    """The Idempotency-Key upload sends by default: the same for the same file and version."""
    return f"profilestore-upload-v{version}-{hashlib.sha256(body).hexdigest()}"


def _xml(answer: httpx.Response) -> dict:
    """The fields of a Target XML answer; its message as the error if it is not a 200."""
    fields = {child.tag: child.text or "" for child in ElementTree.fromstring(answer.text)}
    if answer.status_code != 200:
        raise click.ClickException(f"{answer.status_code}: {fields.get('message')}")
    return fields


def _wait_for(http: httpx.Client, client: str, batch_id: str) -> dict:
    """Poll Target's batchStatus (which the client's own token opens) until the batch is done."""

    def poll() -> dict:
        answer = http.get(f"/m2/{client}/profile/batchStatus", params={"batchId": batch_id, "showDetails": "true"})
        return {k: int(v) if v.isdigit() else v for k, v in _xml(answer).items()}

    record = poll()
    columns = (TextColumn("applying"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("rows", total=record["batchSize"])
        while record["status"] == "incomplete":
            progress.update(task, completed=record["consumedCount"])
            time.sleep(0.2)
            record = poll()
    return record


def _print_dry_run(result: dict) -> bool:
    """Print what a batch would do; whether it would be accepted with no row failing."""
    refusal = result["refusal"]
    if refusal:
        console.print(f"[red]would be refused ({refusal['status']}): {refusal['message']}[/red]")
        return False
    console.print(
        f"dry run, nothing stored: {result['batchSize']:,} rows would give {result['successfulUpdates']:,} applied "
        f"({result['profilesCreated']:,} new profiles), {result['profilesNotFound']:,} profiles not found, "
        f"{result['failedUpdates']:,} failed"
    )
    for row in result["failedRows"]:
        console.print(f"line {row['line']}: {row['reason']}", markup=False)
    if result["failedUpdates"] > len(result["failedRows"]):
        console.print(f"… and {result['failedUpdates'] - len(result['failedRows']):,} more failed rows")
    return not result["failedUpdates"]


def _print_record(record: dict, url: str) -> None:
    state = f" ({record['state']})" if "state" in record else ""
    console.print(
        f"{record['batchId']}: {record['status']}{state}, "
        f"{record['consumedCount']:,} of {record['batchSize']:,} rows consumed: "
        f"{record['successfulUpdates']:,} applied, {record['profilesNotFound']:,} profiles not found, "
        f"{record['failedUpdates']:,} failed"
    )
    if record["failedUpdates"]:
        console.print(f"failed rows: {url}/api/batches/{record['batchId']}/failures.csv")
    if record.get("stuckReason"):
        console.print(f"[red]stuck: {record['stuckReason']}[/red]")
        console.print(f"rows not applied: {url}/api/batches/{record['batchId']}/unprocessed.csv")
    if record.get("lastError"):
        console.print(f"[yellow]retrying since {record['failingSince']}: {record['lastError']}; "
                      f"next attempt {record['nextAttemptAt']}[/yellow]")  # fmt: skip
    if record.get("heldBack"):
        console.print(f"held back: {record['heldBack']}")
