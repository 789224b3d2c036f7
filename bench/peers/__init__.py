"""The systems we compare against. They run in ``bench/.venv-peers`` (dlt never shares the DAG's venv),
as subprocesses of the benchmark, so they import nothing from ``include`` and only the standard
library, ``requests``, ``psycopg2`` and ``dlt``.
"""
