"""Privacy requests (access and delete, by TNTID, THIRDPARTYID or ECID, as Adobe's Privacy
Service names them) and the deletion of single attributes, which Target does not have."""

from __future__ import annotations

from typing import Callable

from .batchfile import NUL
from .config import Settings
from .errors import Rejected
from .ids import now_ms
from .profiles import find_profiles, live_profile, not_found_json, profile_json
from .store.base import Profile, Store, WriteTx

NAMESPACES = {"TNTID": "tntId", "THIRDPARTYID": "thirdPartyId", "ECID": "marketingCloudVisitorId"}


def id_kind(namespace: str) -> str:
    kind = NAMESPACES.get(namespace.upper())
    if kind is None:
        raise Rejected(400, f"Unknown namespace {namespace!r}: use TNTID, THIRDPARTYID or ECID")
    return kind


class PrivacyService:
    def __init__(self, store: Store, settings: Settings, clock: Callable[[], int] = now_ms):
        self.store = store
        self.settings = settings
        self.clock = clock

    def access(self, client: str, namespace: str, visitor_id: str) -> dict:
        """Everything stored about the visitor: the profile with all its ids."""
        profile = live_profile(self.store, client, id_kind(namespace), visitor_id, self.clock(), self.settings.lifetime_ms)
        return {**profile_json(profile), "mergedTntIds": self.store.merged_tnt_ids(client, profile.tnt_id)}

    def delete(self, client: str, namespace: str, visitor_id: str) -> dict:
        """Delete the profile, its links, and the failed batch rows that carried its ids; a
        visitor with failed rows and no profile has those deleted. 404 if there is neither."""
        kind = id_kind(namespace)
        profile = self._profile_or_none(client, kind, visitor_id)
        ids = [visitor_id]
        if profile:
            ids += [i for i in (profile.tnt_id, *self.store.merged_tnt_ids(client, profile.tnt_id),
                                profile.third_party_id, profile.mcvid) if i and i != visitor_id]  # fmt: skip

        def delete(tx: WriteTx) -> int:
            if profile:
                tx.delete_profile(client, profile.tnt_id)
            return tx.delete_failed_rows(client, [i for i in ids if NUL not in i])  # no stored id holds NUL

        removed = self.store.write(client, delete)
        if profile is None and not removed:
            raise Rejected(404, not_found_json(client, kind, visitor_id)["message"])
        deleted = {"client": client, "ids": ids}
        return {"deleted": deleted, "profileFound": profile is not None, "failedRowsRemoved": removed}

    def _profile_or_none(self, client: str, kind: str, visitor_id: str) -> Profile | None:
        try:
            return live_profile(self.store, client, kind, visitor_id, self.clock(), self.settings.lifetime_ms)
        except Rejected as e:
            if e.status == 404:
                return None
            raise

    def delete_attribute(self, client: str, kind: str, visitor_id: str, name: str) -> Profile:
        now = self.clock()

        def delete(tx: WriteTx) -> Profile:
            profile = find_profiles(tx, client, kind, [visitor_id], now, self.settings.lifetime_ms).get(visitor_id)
            if profile is None:
                raise Rejected(404, not_found_json(client, kind, visitor_id)["message"])
            if profile.attributes.pop(name, None) is None:
                raise Rejected(404, f"The profile has no attribute {name!r}")
            profile.modified_ms = profile.active_ms = now
            tx.save_profiles([profile])
            return profile

        return self.store.write(client, delete)
