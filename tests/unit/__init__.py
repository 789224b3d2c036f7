"""No database, no Airflow: pure functions and the in-thread fake Trackier over loopback."""
