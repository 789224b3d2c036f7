"""Alerts: a run that is slow, lossy, memory-hungry, cut off from its database or failed says so.

- ``rules``: the thresholds and which rule a ``sync_result`` breaks (pure functions);
- ``delivery``: the one notifier: log, ``sync_alerts`` row, webhook, extra Airflow notifiers;
- ``callbacks``: where the checks run: ``publish_result``, the DAG and task callbacks, the
  deadline alert (named by its dotted path in the DAG file).
"""
