"""trackier-offer-sync: keep a PostgreSQL catalogue of affiliate offers in step with Trackier.

The DAG in ``dags/trackier_offer_sync.py`` only wires tasks; everything it does lives here so that
tests, the demo and the benchmark can call it without a scheduler:

- ``settings``  - connection settings for the API and the database (never logs the key)
- ``client``    - the Trackier v2 HTTP client: auth, retries, rate limit, both pagination styles
- ``models``    - pydantic models that accept the real v2 shape and the spec's simplified fixture
- ``plan``      - splits a sweep into coarse shards for dynamic task mapping
- ``staging``   - per-run UNLOGGED staging tables loaded with COPY, one transaction per shard
- ``sweep``     - set-level checks of a staged sweep: duplicates, orphans, the error-rate breaker
- ``merge``     - the set-based merge into ``brands``/``offers`` with an audit trail
- ``runs``      - the ``sync_runs`` record and the ``sync_result`` contract
- ``fake_trackier`` - a local fake of the API for the demo, tests and benchmark
"""
