-- How many records of each entity arrived, by validation status, and how many rejects lack an id
-- (a sweep with unidentifiable records cannot tell which offers are really gone), and how many were
-- carried (staged without validation because a stored offer has their fingerprint).
SELECT 'advertisers' AS entity, status, count(*) AS n, count(*) FILTER (WHERE trackier_id IS NULL) AS no_id,
       0::bigint AS carried
FROM {advertisers} GROUP BY status
UNION ALL
SELECT 'campaigns', status, count(*), count(*) FILTER (WHERE trackier_id IS NULL), count(*) FILTER (WHERE carried)
FROM {campaigns} GROUP BY status
