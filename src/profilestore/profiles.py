"""The profile rules every write path shares (bulk rows, single updates, in-page updates),
and profiles as Target shows them."""

from __future__ import annotations

from dataclasses import dataclass

from .batchfile import NUL
from .errors import Rejected
from .ids import ID_MAX, iso_ms, new_tnt_id
from .store.base import MODIFIED_MS, ORDER, VALUE, Profile, Store, WriteTx

DAY_MS = 86_400_000

NOT_FOUND_LABEL = {"tntId": "mboxPC", "thirdPartyId": "third party id", "marketingCloudVisitorId": "marketingCloudVisitorId"}


def batch_write_order(batch_seq: int) -> int:
    """Writes are ordered by acceptance, never by wall clocks: a batch's rows rank by the batch's
    seq; a single or in-page write ranks just after the latest batch accepted before it (see
    single_write_order), so that batch's rows, applied later, do not overwrite it."""
    return 2 * batch_seq


def single_write_order(tx: WriteTx) -> int:
    return 2 * tx.last_batch_seq() + 1


class ProfileTooLarge(Rejected):
    def __init__(self, size: int, limit: int):
        super().__init__(400, f"the profile would hold {size:,} bytes of attributes, over the limit of {limit:,}")


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode())


def profile_bytes(values: dict[str, str]) -> int:
    """The size that counts against the profile cap: names and values in UTF-8."""
    return sum(_utf8_len(name) + _utf8_len(value) for name, value in values.items())


def check_size(profile: Profile, max_bytes: int, changes: dict[str, str] | None = None) -> None:
    """ProfileTooLarge if the profile, with these changes, would pass the cap (0: no cap).
    Unlike Target, which silently drops the oldest attributes, the write is refused."""
    if not max_bytes:
        return
    changes = changes or {}
    # A character is at most 4 bytes in UTF-8, and counting the values being replaced as well
    # only adds: most profiles are far enough under the cap that this bound settles it without
    # building or encoding anything.
    chars = sum(len(name) + len(a[VALUE]) for name, a in profile.attributes.items())
    if 4 * (chars + sum(len(name) + len(value) for name, value in changes.items())) <= max_bytes:
        return
    size = profile_bytes({**{name: a[VALUE] for name, a in profile.attributes.items()}, **changes})
    if size > max_bytes:
        raise ProfileTooLarge(size, max_bytes)


def set_attributes(profile: Profile, values: dict[str, str], now: int, order: int, max_bytes: int = 0) -> bool:
    """A write sets the attributes it names and leaves the others alone. An empty value means
    "leave unchanged" (Target's rule), and an attribute set by a later-accepted write stays.
    True if anything changed; nothing changes if the profile would pass max_bytes."""
    attributes = profile.attributes
    changes = {
        name: value for name, value in values.items()
        if value != "" and (name not in attributes or attributes[name][ORDER] <= order)
    }  # fmt: skip
    if not changes:
        return False
    check_size(profile, max_bytes, changes)
    for name, value in changes.items():
        attributes[name] = [value, now, order]
    profile.modified_ms = now
    return True


def find_profiles(tx: WriteTx, client: str, id_kind: str, ids, now: int, lifetime_ms: int) -> dict[str, Profile]:
    """Profiles by id, as if expired ones did not exist: those are deleted on the way, so a
    new write starts a new profile. lifetime_ms 0 means profiles never expire."""
    found = tx.profiles_by(client, id_kind, [i for i in ids if NUL not in i])  # no id holds NUL
    if not lifetime_ms:
        return found
    expired = {p.tnt_id for p in found.values() if is_expired(p, now, lifetime_ms)}
    for tnt_id in expired:
        tx.delete_profile(client, tnt_id)
    return {visitor_id: p for visitor_id, p in found.items() if p.tnt_id not in expired}


def live_profile(store: Store, client: str, id_kind: str, visitor_id: str, now: int, lifetime_ms: int) -> Profile:
    """The profile found by this id; 404 with Target's message if there is none or it expired,
    400 if the id is longer than any of its kind can be."""
    if len(visitor_id) > ID_MAX[id_kind]:
        raise Rejected(400, f"The {id_kind} is {len(visitor_id):,} characters, the limit is {ID_MAX[id_kind]}")
    profile = store.profile(client, id_kind, visitor_id) if NUL not in visitor_id else None  # no id holds NUL
    if profile is None or is_expired(profile, now, lifetime_ms):
        raise Rejected(404, not_found_json(client, id_kind, visitor_id)["message"])
    return profile


def is_expired(profile: Profile, now: int, lifetime_ms: int) -> bool:
    """A profile lives lifetime_ms from its last write of any kind (0: for ever)."""
    return bool(lifetime_ms) and profile.active_ms < now - lifetime_ms


def merge_into(winner: Profile, other: Profile, now: int) -> None:
    """Target's merge on linking: where both have an attribute, the winner's (the thirdPartyId
    profile's) value stays; every other attribute of both survives."""
    for name, attribute in other.attributes.items():
        winner.attributes.setdefault(name, attribute)
    winner.third_party_id = winner.third_party_id or other.third_party_id
    winner.mcvid = winner.mcvid or other.mcvid
    winner.created_ms = min(winner.created_ms, other.created_ms)
    winner.modified_ms = now


def new_profile(client: str, key: str, visitor_id: str, now: int) -> Profile:
    """A profile created for a key Target has not seen: a pcId becomes the tntId; a
    thirdPartyId gets a new tntId and is linked to it."""
    if key == "pcId":
        return Profile(client, visitor_id, now, now, active_ms=now)
    return Profile(client, new_tnt_id(), now, now, third_party_id=visitor_id, active_ms=now)


@dataclass(frozen=True)
class VisitorIds:
    """The ids one request names for its visitor; any may be missing."""

    tnt_id: str | None = None
    third_party_id: str | None = None
    mcvid: str | None = None


def link_visitor(
    tx: WriteTx, client: str, ids: VisitorIds, now: int, lifetime_ms: int, max_bytes: int
) -> tuple[Profile, list[Profile]]:
    """The visitor's one profile after linking the request's ids (created if none exists), and
    the profiles merged into it, already retired. The profile found by thirdPartyId wins, then
    the one found by marketingCloudVisitorId, then by tntId. A profile that carries another
    thirdPartyId (or marketingCloudVisitorId) is another person on the same device: it is
    neither merged nor taken over, and a new thirdPartyId gets a profile of its own. A merge
    that would pass the profile size cap is refused (ProfileTooLarge)."""
    asked = (("thirdPartyId", ids.third_party_id), ("marketingCloudVisitorId", ids.mcvid), ("tntId", ids.tnt_id))
    owners = {kind: value and find_profiles(tx, client, kind, [value], now, lifetime_ms).get(value) for kind, value in asked}
    found: list[Profile] = []
    for profile in owners.values():
        if profile and all(profile is not f for f in found):
            found.append(profile)
    winner = next((p for p in found if not _differ(p.third_party_id, ids.third_party_id)), None)
    if winner is None:
        unknown_tnt_id = ids.tnt_id and owners["tntId"] is None
        winner = Profile(client, ids.tnt_id if unknown_tnt_id else new_tnt_id(), now, now, active_ms=now)
    winner.third_party_id = winner.third_party_id or ids.third_party_id
    merged = []
    for other in found:
        if other is winner or _differ(other.third_party_id, winner.third_party_id) or _differ(other.mcvid, winner.mcvid):
            continue
        merge_into(winner, other, now)
        tx.retire_profile(client, other.tnt_id, winner.tnt_id)
        merged.append(other)
    check_size(winner, max_bytes)
    mcvid_owner = owners["marketingCloudVisitorId"]
    if winner.mcvid is None and (mcvid_owner is None or any(mcvid_owner is m for m in merged)):
        winner.mcvid = ids.mcvid
    return winner, merged


def _differ(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and a != b


def attributes_json(profile: Profile) -> dict:
    return {name: {"value": a[VALUE], "modifiedAt": iso_ms(a[MODIFIED_MS])} for name, a in profile.attributes.items()}


def profile_json(profile: Profile) -> dict:
    """The whole profile with all its ids, which Target's fetch API does not show."""
    return {
        "client": profile.client,
        "tntId": profile.tnt_id,
        "thirdPartyId": profile.third_party_id,
        "marketingCloudVisitorId": profile.mcvid,
        "createdAt": iso_ms(profile.created_ms),
        "modifiedAt": iso_ms(profile.modified_ms),
        "lastActiveAt": iso_ms(profile.active_ms),
        "attributes": attributes_json(profile),
    }


def target_json(profile: Profile, visitor_id: str) -> dict:
    return {
        "client": profile.client,
        "visitorId": visitor_id,
        "modifiedAt": iso_ms(profile.modified_ms),
        "profileAttributes": attributes_json(profile),
    }


def not_found_json(client: str, id_kind: str, visitor_id: str) -> dict:
    return {"status": 404, "message": f"No profile found for client {client} with {NOT_FOUND_LABEL[id_kind]}={visitor_id}"}
