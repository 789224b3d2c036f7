"""Development tools, never shipped and never imported by the DAG package: the fake Trackier,
``make demo``, the ``airflow dags test`` runner, a live Airflow for tests, the in-process sync.
"""
