-- Every id a campaign's advertiserId may use (id, 24-hex _id, hashId), from this sweep's valid
-- advertisers first and from brands already stored second, each mapped to the brand's trackier_id.
-- When one alias could mean two brands, the earlier source wins, deterministically.
-- Rebuilt from scratch (the DELETE and the INSERT see the same snapshot), so a re-run is the same.
WITH cleared AS (DELETE FROM {aliases})
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
ORDER BY alias, priority
