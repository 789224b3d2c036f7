-- The same id twice in one sweep (a record moved between pages while we paged, or the API repeated
-- it): keep one deterministic winner - the latest `modified`, then the last one read - and mark
-- the others 'duplicate'. They are counted, not rejected: the record itself is fine.
-- Both entities in one statement.
WITH adv AS (
    UPDATE {advertisers} AS s
    SET status = 'duplicate'
    FROM (
        SELECT seq,
               row_number() OVER (PARTITION BY trackier_id
                                  ORDER BY source_modified DESC NULLS LAST, seq DESC) AS rn
        FROM {advertisers}
        WHERE status = 'valid'
          AND trackier_id IN (SELECT trackier_id FROM {advertisers} WHERE status = 'valid'
                              GROUP BY trackier_id HAVING count(*) > 1)
    ) AS d
    WHERE s.seq = d.seq
      AND d.rn > 1
    RETURNING 1
),
cmp AS (
    UPDATE {campaigns} AS s
    SET status = 'duplicate'
    FROM (
        SELECT seq,
               row_number() OVER (PARTITION BY trackier_id
                                  ORDER BY source_modified DESC NULLS LAST, seq DESC) AS rn
        FROM {campaigns}
        WHERE status = 'valid'
          AND trackier_id IN (SELECT trackier_id FROM {campaigns} WHERE status = 'valid'
                              GROUP BY trackier_id HAVING count(*) > 1)
    ) AS d
    WHERE s.seq = d.seq
      AND d.rn > 1
    RETURNING 1
)
SELECT (SELECT count(*) FROM adv) AS advertisers, (SELECT count(*) FROM cmp) AS campaigns
