"""The memory of `serve` is bounded by its design, not by what callers send: four of the largest
bodies arriving at once leave it far under a gigabyte (the figures are in bench/bodies)."""

import gzip
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from profilestore.config import MB
from support import serve_process

pytestmark = pytest.mark.slow  # tens of megabytes of bodies at once, measured on a real serve

BOUND_MB = 1024


def peak_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1]) / 1024


def four_at_once(url: str, path: str, body: bytes) -> list[int]:
    with httpx.Client(base_url=url, timeout=120) as http, ThreadPoolExecutor(4) as pool:
        return list(pool.map(lambda _: http.post(path, content=body).status_code, range(4)))


def test_four_batches_of_short_lines_at_once_stay_far_under_a_gigabyte(store_url, tmp_path):
    # Regression: the body was split into a list of its lines before they were counted (one
    # 49 MB body took serve from 223 to 1,231 MB, four to 4 GB).
    body = b"batch=pcId,a\n" + b"p,\n" * ((50 * MB - 14) // 3)
    with serve_process(store_url, tmp_path) as server:
        assert four_at_once(server.url, "/m2/demo/v2/profile/batchUpdate", body) == [413] * 4
        assert peak_rss_mb(server.process.pid) < BOUND_MB


def test_four_delivery_bodies_of_60_mb_at_once_stay_far_under_a_gigabyte(store_url, tmp_path):
    # Regression: Target's 60 MB limit let one body of empty objects take serve to 1.8 GB.
    body = b'{"context": {"channel": "web"}, "property": [' + b"{}," * (20 * MB) + b"{}]}"
    with serve_process(store_url, tmp_path) as server:
        assert four_at_once(server.url, "/rest/v1/delivery?client=demo&sessionId=s", body) == [413] * 4
        assert peak_rss_mb(server.process.pid) < BOUND_MB


def test_four_small_gzip_bodies_that_inflate_to_50_mb_at_once_stay_far_under_a_gigabyte(store_url, tmp_path):
    body = gzip.compress(b"batch=pcId,a\n" + b"p,\n" * ((50 * MB - 14) // 3))
    assert len(body) < MB, "each is declared small"
    with serve_process(store_url, tmp_path) as server:
        assert four_at_once(server.url, "/m2/demo/v2/profile/batchUpdate", body) == [413] * 4
        assert peak_rss_mb(server.process.pid) < BOUND_MB
