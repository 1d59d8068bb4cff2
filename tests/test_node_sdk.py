"""Adobe's official Node.js SDK (@adobe/target-nodejs-sdk 2.4) talks to profilestore as to Target.

The SDK posts to /rest/v1/delivery?imsOrgId=…&sessionId=… with no client parameter, so the
client comes from the organization id configured for it."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from support import attributes, serve_process

pytestmark = pytest.mark.slow  # npm ci and the Node.js SDK against a real serve

NODE_DIR = Path(__file__).parent / "node"
ORG = "0A1B2C3D4E5F@AdobeOrg"


@pytest.fixture(scope="module")
def sdk() -> Path:
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        reason = f"{' and '.join(missing)} not installed: the SDK round trip needs Node.js and npm"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--silent"], cwd=NODE_DIR, check=True)
    return NODE_DIR / "get_offers.js"


def test_get_offers_with_profile_parameters_and_a_third_party_id(sdk, store_url, tmp_path):
    with serve_process(store_url, tmp_path, env={"PROFILESTORE_CLIENT_ORGS": f"demo={ORG}"}) as server:
        domain = server.url.removeprefix("http://")
        run = subprocess.run(
            ["node", str(sdk), domain, ORG, "demo", "crm-42"], capture_output=True, text=True, timeout=60
        )
        assert run.returncode == 0, run.stderr
        result = json.loads(run.stdout)
        assert result["response"]["status"] == 200
        assert result["response"]["id"]["thirdPartyId"] == "crm-42"
        tnt_id = result["response"]["id"]["tntId"]
        assert f"PC#{tnt_id}#" in result["targetCookie"]["value"], (
            "the SDK keeps the visitor's tntId in its mbox cookie"
        )

        http = httpx.Client(base_url=server.url)
        expected = {"favoriteColor": "green", "visits": "3", "heroSeen": "yes"}
        assert attributes(http, "crm-42") == expected
        assert attributes(http, tnt_id, by="tntId") == expected
