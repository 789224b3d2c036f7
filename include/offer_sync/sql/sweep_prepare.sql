-- Fresh statistics for the planner on the columns the checks and the merge join on (the tables
-- were just bulk-loaded; the other columns are only copied, so sampling them is wasted time).
-- campaigns.seq too: merge_offers.sql joins the changed rows back to staging on it, and without
-- its statistics that join was estimated at thousands of times its size (a full sort of staging,
-- hash joins spilling to disk in 256 batches). campaigns.carried: every check and merge filters on
-- `NOT carried`, which without statistics the planner takes to keep half of the rows.
ANALYZE {advertisers} (trackier_id, long_id, hash_id, status),
        {campaigns} (seq, trackier_id, advertiser_ref, status, carried)
