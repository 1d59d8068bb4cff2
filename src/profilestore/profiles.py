"""The profile rules every write path shares: bulk rows, single updates, in-page updates and
attribute deletions."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import BadRequest, ProfileNotFound, ProfileTooLarge
from .ids import ID_MAX, new_tnt_id
from .model import ORDER, VALUE, Profile, storable
from .store.base import Store, WriteTx


def batch_write_order(batch_seq: int) -> int:
    """Writes are ordered by acceptance, never by wall clocks: a batch's rows rank by the batch's
    seq; a single or in-page write ranks just after the latest batch accepted before it (see
    single_write_order), so that batch's rows, applied later, do not overwrite it."""
    return 2 * batch_seq


def single_write_order(tx: WriteTx) -> int:
    return 2 * tx.last_batch_seq() + 1


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
    The write extends the profile's lifetime even if it changes nothing. True if anything
    changed; nothing changes if the profile would pass max_bytes (ProfileTooLarge)."""
    attributes = profile.attributes
    changes = {
        name: value for name, value in values.items()
        if value != "" and (name not in attributes or attributes[name][ORDER] <= order)
    }  # fmt: skip
    if changes:
        check_size(profile, max_bytes, changes)
        for name, value in changes.items():
            attributes[name] = [value, now, order]
        profile.modified_ms = now
    extend_lifetime(profile, now)
    return bool(changes)


def delete_attribute(profile: Profile, name: str, now: int) -> bool:
    """Delete one attribute (our extension: Target has no way to); False if the profile has none
    of that name. Like any write, it extends the profile's lifetime."""
    if profile.attributes.pop(name, None) is None:
        return False
    profile.modified_ms = now
    extend_lifetime(profile, now)
    return True


def extend_lifetime(profile: Profile, now: int) -> None:
    """A write of any kind extends the profile's lifetime: it runs from the profile's last write
    (Target: 14 days from the last activity), see is_expired."""
    profile.active_ms = now


def profiles_for_write(tx: WriteTx, client: str, id_kind: str, ids, now: int, lifetime_ms: int) -> dict[str, Profile]:
    """The profiles a write will change, by id, as if expired ones did not exist: those are
    deleted here, in the write's transaction, so that the write starts a new profile.
    lifetime_ms 0 means profiles never expire."""
    found = tx.profiles_by(client, id_kind, [i for i in ids if storable(i)])
    if not lifetime_ms:
        return found
    expired = {p.tnt_id for p in found.values() if is_expired(p, now, lifetime_ms)}
    for tnt_id in expired:
        tx.delete_profile(client, tnt_id)
    return {visitor_id: p for visitor_id, p in found.items() if p.tnt_id not in expired}


def live_profile(store: Store, client: str, id_kind: str, visitor_id: str, now: int, lifetime_ms: int) -> Profile:
    """The profile found by this id; ProfileNotFound if there is none or it expired, BadRequest
    if the id is longer than any of its kind can be."""
    profile = store.profile(client, id_kind, visitor_id) if _findable(id_kind, visitor_id) else None
    return _live(profile, client, id_kind, visitor_id, now, lifetime_ms)


async def live_profile_async(
    store: Store, client: str, id_kind: str, visitor_id: str, now: int, lifetime_ms: int
) -> Profile:
    """live_profile(), read with the store's profile_async: for a caller on an event loop."""
    profile = await store.profile_async(client, id_kind, visitor_id) if _findable(id_kind, visitor_id) else None
    return _live(profile, client, id_kind, visitor_id, now, lifetime_ms)


def _findable(id_kind: str, visitor_id: str) -> bool:
    """Whether a profile can have this id (not if it holds a NUL); BadRequest if it is longer
    than any of its kind can be."""
    if len(visitor_id) > ID_MAX[id_kind]:
        raise BadRequest(f"The {id_kind} is {len(visitor_id):,} characters, the limit is {ID_MAX[id_kind]}")
    return storable(visitor_id)


def _live(profile: Profile | None, client: str, id_kind: str, visitor_id: str, now: int, lifetime_ms: int) -> Profile:
    if profile is None or is_expired(profile, now, lifetime_ms):
        raise ProfileNotFound(client, id_kind, visitor_id)
    return profile


def is_expired(profile: Profile, now: int, lifetime_ms: int) -> bool:
    """A profile lives lifetime_ms from its last write of any kind (0: for ever)."""
    return profile.active_ms < live_since(now, lifetime_ms)


def live_since(now: int, lifetime_ms: int) -> int:
    """The earliest last write (active_ms) of a profile still live at `now` (see is_expired)."""
    return now - lifetime_ms if lifetime_ms else 0


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
    owners = {
        kind: value and profiles_for_write(tx, client, kind, [value], now, lifetime_ms).get(value)
        for kind, value in asked
    }
    found: list[Profile] = []
    for profile in owners.values():
        if profile and all(profile is not f for f in found):
            found.append(profile)
    winner = next((p for p in found if not _differ(p.third_party_id, ids.third_party_id)), None)
    if winner is None:
        unknown_tnt_id = ids.tnt_id if ids.tnt_id and owners["tntId"] is None else None
        winner = Profile(client, unknown_tnt_id or new_tnt_id(), now, now, active_ms=now)
    winner.third_party_id = winner.third_party_id or ids.third_party_id
    merged = []
    for other in found:
        if (
            other is winner
            or _differ(other.third_party_id, winner.third_party_id)
            or _differ(other.mcvid, winner.mcvid)
        ):
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


def purge_expired(store: Store, now: int, lifetime_ms: int, limit: int) -> int:
    """Delete up to `limit` profiles (of any client) expired at `now`; how many."""
    return store.write(None, lambda tx: tx.purge_inactive(now - lifetime_ms, limit))
