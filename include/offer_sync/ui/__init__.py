"""The Offer Sync page inside the Airflow UI (served by the api-server through ``plugins/offer_sync_plugin.py``).

- ``app.py``: the FastAPI app (HTML page, JSON status, trigger), every route behind Airflow's auth;
- ``data.py``: what the page shows, read from the offers database (``sql/ui_*.sql``) and from
  Airflow's metadata database (the running DAG run's task instances and XComs);
- ``templates/page.html``, ``static/page.js``, ``static/page.css``: the page; the script renders
  every value with ``textContent``, so nothing from Trackier is ever parsed as HTML.
"""
