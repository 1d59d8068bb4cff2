"""Target's XML answers for the bulk API."""

from __future__ import annotations

import re
from xml.sax.saxutils import escape as _escape

from fastapi.responses import Response

from ..model import Batch, FailedRow

# Characters XML 1.0 cannot carry at all, even escaped; a percent-decoded id may hold them.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def escape(text: str) -> str:
    return _escape(_NOT_XML.sub("\ufffd", text))


def xml(body: str, status: int = 200, headers: dict | None = None) -> Response:
    return Response(body, status_code=status, media_type="application/xml", headers=headers)


def submitted(batch: Batch, status_url: str, headers: dict | None = None) -> Response:
    return xml(
        "<response><success>true</success>"
        f"<batchStatus>{escape(status_url)}</batchStatus>"
        f"<batchId>{escape(batch.id)}</batchId>"
        "<message>Batch submitted for processing</message></response>",
        headers=headers,
    )


def refused(status: int, message: str, headers: dict | None = None) -> Response:
    return xml(f"<response><success>false</success><message>{escape(message)}</message></response>", status, headers)


def batch_status(batch: Batch, details: bool, failed: list[FailedRow]) -> Response:
    parts = [
        f"<response><batchId>{escape(batch.id)}</batchId>",
        f"<status>{batch.state.target_status}</status><batchSize>{batch.size}</batchSize>",
    ]
    if details:
        parts.append(
            f"<consumedCount>{batch.consumed}</consumedCount><successfulUpdates>{batch.successful}</successfulUpdates>"
            f"<profilesNotFound>{batch.not_found}</profilesNotFound><failedUpdates>{batch.failed}</failedUpdates>"
        )
    parts.extend(f"<profile><id>{escape(row.id)}</id><status>failed</status></profile>" for row in failed)
    parts.append("</response>")
    return xml("".join(parts))
