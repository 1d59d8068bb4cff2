"""Writes of one visitor at a time: the Single Profile Update API (existing profiles only) and
in-page updates through the Delivery API (which link the visitor's ids and create profiles)."""

from __future__ import annotations

from collections.abc import Callable

from .clients import check_client
from .config import Settings
from .errors import BadRequest, ProfileNotFound
from .ids import visitor_id_problem
from .model import Profile
from .profiles import VisitorIds, link_visitor, profiles_for_write, set_attributes, single_write_order
from .store.base import Store, WriteTx
from .times import now_ms


class UpdateService:
    def __init__(self, store: Store, settings: Settings, clock: Callable[[], int] = now_ms):
        self.store = store
        self.settings = settings
        self.clock = clock

    def update_profile(self, client: str, id_kind: str, visitor_id: str, values: dict[str, str]) -> Profile:
        """Set attributes of an existing profile before answering; ProfileNotFound if there is none."""
        check_client(client)
        if id_kind == "tntId" and (problem := visitor_id_problem(id_kind, visitor_id, "mboxPC")):
            raise BadRequest(problem)
        self.check_names(values, "profile.")
        now = self.clock()

        def update(tx: WriteTx) -> Profile:
            found = profiles_for_write(tx, client, id_kind, [visitor_id], now, self.settings.lifetime_ms)
            profile = found.get(visitor_id)
            if profile is None:
                why = ": single profile updates change existing profiles only"
                raise ProfileNotFound(client, id_kind, visitor_id, why)
            set_attributes(profile, values, now, single_write_order(tx), self.settings.max_profile_bytes)
            tx.save_profiles([profile])
            return profile

        return self.store.write(client, update)

    def update_visitor(self, client: str, ids: VisitorIds, values: dict[str, str]) -> Profile:
        """The in-page write: link the request's ids into one profile, then set the attributes."""
        named = (("tntId", ids.tnt_id), ("thirdPartyId", ids.third_party_id), ("marketingCloudVisitorId", ids.mcvid))
        for kind, value in named:
            if value is not None and (problem := visitor_id_problem(kind, value)):
                raise BadRequest(f"id.{kind}: {problem}")
        self.check_names(values, "profileParameters.")
        now = self.clock()

        def update(tx: WriteTx) -> Profile:
            settings = self.settings
            profile, _ = link_visitor(tx, client, ids, now, settings.lifetime_ms, settings.max_profile_bytes)
            set_attributes(profile, values, now, single_write_order(tx), settings.max_profile_bytes)
            tx.save_profiles([profile])
            return profile

        return self.store.write(client, update)

    def check_names(self, values: dict[str, str], prefix: str) -> None:
        limit = self.settings.max_attribute_name
        for name in values:
            if not name:
                raise BadRequest(f"Parameter {prefix!r} has no attribute name")
            if len(name) > limit:
                raise BadRequest(
                    f"Parameter {prefix}{name[:40]}…: the attribute name is {len(name)} characters, the limit is {limit}"
                )
