-- Upsert this sweep's advertisers into brands. Rows whose content is unchanged are not touched
-- (no dead tuples, no WAL); `inserted` tells a new brand from an updated one.
WITH upserted AS (
    INSERT INTO brands AS b (trackier_id, long_id, hash_id, name, company, email, category, status,
                             currency, tags, source_created, source_modified, content_hash,
                             last_sync_run_id)
    SELECT trackier_id, long_id, hash_id, name, company, email, category, brand_status,
           currency, coalesce(tags, ARRAY[]::text[]), source_created, source_modified, content_hash,
           %(run_id)s
    FROM {advertisers}
    WHERE status = 'valid'
    ON CONFLICT (trackier_id) DO UPDATE
    SET long_id = excluded.long_id, hash_id = excluded.hash_id, name = excluded.name,
        company = excluded.company, email = excluded.email, category = excluded.category,
        status = excluded.status, currency = excluded.currency, tags = excluded.tags,
        source_created = excluded.source_created, source_modified = excluded.source_modified,
        content_hash = excluded.content_hash, updated_at = now(), last_sync_run_id = excluded.last_sync_run_id
    WHERE b.content_hash IS DISTINCT FROM excluded.content_hash
    RETURNING (xmax = 0) AS inserted
)
SELECT count(*) FILTER (WHERE inserted)     AS brands_added,
       count(*) FILTER (WHERE NOT inserted) AS brands_updated
FROM upserted
