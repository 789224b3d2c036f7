-- Reserve %(n)s consecutive request slots, %(interval_s)s seconds apart, of one sweep's rate limit.
-- The slots start at the sweep's next free slot, or now if that lies in the past (an idle sweep
-- does not bank requests for a burst), and the row moves past them. The row lock serialises
-- concurrent reservations, so no two task processes ever get the same slot. Returns how many
-- seconds from now the first reserved slot is (negative: already due), and whether this statement
-- created the sweep's row (the caller then clears out old sweeps' rows).
INSERT INTO sync_rate_limits AS r (sweep, next_slot_at, updated_at)
VALUES (%(sweep)s, clock_timestamp() + %(n)s * %(interval_s)s * interval '1 second', clock_timestamp())
ON CONFLICT (sweep) DO UPDATE
    SET next_slot_at = greatest(r.next_slot_at, clock_timestamp()) + %(n)s * %(interval_s)s * interval '1 second',
        updated_at = clock_timestamp()
RETURNING extract(epoch FROM r.next_slot_at - clock_timestamp())::float8 - %(n)s * %(interval_s)s AS first_in_s,
          (xmax = 0) AS created
