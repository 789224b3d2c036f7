-- The catalogue and its bookkeeping, created idempotently by the DAG on its first run.
-- Tables land in the connection's default schema (search_path). Safe to run again at any time.
-- One DO block: the whole schema is one statement (and one round trip) on a new database.
-- Upgrades: a column added after version 1 is in its CREATE TABLE (new databases) AND in an
-- `ALTER TABLE ... ADD COLUMN IF NOT EXISTS` below it (existing ones); schema.py runs this file
-- whenever the recorded version is older than SCHEMA_VERSION.

DO $schema$
BEGIN

-- One row per Trackier advertiser. trackier_id is the advertiser's `id`; campaigns may point at it
-- by `id`, `_id` (24-hex long id) or `hashId`, so all three are kept. Brands are never deleted: an
-- advertiser a complete sweep no longer lists is deactivated (is_active = false) and comes back
-- (reactivated) when it reappears, both audited in brand_audit (version 2).
CREATE TABLE IF NOT EXISTS brands (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    trackier_id       text        NOT NULL UNIQUE,
    long_id           text,
    hash_id           text,
    name              text        NOT NULL,
    company           text,
    email             text,
    category          text,
    status            text,
    currency          text,
    tags              text[]      NOT NULL DEFAULT '{}',
    source_created    timestamptz,
    source_modified   timestamptz,
    content_hash      text        NOT NULL,
    is_active         boolean     NOT NULL DEFAULT true,
    deactivated_at    timestamptz,
    first_seen_at     timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    last_sync_run_id  text
);
ALTER TABLE brands ADD COLUMN IF NOT EXISTS is_active boolean NOT NULL DEFAULT true;
ALTER TABLE brands ADD COLUMN IF NOT EXISTS deactivated_at timestamptz;
CREATE INDEX IF NOT EXISTS brands_long_id_idx ON brands (long_id) WHERE long_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS brands_hash_id_idx ON brands (hash_id) WHERE hash_id IS NOT NULL;

-- One row per Trackier campaign. Offers are never deleted: a campaign gone from a complete sweep
-- is deactivated (is_active = false) and comes back (reactivated) if it reappears.
CREATE TABLE IF NOT EXISTS offers (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    trackier_id       text          NOT NULL UNIQUE,
    hash_id           text,
    brand_id          bigint        NOT NULL REFERENCES brands (id),
    title             text          NOT NULL,
    description       text,
    status            text,
    visibility        text,
    currency          text          NOT NULL,
    comm_model        text,
    payout            numeric(18,6),          -- the first payout rule's payout (what a publisher earns)
    payout_currency   text,
    revenue           numeric(18,6),          -- the first rule's revenue (what the advertiser pays)
    payouts           jsonb         NOT NULL DEFAULT '[]',  -- every payout rule, in API order
    geo               text[]        NOT NULL DEFAULT '{}',
    device            text[]        NOT NULL DEFAULT '{}',
    os                text[]        NOT NULL DEFAULT '{}',
    categories        text[]        NOT NULL DEFAULT '{}',
    url               text,
    preview_url       text,
    source_created    timestamptz,
    source_modified   timestamptz,
    content_hash      text          NOT NULL,
    is_active         boolean       NOT NULL DEFAULT true,
    deactivated_at    timestamptz,
    first_seen_at     timestamptz   NOT NULL DEFAULT now(),
    updated_at        timestamptz   NOT NULL DEFAULT now(),
    last_sync_run_id  text
);
CREATE INDEX IF NOT EXISTS offers_brand_id_idx ON offers (brand_id);

-- Every insert, change (with old and new values), deactivation and reactivation of an offer.
-- No foreign key to offers on purpose: the trail must outlive any manual clean-up of offers.
CREATE TABLE IF NOT EXISTS offer_audit (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id       text        NOT NULL,
    offer_id     bigint      NOT NULL,
    trackier_id  text        NOT NULL,
    action       text        NOT NULL CHECK (action IN ('inserted', 'updated', 'deactivated', 'reactivated')),
    changes      jsonb,
    recorded_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS offer_audit_offer_idx ON offer_audit (offer_id, recorded_at);
-- (run_id, action, id): a run's changes of one kind, paged in id order (the Offer Sync page).
CREATE INDEX IF NOT EXISTS offer_audit_run_action_idx ON offer_audit (run_id, action, id);
DROP INDEX IF EXISTS offer_audit_run_idx;  -- version 1's (run_id): the index above covers it

-- Every deactivation and reactivation of a brand (version 2). A table of its own rather than an
-- entity column on offer_audit: offer_audit's offer_id and its readers stay exactly as they were.
-- Brand inserts and content updates are not audited (they never were); is_active changes are,
-- because they are the sync's own judgement that an advertiser is gone.
CREATE TABLE IF NOT EXISTS brand_audit (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id       text        NOT NULL,
    brand_id     bigint      NOT NULL,
    trackier_id  text        NOT NULL,
    action       text        NOT NULL CHECK (action IN ('deactivated', 'reactivated')),
    changes      jsonb,
    recorded_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS brand_audit_brand_idx ON brand_audit (brand_id, recorded_at);
CREATE INDEX IF NOT EXISTS brand_audit_run_idx ON brand_audit (run_id);

-- One row per DAG run: status, every count, measurements, and the sync_result contract in `result`.
CREATE TABLE IF NOT EXISTS sync_runs (
    run_id                text PRIMARY KEY,
    dag_id                text        NOT NULL,
    status                text        NOT NULL
                          CHECK (status IN ('running', 'completed', 'completed_with_errors', 'failed')),
    dry_run               boolean     NOT NULL DEFAULT false,
    started_at            timestamptz NOT NULL DEFAULT now(),
    merged_at             timestamptz,
    finished_at           timestamptz,
    duration_s            double precision,
    added                 integer,
    updated               integer,
    unchanged             integer,
    deactivated           integer,
    reactivated           integer,
    rejected              integer,
    duplicates            integer,
    campaigns_processed   integer,
    advertisers_processed integer,
    brands_added          integer,
    brands_updated        integer,
    error_rate            double precision,
    complete_sweep        boolean,
    params                jsonb,
    plan                  jsonb,
    metrics               jsonb,
    result                jsonb,
    error                 text,
    event_emitted_at      timestamptz,  -- when emit_offers_event claimed the run's one event + webhook
    event_claimed_try     integer       -- which try of that task claimed it (a failed try releases it)
);
ALTER TABLE sync_runs ADD COLUMN IF NOT EXISTS event_emitted_at timestamptz;
ALTER TABLE sync_runs ADD COLUMN IF NOT EXISTS event_claimed_try integer;
CREATE INDEX IF NOT EXISTS sync_runs_started_idx ON sync_runs (started_at DESC);

-- Records that failed validation, kept raw with the reason, for inspection.
CREATE TABLE IF NOT EXISTS sync_rejects (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id       text        NOT NULL,
    entity       text        NOT NULL CHECK (entity IN ('advertisers', 'campaigns')),
    record_key   text,
    reason       text        NOT NULL,
    raw          text,
    shard        integer,
    page         integer,
    rejected_at  timestamptz NOT NULL DEFAULT now()
);
-- (run_id, id): a run's rejects paged in id order, and streamed as CSV (the Offer Sync page).
CREATE INDEX IF NOT EXISTS sync_rejects_run_id_idx ON sync_rejects (run_id, id);
DROP INDEX IF EXISTS sync_rejects_run_idx;  -- version 1's (run_id): the index above covers it

-- Pages that still failed after every retry, and pagination anomalies; either makes a sweep partial.
CREATE TABLE IF NOT EXISTS sync_page_errors (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id       text        NOT NULL,
    entity       text        NOT NULL,
    shard        integer     NOT NULL,
    page         integer,
    cursor       text,
    kind         text        NOT NULL,   -- failed_page | short_page | repeated_cursor | page_cap | ...
    error        text        NOT NULL,
    attempts     integer,
    recorded_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS sync_page_errors_run_idx ON sync_page_errors (run_id);

-- Alerts raised by the DAG's callbacks and deadline alerts (see include/offer_sync/alerts/).
CREATE TABLE IF NOT EXISTS sync_alerts (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id       text,
    rule         text        NOT NULL,
    severity     text        NOT NULL DEFAULT 'warning',
    measured     double precision,
    threshold    double precision,
    message      text        NOT NULL,
    link         text,
    raised_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS sync_alerts_raised_idx ON sync_alerts (raised_at DESC);

CREATE TABLE IF NOT EXISTS offer_sync_schema (
    version     integer     PRIMARY KEY,
    applied_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO offer_sync_schema (version) VALUES (1), (2) ON CONFLICT DO NOTHING;

END
$schema$;
