-- The failed pages and anomalies of a run, for the sweep check and the run record.
SELECT entity, kind, count(*) AS n FROM sync_page_errors WHERE run_id = %(run_id)s GROUP BY entity, kind
