"""A real Airflow: ``airflow dags test`` subprocesses, or the live api-server/scheduler."""
