-- After the first sync filled the empty offers table (and, when it was empty too, offer_audit):
-- build back, in one pass each, what merge_offers_first_defer.sql dropped (listed in its
-- transaction-local setting), exactly as schema.sql declares them. The unique constraint fails the
-- merge, rolled back whole, if two rows share a trackier_id (the sweep check leaves one valid row
-- per id, so it never does); the foreign key is checked by one join instead of one trigger call
-- per row.
DO $restore$
DECLARE
    deferred text[] := string_to_array(current_setting('trackier_offer_sync.deferred', true), ',');
BEGIN
    IF 'offers_pkey' = ANY (deferred) THEN
        ALTER TABLE offers ADD CONSTRAINT offers_pkey PRIMARY KEY (id);
    END IF;
    IF 'offer_audit_pkey' = ANY (deferred) THEN
        ALTER TABLE offer_audit ADD CONSTRAINT offer_audit_pkey PRIMARY KEY (id);
    END IF;
    IF 'offers_trackier_id_key' = ANY (deferred) THEN
        ALTER TABLE offers ADD CONSTRAINT offers_trackier_id_key UNIQUE (trackier_id);
    END IF;
    IF 'offers_brand_id_idx' = ANY (deferred) THEN
        CREATE INDEX offers_brand_id_idx ON offers (brand_id);
    END IF;
    IF 'offers_brand_id_fkey' = ANY (deferred) THEN
        ALTER TABLE offers ADD CONSTRAINT offers_brand_id_fkey FOREIGN KEY (brand_id) REFERENCES brands (id);
    END IF;
    IF 'offer_audit_offer_idx' = ANY (deferred) THEN
        CREATE INDEX offer_audit_offer_idx ON offer_audit (offer_id, recorded_at);
    END IF;
    IF 'offer_audit_run_action_idx' = ANY (deferred) THEN
        CREATE INDEX offer_audit_run_action_idx ON offer_audit (run_id, action, id);
    END IF;
    PERFORM set_config('trackier_offer_sync.deferred', '', true);
END
$restore$
