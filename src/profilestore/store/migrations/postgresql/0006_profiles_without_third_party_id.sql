-- The profiles without a thirdPartyId, by client and tntId: an export's pcId file reads them
-- alone, where it read every profile of the client to find them (bench/export: 1,000,000
-- profiles, a tenth of them without one; see docs/notes.md, 2026-12-01).
CREATE INDEX profiles_without_third_party_id ON profiles (client, tnt_id) WHERE third_party_id IS NULL;
