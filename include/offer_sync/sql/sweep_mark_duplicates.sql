-- The same id twice in one sweep (a record moved between pages while we paged, or the API repeated
-- it): keep one deterministic winner - the latest `modified`, then the last one read - and mark
-- the others 'duplicate'. They are counted, not rejected: the record itself is fine.
UPDATE {table} AS s
SET status = 'duplicate'
FROM (
    SELECT seq,
           row_number() OVER (PARTITION BY trackier_id
                              ORDER BY source_modified DESC NULLS LAST, seq DESC) AS rn
    FROM {table}
    WHERE status = 'valid'
      AND trackier_id IN (SELECT trackier_id FROM {table} WHERE status = 'valid'
                          GROUP BY trackier_id HAVING count(*) > 1)
) AS d
WHERE s.seq = d.seq
  AND d.rn > 1
