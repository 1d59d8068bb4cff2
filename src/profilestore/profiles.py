"""Profiles as Target shows them, and the rule for a profile that does not exist yet."""

from __future__ import annotations

from .ids import iso_ms, new_tnt_id
from .store.base import Profile

ID_KINDS = ("tntId", "thirdPartyId")
NOT_FOUND_LABEL = {"tntId": "mboxPC", "thirdPartyId": "third party id"}


def new_profile(client: str, key: str, visitor_id: str, now: int) -> Profile:
    """A profile created for a key Target has not seen: a pcId becomes the tntId; a
    thirdPartyId gets a new tntId and is linked to it."""
    if key == "pcId":
        return Profile(client, visitor_id, None, now, now)
    return Profile(client, new_tnt_id(), visitor_id, now, now)


def target_json(profile: Profile, visitor_id: str) -> dict:
    return {
        "client": profile.client,
        "visitorId": visitor_id,
        "modifiedAt": iso_ms(profile.modified_ms),
        "profileAttributes": attributes_json(profile),
    }


def attributes_json(profile: Profile) -> dict:
    return {name: {"value": value, "modifiedAt": iso_ms(ms)} for name, (value, ms) in profile.attributes.items()}


def not_found_json(client: str, id_kind: str, visitor_id: str) -> dict:
    return {"status": 404, "message": f"No profile found for client {client} with {NOT_FOUND_LABEL[id_kind]}={visitor_id}"}
