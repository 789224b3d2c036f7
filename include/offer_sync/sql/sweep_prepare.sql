-- Fresh statistics for the planner on the columns the checks and the merge join on (the tables
-- were just bulk-loaded; the other columns are only copied, so sampling them is wasted time).
ANALYZE {advertisers} (trackier_id, long_id, hash_id, status), {campaigns} (trackier_id, advertiser_ref, status)
