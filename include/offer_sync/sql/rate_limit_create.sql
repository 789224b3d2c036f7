-- The shared state of the sweep-wide request rate limit (include/offer_sync/trackier/ratelimit.py): one row
-- per sweep holding the time of its next free request slot. It lives in the offers database because
-- that is the one thing every task process shares, on any worker host, under any executor.
-- Created by the first limited sweep, not with the catalogue schema: a sync with the limiter off
-- never touches it. Rows are scratch state, removed a day after their sweep last used them.
CREATE TABLE IF NOT EXISTS sync_rate_limits (
    sweep        text PRIMARY KEY,
    next_slot_at timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL
)
