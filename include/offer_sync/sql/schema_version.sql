-- Which catalogue schema version is installed (fails with undefined_table on a fresh database).
SELECT max(version) AS version FROM offer_sync_schema
