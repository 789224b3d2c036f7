-- Rate-limit rows of sweeps that have not reserved a slot for a day are finished sweeps' leftovers.
-- Run once per sweep, by the reservation that created the sweep's row.
DELETE FROM sync_rate_limits WHERE updated_at < clock_timestamp() - interval '1 day'
