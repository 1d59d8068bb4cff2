"""A batch at Target's row limit is accepted and completes with exact counts."""

import pytest

from support import accepted_id, attributes, submit, wait_complete

pytestmark = pytest.mark.slow  # batches of 500,000 rows

ROWS = 500_000


def test_500000_row_batch_completes_with_exact_counts(http):
    rows = (f"crm-{i},{i % 97},Z%C3%BCrich+{i % 13}" + ("" if i % 5 else ",vip") for i in range(ROWS))
    body = "batch=thirdPartyId,score,city,tier\n" + "\n".join(rows) + "\n"
    record = wait_complete(http, accepted_id(submit(http, body)))
    assert (record["batchSize"], record["consumedCount"], record["successfulUpdates"]) == (ROWS, ROWS, ROWS)
    assert (record["failedUpdates"], record["profilesNotFound"]) == (0, 0)
    assert attributes(http, "crm-0") == {"score": "0", "city": "Zürich 0", "tier": "vip"}
    assert attributes(http, f"crm-{ROWS - 1}") == {"score": str((ROWS - 1) % 97), "city": f"Zürich {(ROWS - 1) % 13}"}
