"""Privacy requests (access and delete, by TNTID, THIRDPARTYID or ECID, as Adobe's Privacy
Service names them) and the deletion of single attributes, which Target does not have."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .config import Settings
from .errors import BadRequest, NotFound, ProfileNotFound
from .model import Profile, storable
from .profiles import delete_attribute, live_profile, profiles_for_write
from .store.base import Store, WriteTx
from .times import now_ms


@dataclass(frozen=True)
class Deletion:
    """What a delete request deleted."""

    client: str
    ids: list[str]  # every id of the visitor, the one asked for first
    profile_found: bool
    failed_rows_removed: int


NAMESPACES = {"TNTID": "tntId", "THIRDPARTYID": "thirdPartyId", "ECID": "marketingCloudVisitorId"}


def id_kind(namespace: str) -> str:
    kind = NAMESPACES.get(namespace.upper())
    if kind is None:
        raise BadRequest(f"Unknown namespace {namespace!r}: use TNTID, THIRDPARTYID or ECID")
    return kind


class PrivacyService:
    def __init__(self, store: Store, settings: Settings, clock: Callable[[], int] = now_ms):
        self.store = store
        self.settings = settings
        self.clock = clock

    def access(self, client: str, namespace: str, visitor_id: str) -> tuple[Profile, list[str]]:
        """Everything stored about the visitor: the profile, and the tntIds merged into it."""
        profile = live_profile(
            self.store, client, id_kind(namespace), visitor_id, self.clock(), self.settings.lifetime_ms
        )
        return profile, self.store.merged_tnt_ids(client, profile.tnt_id)

    def delete(self, client: str, namespace: str, visitor_id: str) -> Deletion:
        """Delete the profile, its links, and the failed batch rows that carried its ids; a
        visitor with failed rows and no profile has those deleted. ProfileNotFound if there is
        neither."""
        kind = id_kind(namespace)
        profile = self._profile_or_none(client, kind, visitor_id)
        ids = [visitor_id]
        if profile:
            ids += [i for i in (profile.tnt_id, *self.store.merged_tnt_ids(client, profile.tnt_id),
                                profile.third_party_id, profile.mcvid) if i and i != visitor_id]  # fmt: skip

        def delete(tx: WriteTx) -> int:
            if profile:
                tx.delete_profile(client, profile.tnt_id)
            return tx.delete_failed_rows(client, [i for i in ids if storable(i)])

        removed = self.store.write(client, delete)
        if profile is None and not removed:
            raise ProfileNotFound(client, kind, visitor_id)
        return Deletion(client, ids, profile is not None, removed)

    def _profile_or_none(self, client: str, kind: str, visitor_id: str) -> Profile | None:
        try:
            return live_profile(self.store, client, kind, visitor_id, self.clock(), self.settings.lifetime_ms)
        except ProfileNotFound:
            return None

    def delete_attribute(self, client: str, kind: str, visitor_id: str, name: str) -> Profile:
        now = self.clock()

        def delete(tx: WriteTx) -> Profile:
            profile = profiles_for_write(tx, client, kind, [visitor_id], now, self.settings.lifetime_ms).get(visitor_id)
            if profile is None:
                raise ProfileNotFound(client, kind, visitor_id)
            if not delete_attribute(profile, name, now):
                raise NotFound(f"The profile has no attribute {name!r}")
            tx.save_profiles([profile])
            return profile

        return self.store.write(client, delete)
