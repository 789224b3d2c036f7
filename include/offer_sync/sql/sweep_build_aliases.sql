-- Every id a campaign's advertiserId may use (id, 24-hex _id, hashId), from this sweep's valid
-- advertisers first and from brands already stored second, each mapped to the brand's trackier_id.
-- When one alias could mean two brands, the earlier source wins, deterministically.
-- Rebuilt from scratch, so a re-run is the same.
-- Then analyzed, in the same statement (a DO block keeps the sync's statement count): the orphan
-- check and the offer merge join every staged campaign to this table, and without statistics the
-- planner assumes 200 distinct aliases, so it hashes the wide staging table instead of these few
-- rows. Measured on a staged 1M sweep (merge_offers_first.sql, each run rolled back): the join
-- 3.4 s and the insert 11.6-12.1 s without them, 1.6 s and 10.1-10.2 s with them; 17.0 s when
-- the 1M-row hash spilled to disk in 128 batches on a cold cache.
DO $aliases$
BEGIN
DELETE FROM {aliases};
INSERT INTO {aliases} (alias, trackier_id)
SELECT DISTINCT ON (alias) alias, trackier_id
FROM (
    SELECT trackier_id AS alias, trackier_id, 1 AS priority FROM {advertisers} WHERE status = 'valid'
    UNION ALL
    SELECT long_id, trackier_id, 2 FROM {advertisers} WHERE status = 'valid' AND long_id IS NOT NULL
    UNION ALL
    SELECT hash_id, trackier_id, 3 FROM {advertisers} WHERE status = 'valid' AND hash_id IS NOT NULL
    UNION ALL
    SELECT trackier_id, trackier_id, 4 FROM brands
    UNION ALL
    SELECT long_id, trackier_id, 5 FROM brands WHERE long_id IS NOT NULL
    UNION ALL
    SELECT hash_id, trackier_id, 6 FROM brands WHERE hash_id IS NOT NULL
) AS candidates
ORDER BY alias, priority;
ANALYZE {aliases};
END
$aliases$
