"""Airflow plugin: the Offer Sync page in the Airflow UI's sidebar.

Thin on purpose: the page lives in ``include/offer_sync/ui`` (importable and tested). The app is
built on its first request, because every task process loads plugins too and has no use for a
web app (nor for the API modules it imports). Restart the api-server after changing the page.
"""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

from include.offer_sync.ui import URL_PREFIX


class _LazyOfferSyncApp:
    """An ASGI app that builds ``include.offer_sync.ui.app.create_app()`` on first use."""

    def __init__(self) -> None:
        self._app: Any = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if self._app is None:
            from include.offer_sync.ui.app import create_app

            self._app = create_app()
        await self._app(scope, receive, send)


class OfferSyncPlugin(AirflowPlugin):
    """Mounts the page at ``/offer-sync/`` and adds "Offer Sync" to the sidebar (shown in an iframe).

    The sidebar entry's ``href`` is relative (no leading ``/``): the Airflow UI's document has a
    ``<base href>`` of ``[api] base_url``'s path, so the iframe loads ``<base path>/offer-sync/``
    whether Airflow is served at ``/`` or under a sub-path such as ``/airflow/``. An absolute
    ``/offer-sync/`` would miss the sub-path (and the login cookie, which is scoped to it).
    """

    name = "offer_sync"
    fastapi_apps = [{"app": _LazyOfferSyncApp(), "url_prefix": URL_PREFIX, "name": "Offer Sync"}]  # noqa: RUF012
    external_views = [  # noqa: RUF012
        {
            "name": "Offer Sync",
            "href": URL_PREFIX.lstrip("/") + "/",
            "destination": "nav",
            "url_route": "offer-sync",
            "nav_top_level": True,
        }
    ]
