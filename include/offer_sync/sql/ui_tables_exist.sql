-- Offer Sync page: which of the sync's bookkeeping tables exist yet (the first run creates them).
SELECT name, to_regclass(name) IS NOT NULL AS present
FROM unnest(%(names)s::text[]) AS name
