-- Before the first sync fills the EMPTY offers table (merge_offers_first.sql), drop the primary
-- key, the unique constraint on trackier_id, the brand index and the foreign key to brands; they
-- come back, built in one pass each, right after the insert, in the same transaction
-- (merge_offers_first_restore.sql).
-- Why: maintaining them row by row (a trigger call per row for the foreign key, random inserts
-- into the text index) costs more than building them once. Measured: a staged 100k sweep, each
-- variant rolled back, twice: 2.58/2.85 s with everything in place, 2.37/2.20 s this way (rebuild
-- included); under `airflow dags test` at 1M, the merge task 22.9 s before and 20.2 s after (same
-- machine, minutes apart). A single 1M trial that read staging cold for its first variant had
-- suggested 29.4 against 17.6 s; most of that gap was the cold read, not this change.
-- When offer_audit is empty too (a fresh database, not an emptied offers table beside a kept trail),
-- its secondary indexes (and primary key, below) go the same way: the first sync writes one
-- 'inserted' row per offer, and maintaining the indexes row by row costs more than building them
-- once. Measured on a staged 1M sweep, the three first-sync statements on freshly truncated tables,
-- alternately, each rolled back: 16.8/17.3/16.5 s with the two secondary indexes maintained,
-- 13.8/14.8/14.1 s built after (the insert 14.5-15.5 -> 10.5-12.1 s, the restore 1.7-2.0 -> 2.7-3.5 s).
-- The two primary keys (twelfth round): a staged 1M sweep, the whole merge on a fresh copy of the
-- staged database, alternately: 9.10/8.12 s with them dropped and rebuilt, 9.16/9.61 s maintained
-- row by row; 88 MB less WAL (1,119 against 1,207 MB). Nothing references either key.
-- The cost: DROP CONSTRAINT and DROP INDEX take an ACCESS EXCLUSIVE lock on offers (and offer_audit)
-- until the merge commits, so a reader of the (still empty) tables waits for the first sync instead
-- of seeing them empty.
-- Only what exists under the names schema.sql gives it is dropped, and only when this role may
-- alter the table (insufficient_privilege: nothing is dropped and the insert keeps them all);
-- what was dropped is noted in a transaction-local setting for the restore step.
DO $defer$
DECLARE
    dropped text[] := ARRAY[]::text[];
BEGIN
    BEGIN
        IF EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 'offers'::regclass
                                                   AND conname = 'offers_brand_id_fkey') THEN
            ALTER TABLE offers DROP CONSTRAINT offers_brand_id_fkey;
            dropped := dropped || 'offers_brand_id_fkey'::text;
        END IF;
        IF EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 'offers'::regclass
                                                   AND conname = 'offers_trackier_id_key') THEN
            ALTER TABLE offers DROP CONSTRAINT offers_trackier_id_key;
            dropped := dropped || 'offers_trackier_id_key'::text;
        END IF;
        IF EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 'offers'::regclass
                                                   AND conname = 'offers_pkey') THEN
            ALTER TABLE offers DROP CONSTRAINT offers_pkey;
            dropped := dropped || 'offers_pkey'::text;
        END IF;
        IF to_regclass('offers_brand_id_idx') IS NOT NULL THEN
            DROP INDEX offers_brand_id_idx;
            dropped := dropped || 'offers_brand_id_idx'::text;
        END IF;
        IF NOT EXISTS (SELECT 1 FROM offer_audit) THEN
            IF EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 'offer_audit'::regclass
                                                       AND conname = 'offer_audit_pkey') THEN
                ALTER TABLE offer_audit DROP CONSTRAINT offer_audit_pkey;
                dropped := dropped || 'offer_audit_pkey'::text;
            END IF;
            IF to_regclass('offer_audit_offer_idx') IS NOT NULL THEN
                DROP INDEX offer_audit_offer_idx;
                dropped := dropped || 'offer_audit_offer_idx'::text;
            END IF;
            IF to_regclass('offer_audit_run_action_idx') IS NOT NULL THEN
                DROP INDEX offer_audit_run_action_idx;
                dropped := dropped || 'offer_audit_run_action_idx'::text;
            END IF;
        END IF;
    EXCEPTION WHEN insufficient_privilege THEN
        dropped := ARRAY[]::text[];  -- the subtransaction rolled every drop back
        RAISE NOTICE 'offer sync: not the owner of offers or offer_audit; the first sync keeps their constraints';
    END;
    PERFORM set_config('trackier_offer_sync.deferred', array_to_string(dropped, ','), true);
END
$defer$
