"""trackier-offer-sync: keep a PostgreSQL catalogue of affiliate offers in step with Trackier.

The DAG in ``dags/trackier_offer_sync.py`` only wires tasks; everything it does lives here, so that
tests, the demo and the benchmark can call it without a scheduler. The folders are the architecture:

- ``tasks``      - one function per DAG task, named like the task (what each returns: ``contracts``)
- ``contracts``  - the typed dicts that travel between tasks (XCom) and between modules
- ``constants``  - every shared name and default (DAG id, pool, connection ids, thresholds, shard limits)
- ``settings``   - connection settings for the API and the database (never logs the key)
- ``db``, ``metrics``, ``errors`` - connections and SQL files; measurements; what can go wrong
- ``trackier/``  - the API: ``http`` (auth, retries, rate limit), ``pagination``, ``shards``, ``models``
- ``extract``    - one mapped task's work: stream a shard from Trackier, validate, COPY into staging
- ``load/``      - PostgreSQL: ``staging``, ``sweep`` checks, the ``merge``, the ``runs`` record, ``schema``
- ``alerts/``    - ``rules`` (what fires), ``delivery`` (log, table, webhook, notifiers), ``callbacks``
- ``ui/``        - the Offer Sync page in the Airflow UI
- ``sql/``       - every statement, one purpose per file, named after the module that runs it
"""
