-- Offer Sync page, offer lookup: offers whose Trackier id or hash id is exactly %(q)s, then those
-- whose title contains it. %(pattern)s is an ILIKE pattern whose wildcards the caller escaped.
-- Exact matches come first; the title scan walks the primary key and stops at %(limit)s rows.
SELECT o.id, o.trackier_id, o.hash_id, o.title, o.status, o.is_active, o.deactivated_at, o.updated_at,
       b.name AS brand, m.exact
FROM (
    (SELECT id, true AS exact FROM offers WHERE trackier_id = %(q)s)
    UNION ALL
    (SELECT id, true FROM offers WHERE hash_id = %(q)s AND trackier_id <> %(q)s LIMIT %(limit)s)
    UNION ALL
    (SELECT id, false FROM offers
     WHERE title ILIKE %(pattern)s ESCAPE '\' AND trackier_id <> %(q)s AND hash_id IS DISTINCT FROM %(q)s
     ORDER BY id
     LIMIT %(limit)s)
) AS m
JOIN offers AS o ON o.id = m.id
JOIN brands AS b ON b.id = o.brand_id
ORDER BY m.exact DESC, o.id
LIMIT %(limit)s
