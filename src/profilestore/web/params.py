"""Query strings and form bodies read strictly: percent-decoded UTF-8 with `+` as a space, as
Target does, and a malformed parameter refused by name instead of silently mangled."""

from __future__ import annotations

from ..batchfile import decode_cell
from ..errors import BadRequest


def parse_params(raw: bytes) -> list[tuple[str, str]]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("The parameters are not valid UTF-8") from None
    params = []
    for pair in text.split("&"):
        if not pair:
            continue
        name, _, value = pair.partition("=")
        try:
            params.append((decode_cell(name), decode_cell(value)))
        except ValueError as e:
            raise BadRequest(f"Parameter {name[:60]!r}: {e}") from None
    return params
