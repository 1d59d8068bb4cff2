"""The `profilestore` command: run the service or a worker, and talk to a running service."""

from __future__ import annotations

import logging
import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator
from xml.etree import ElementTree

import click
import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .batches import BatchService
from .config import Settings
from .store import open_store
from .worker import Worker

console = Console()
DEFAULT_URL = "http://127.0.0.1:8080"
service_url = click.option(
    "--url", envvar="PROFILESTORE_URL", default=DEFAULT_URL, show_default=True, help="The running service."
)
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
    """Run the HTTP service, and the worker that applies batches."""
    import uvicorn

    from .web import create_app

    settings = Settings.from_env(
        store=store, data_dir=data_dir, public_url=public_url, run_worker=False if no_worker else None
    )
    console.print(f"profilestore on http://{host}:{port} with store {settings.store_url}")
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")


@main.command()
@with_store_options
def worker(store, data_dir) -> None:
    """Apply accepted batches (for a service started with --no-worker)."""
    settings = Settings.from_env(store=store, data_dir=data_dir)
    db = open_store(settings.store_url)
    runner = Worker(BatchService(db, settings), settings.worker_poll_seconds)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: runner.stop())
    console.print(f"worker on store {settings.store_url}")
    thread = threading.Thread(target=runner.run, name="worker")
    thread.start()
    while thread.is_alive():
        thread.join(0.5)  # the main thread stays free to take the signals
    db.close()


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--client", required=True, help="Target client code.")
@click.option("--v1", is_flag=True, help="Bulk API v1: update existing profiles only (default v2: create missing).")
@click.option("--wait", is_flag=True, help="Show progress until the batch is applied, then its counts.")
@service_url
def upload(file: Path, client: str, v1: bool, wait: bool, url: str) -> None:
    """Submit a batch file, as `curl --data-binary @FILE` would."""
    path = f"/m2/{client}/profile/batchUpdate" if v1 else f"/m2/{client}/v2/profile/batchUpdate"
    with _service(url) as http:
        answer = http.post(
            path, content=file.read_bytes(), headers={"Content-Type": "application/x-www-form-urlencoded"}
        )
        reply = ElementTree.fromstring(answer.text)
        batch_id = reply.findtext("batchId")
        if answer.status_code != 200 or not batch_id:
            raise click.ClickException(f"{answer.status_code}: {reply.findtext('message')}")
        console.print(f"accepted batch [bold]{batch_id}[/bold]")
        if wait:
            _print_record(_wait_for(http, batch_id), url)


@main.command()
@click.argument("batch_id")
@service_url
def status(batch_id: str, url: str) -> None:
    """Show a batch's state and counts."""
    with _service(url) as http:
        _print_record(_get_json(http, f"/api/batches/{batch_id}"), url)


@main.group()
def profile() -> None:
    """Read profiles."""


@profile.command("get")
@click.argument("visitor_id")
@click.option("--client", required=True, help="Target client code.")
@click.option("--third-party-id", "by_third_party", is_flag=True, help="VISITOR_ID is a thirdPartyId, not a tntId.")
@service_url
def profile_get(visitor_id: str, client: str, by_third_party: bool, url: str) -> None:
    """Print a profile as the Profile Fetch API returns it."""
    path = f"/rest/v1/profiles/thirdPartyId/{visitor_id}" if by_third_party else f"/rest/v1/profiles/{visitor_id}"
    with _service(url) as http:
        console.print_json(data=_get_json(http, path, params={"client": client}))


@contextmanager
def _service(url: str) -> Iterator[httpx.Client]:
    try:
        with httpx.Client(base_url=url, timeout=300) as http:
            yield http
    except httpx.TransportError as e:
        raise click.ClickException(f"Cannot reach profilestore at {url}: {e}") from None


def _get_json(http: httpx.Client, path: str, params: dict | None = None) -> dict:
    answer = http.get(path, params=params)
    if answer.status_code != 200:
        raise click.ClickException(f"{answer.status_code}: {answer.json().get('message', answer.text)}")
    return answer.json()


def _wait_for(http: httpx.Client, batch_id: str) -> dict:
    record = _get_json(http, f"/api/batches/{batch_id}")
    columns = (TextColumn("applying"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("rows", total=record["batchSize"])
        while record["status"] == "incomplete":
            progress.update(task, completed=record["consumedCount"])
            time.sleep(0.2)
            record = _get_json(http, f"/api/batches/{batch_id}")
    return record


def _print_record(record: dict, url: str) -> None:
    console.print(
        f"{record['batchId']}: {record['status']} ({record['state']}), "
        f"{record['consumedCount']:,} of {record['batchSize']:,} rows consumed: "
        f"{record['successfulUpdates']:,} applied, {record['profilesNotFound']:,} profiles not found, "
        f"{record['failedUpdates']:,} failed"
    )
    if record["failedUpdates"]:
        console.print(f"failed rows: {url}/api/batches/{record['batchId']}/failures.csv")
    if record["stuckReason"]:
        console.print(f"[red]stuck: {record['stuckReason']}[/red]")

