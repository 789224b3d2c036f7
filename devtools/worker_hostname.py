"""``[core] hostname_callable`` for tests that run several Celery workers on one machine.

Airflow records the host a task instance ran on from this callable. Two ``airflow celery worker``
processes on one machine share its hostname, so devtools/airflow_server.py gives each worker an
``OFFER_SYNC_TEST_HOSTNAME`` (its Celery node name) and points ``hostname_callable`` here; every
other process falls back to the machine's name, as Airflow's default does.
"""

from __future__ import annotations

import os
import socket


def hostname() -> str:
    return os.environ.get("OFFER_SYNC_TEST_HOSTNAME") or socket.getfqdn()
