-- Before the first sync fills the EMPTY offers table (merge_offers_first.sql), drop the unique
-- constraint on trackier_id, the brand index and the foreign key to brands; they come back, built
-- in one pass each, right after the insert, in the same transaction (merge_offers_first_restore.sql).
-- Why: maintaining them row by row was 40% of a million-offer first merge. Measured
-- on a staged sweep of 1M fake campaigns, each variant rolled back: the insert with everything in place
-- 29.4 s; without the foreign key (one trigger call per row) 24.5 s + 0.6 s to add it back; without
-- the foreign key, the unique constraint and the brand index 15.3 s + 2.3 s to build them back.
-- The cost: DROP CONSTRAINT takes an ACCESS EXCLUSIVE lock on offers until the merge commits, so
-- a reader of the (still empty) table waits for the first sync instead of seeing it empty.
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
        IF to_regclass('offers_brand_id_idx') IS NOT NULL THEN
            DROP INDEX offers_brand_id_idx;
            dropped := dropped || 'offers_brand_id_idx'::text;
        END IF;
    EXCEPTION WHEN insufficient_privilege THEN
        dropped := ARRAY[]::text[];  -- the subtransaction rolled every drop back
        RAISE NOTICE 'offer sync: not the owner of offers; the first sync keeps its constraints';
    END;
    PERFORM set_config('trackier_offer_sync.deferred', array_to_string(dropped, ','), true);
END
$defer$
