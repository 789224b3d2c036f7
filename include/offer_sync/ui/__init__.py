"""The Offer Sync page inside the Airflow UI (served by the api-server through ``plugins/offer_sync_plugin.py``).

- ``app.py``: the FastAPI app (HTML page, JSON status, trigger, history, run detail, offer lookup,
  the rejects as CSV), every route behind Airflow's auth;
- ``data.py``: the overview (last sync, live progress), read from the offers database
  (``sql/ui_*.sql``) and from Airflow's metadata database (the running DAG run's task instances
  and XComs);
- ``explore.py``: history, one run, one offer: keyset-paginated queries, never a whole table;
- ``templates/page.html`` and ``static/``: the page. ``theme.js`` follows Airflow's light/dark
  mode, ``common.js`` holds the DOM helpers, ``page.js`` the overview, ``chart.js`` the History
  chart (plain SVG, no library), ``views.js`` the other views. Every value is rendered with
  ``textContent``, so nothing from Trackier is ever parsed as HTML.

This module stays import-light: the plugin reads ``URL_PREFIX`` from it in every process.
"""

#: Where the api-server mounts the page's app (``fastapi_apps[].url_prefix``).
URL_PREFIX = "/offer-sync"
