-- Per-run staging tables, named after the run so that two runs can never mix their rows.
-- UNLOGGED: they are rebuilt from the API on a retry, so WAL would only slow the bulk load down.
-- Every fetched record lands here, valid or not: `status` says which, and rejects keep raw + reason.
-- The aliases table maps every id a campaign may use for its advertiser to the brand (sweep check).
-- Rows carry the Airflow try that wrote them, and the tries table lists every try that started
-- loading a shard: when two tries of one shard ran at once (a zombie and its retry), only the
-- newest try's rows count (shard_prepare.sql, sweep_mark_duplicates.sql).
-- start_sync creates them for a run that has not merged, so whatever they hold is from an earlier
-- attempt of this run (a failed run cleared and re-run): they are emptied, the sweep starts over.
-- {known} is a snapshot of the fingerprints (content_hash) of the active offers, taken here once per
-- run: an extract task stages a campaign whose fingerprint is among them without validating it
-- (trackier/fingerprint.py). Sorted, 8 bytes each, in 256 chunks by first byte, so that each task
-- streams them (shard_prepare.sql) into one array instead of holding a copy of a million-value
-- bytea three times over, and sorts nothing itself (sorting them took each of a 1M sweep's eight
-- campaign tasks about 1.5 s). Offers with a hash of another kind (an older md5) are left out.
-- One DO block, so creating a run's staging is one statement (also what keeps a sync under 50).
DO $staging$
BEGIN
CREATE UNLOGGED TABLE IF NOT EXISTS {advertisers} (
    shard            integer NOT NULL,
    try_number       integer NOT NULL DEFAULT 1,  -- the Airflow try of the extract task that wrote it
    seq              bigint  NOT NULL,      -- shard * 1e12 + page * 1e6 + position: arrival order
    page             integer,
    status           text    NOT NULL,      -- valid | rejected | duplicate
    carried          boolean NOT NULL DEFAULT false,  -- always false here (campaigns only)
    trackier_id      text,
    long_id          text,
    hash_id          text,
    name             text,
    company          text,
    email            text,
    category         text,
    brand_status     text,
    currency         text,
    tags             text[],
    source_created   timestamptz,
    source_modified  timestamptz,
    content_hash     text,
    reject_reason    text,
    raw              text
);
CREATE UNLOGGED TABLE IF NOT EXISTS {campaigns} (
    shard            integer NOT NULL,
    try_number       integer NOT NULL DEFAULT 1,
    seq              bigint  NOT NULL,
    page             integer,
    status           text    NOT NULL,
    -- true: the record's fingerprint (content_hash) was a stored offer's, so it was staged without
    -- validation as trackier_id, advertiser_ref and content_hash only (trackier/fingerprint.py)
    carried          boolean NOT NULL DEFAULT false,
    trackier_id      text,
    hash_id          text,
    advertiser_ref   text,
    title            text,
    description      text,
    offer_status     text,
    visibility       text,
    currency         text,
    comm_model       text,
    payout           numeric(18,6),
    payout_currency  text,
    revenue          numeric(18,6),
    payouts          jsonb,
    geo              text[],
    device           text[],
    os               text[],
    categories       text[],
    url              text,
    preview_url      text,
    source_created   timestamptz,
    source_modified  timestamptz,
    content_hash     text,
    reject_reason    text,
    raw              text
);
CREATE UNLOGGED TABLE IF NOT EXISTS {aliases} (
    alias        text NOT NULL,
    trackier_id  text NOT NULL
);
CREATE UNLOGGED TABLE IF NOT EXISTS {tries} (
    entity       text        NOT NULL,
    shard        integer     NOT NULL,
    try_number   integer     NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now()
);
CREATE UNLOGGED TABLE IF NOT EXISTS {known} (
    chunk         integer PRIMARY KEY,  -- the fingerprints' first byte
    fingerprints  bytea   NOT NULL      -- 8 bytes each, ascending
);
TRUNCATE {advertisers}, {campaigns}, {aliases}, {tries}, {known};
INSERT INTO {known} (chunk, fingerprints)
SELECT get_byte(fp, 0), string_agg(fp, ''::bytea ORDER BY fp)
FROM (SELECT decode(content_hash, 'hex') AS fp
      FROM offers
      WHERE is_active AND length(content_hash) = 16 AND content_hash !~ '[^0-9a-f]') AS f
GROUP BY 1;
END
$staging$
