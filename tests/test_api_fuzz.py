"""Every call the service's OpenAPI document describes, with parameters generated from it by
schemathesis (ids, batch ids, limits, offsets, quotas, token lifetimes, ...), against a real
`profilestore serve`: none is answered with a server error."""

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from support import apply, eventually, serve_process

pytestmark = pytest.mark.slow  # schemathesis calls of every operation on a real serve

EXAMPLES = 40  # per operation; bounded so that the suite stays short


def test_no_generated_call_gets_a_server_error(store_url, tmp_path):
    with serve_process(store_url, tmp_path) as server:
        apply_some_data(server.url)
        schema = schemathesis.openapi.from_url(f"{server.url}/api/openapi.json")
        for operation in schema.get_all_operations():
            call_with_examples(operation.ok(), server.url)


def call_with_examples(operation, base_url: str) -> None:
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=os.environ.get("CI") == "true",
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(case=operation.as_strategy())
    def call(case) -> None:
        response = case.call(base_url=base_url, timeout=60)
        problem = f"{case.method} {case.formatted_path} {case.query}: {response.status_code} {response.text[:300]}"
        assert response.status_code < 500, problem

    call()


def apply_some_data(url: str) -> None:
    """A batch with failed rows, so that generated ids sometimes meet stored ones."""
    import httpx

    with httpx.Client(base_url=url, timeout=60) as http:
        apply(http, "batch=thirdPartyId,city\nc1,Oslo\n,Rome\nc3,a%zz\n")
        eventually(lambda: http.get("/api/health").status_code == 200, "healthy")
