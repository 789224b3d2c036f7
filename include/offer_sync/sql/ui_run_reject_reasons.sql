-- Offer Sync page, run detail: what one run's rejects have in common. A reason reads
-- "<field>: <message> (got <value>)"; the value differs per record, so the group is the part
-- before " (got ", and the page filters the rejects by that text.
SELECT split_part(reason, ' (got ', 1) AS reason, count(*) AS count
FROM sync_rejects
WHERE run_id = %(run_id)s
GROUP BY 1
ORDER BY count(*) DESC, 1
LIMIT %(limit)s
