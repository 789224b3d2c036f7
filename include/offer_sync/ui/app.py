"""The Offer Sync page's FastAPI app, mounted by the api-server at ``/offer-sync``.

Airflow does not protect plugin routes: an app mounted through ``fastapi_apps`` answers anyone
unless each route asks for Airflow's own auth dependencies. So every route here does:

- ``GET /`` (the HTML page): an anonymous or expired visitor is redirected to Airflow's login
  page (``?next=`` brings them back); a user who may not read the DAG's runs gets a 403 page;
- ``GET /api/status`` (JSON the page polls): 401 without credentials, 403 for a bad token or a
  user who may not read the DAG's runs;
- ``POST /api/sync`` (the "Sync from Trackier" button): additionally needs permission to create
  runs of the DAG (a ``viewer`` gets 403); the run is triggered *as the logged-in user*
  (``triggering_user_name``), exactly like the stock Trigger button;
- ``GET /api/history``, ``/api/run``, ``/api/run/rejects``, ``/api/run/changes``, ``/api/offers``,
  ``/api/offer`` (JSON for the History, Run detail and Offer lookup views) and
  ``GET /api/run/rejects.csv`` (a run's rejects, streamed): the same read permission as the status;
- ``GET /static/<file>``: behind login too.

Sub-path deployments (``[api] base_url`` with a path, e.g. ``https://host/airflow``): the
api-server gives this app a ``root_path`` of ``/airflow/offer-sync``; the page is rendered with
that (``base``, for its own requests) and with the Airflow root without the mount (``airflow_root``,
for links to Airflow's pages and its login), so no URL in the page or its script is absolute.

The browser authenticates with the ``_token`` cookie the Airflow UI sets at login (same origin,
SameSite=Lax); API clients may send ``Authorization: Bearer <token>`` instead. The trigger only
accepts ``application/json`` bodies, so a cross-site form post cannot reach it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, Any

from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag, requires_authenticated
from fastapi import Depends, FastAPI, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import BaseModel, ConfigDict

from include.offer_sync.ui import URL_PREFIX, explore
from include.offer_sync.ui.data import (
    DAG_ID,
    OffersDbError,
    jsonable,
    offers_connection,
    offers_db_settings,
    snapshot,
)

log = logging.getLogger(__name__)
# FastAPI reads the route signatures' annotations (GetUserDep, SessionDep) from this module's globals.

HERE = Path(__file__).parent
_JS = "text/javascript; charset=utf-8"
STATIC_FILES = {
    "page.css": "text/css; charset=utf-8",
    "theme.js": _JS,
    "common.js": _JS,
    "page.js": _JS,
    "chart.js": _JS,
    "views.js": _JS,
}
NO_STORE = {"Cache-Control": "no-store"}
RunId = Annotated[str, Query(min_length=1, max_length=250, description="the Airflow run id")]
After = Annotated[int, Query(ge=0, description="keyset cursor: the `next` of the previous page")]
Limit = Annotated[int, Query(ge=1, le=explore.PAGE_MAX)]
Text = Annotated[str | None, Query(max_length=200)]
HistoryLimit = Annotated[int, Query(ge=1, le=explore.HISTORY_MAX, description="how many runs, newest")]
_templates = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]))


class SyncRequest(BaseModel):
    """Body of ``POST /api/sync``: what the page's controls can change (everything else: defaults)."""

    model_config = ConfigDict(extra="forbid")
    dry_run: bool = False


def _require_json(request: Request) -> None:
    if not request.headers.get("content-type", "").lower().startswith("application/json"):
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, "send the body as application/json")


async def _optional_user(request: Request) -> Any:
    """The logged-in user, or None (no cookie/header, expired or invalid token)."""
    from airflow.api_fastapi.core_api.security import bearer_scheme, get_user

    try:
        return await get_user(request, None, await bearer_scheme(request))
    except HTTPException:
        return None


def page_roots(scope: dict[str, Any]) -> tuple[str, str]:
    """``(base, airflow_root)``: this app's URL path and Airflow's, both without a trailing slash.

    ``root_path`` is ``[api] base_url``'s path plus the mount (``/airflow/offer-sync``, or just
    ``/offer-sync``); Airflow's own pages live under what is left when the mount is taken off.
    """
    base = str(scope.get("root_path", "")).rstrip("/")
    if base.endswith(URL_PREFIX):
        return base, base[: -len(URL_PREFIX)]
    return base, str(scope.get("app_root_path", "")).rstrip("/")


def _offers_db_unavailable(exc: OffersDbError) -> HTTPException:
    log.warning("Offer Sync page: %s", exc)
    return HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc))


def _json(data: Any) -> JSONResponse:
    return JSONResponse(jsonable(data), headers=NO_STORE)


def _filename(run_id: str) -> str:
    """A download name that any OS and the Content-Disposition header accept."""
    return "rejects-" + (re.sub(r"[^A-Za-z0-9._-]+", "_", run_id).strip("._") or "run")[:120] + ".csv"


def _can(user: Any, method: str) -> bool:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails

    return bool(
        get_auth_manager().is_authorized_dag(
            method=method,
            access_entity=DagAccessEntity.RUN,
            details=DagDetails(id=DAG_ID),
            user=user,  # type: ignore[arg-type]
        )
    )


def create_app() -> FastAPI:
    """Build the app (this module imports Airflow's API modules: only the api-server loads it)."""
    can_read = Depends(requires_access_dag("GET", DagAccessEntity.RUN, param_dag_id=DAG_ID))
    can_trigger = Depends(requires_access_dag("POST", DagAccessEntity.RUN, param_dag_id=DAG_ID))

    app = FastAPI(title="Offer Sync", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page(request: Request) -> Response:
        user = await _optional_user(request)
        base, airflow_root = page_roots(request.scope)
        if user is None:
            from airflow.api_fastapi.app import get_auth_manager

            return RedirectResponse(
                get_auth_manager().get_url_login(next_url=str(request.url)), status_code=status.HTTP_303_SEE_OTHER
            )
        if not _can(user, "GET"):
            html = _templates.get_template("forbidden.html").render(user=user.get_name(), base=base)
            return HTMLResponse(html, status_code=status.HTTP_403_FORBIDDEN, headers=NO_STORE)
        html = _templates.get_template("page.html").render(
            base=base,
            airflow_root=airflow_root,
            dag_id=DAG_ID,
            user=user.get_name(),
            can_trigger=_can(user, "POST"),
        )
        return HTMLResponse(html, headers=NO_STORE)

    @app.get("/static/{name}", include_in_schema=False, dependencies=[Depends(requires_authenticated())])
    def static(name: str) -> Response:
        if name not in STATIC_FILES:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "not found")
        return Response(
            (HERE / "static" / name).read_bytes(), media_type=STATIC_FILES[name], headers={"Cache-Control": "no-cache"}
        )

    @app.get("/api/status", dependencies=[can_read])
    def api_status(user: GetUserDep, session: SessionDep) -> JSONResponse:
        data = snapshot(session)
        data["user"] = {"name": user.get_name(), "can_trigger": _can(user, "POST")}
        return JSONResponse(data, headers=NO_STORE)

    @app.post("/api/sync", status_code=status.HTTP_201_CREATED, dependencies=[can_trigger, Depends(_require_json)])
    def api_sync(body: SyncRequest, user: GetUserDep, session: SessionDep) -> JSONResponse:
        from airflow.api.common.trigger_dag import trigger_dag
        from airflow.models.dag import DagModel
        from airflow.models.dagrun import DagRun
        from airflow.utils.types import DagRunTriggeredByType
        from sqlalchemy import select

        dag = session.scalar(select(DagModel).where(DagModel.dag_id == DAG_ID))
        if dag is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"DAG {DAG_ID} is not parsed yet")
        active = session.scalar(
            select(DagRun.run_id).where(DagRun.dag_id == DAG_ID, DagRun.state.in_(["queued", "running"])).limit(1)
        )
        if active is not None:
            raise HTTPException(status.HTTP_409_CONFLICT, f"a sync is already queued or running: {active}")
        run = trigger_dag(
            DAG_ID,
            triggered_by=DagRunTriggeredByType.UI,
            triggering_user_name=user.get_name(),
            conf={"dry_run": body.dry_run},
        )
        if run is None:
            raise HTTPException(status.HTTP_500_INTERNAL_SERVER_ERROR, "Airflow did not create the run")
        log.info("Offer Sync page: %s triggered %s (dry_run=%s)", user.get_name(), run.run_id, body.dry_run)
        return JSONResponse(
            {"run_id": run.run_id, "state": str(run.state), "is_paused": bool(dag.is_paused)},
            status_code=status.HTTP_201_CREATED,
        )

    # --- History, Run detail, Offer lookup: read-only, the same permission as the status ---------

    @app.get("/api/history", dependencies=[can_read])
    def api_history(limit: HistoryLimit = explore.HISTORY_WINDOWS[0]) -> JSONResponse:
        try:
            with offers_connection(offers_db_settings()) as conn:
                return _json(explore.run_history(conn, limit))
        except OffersDbError as exc:
            raise _offers_db_unavailable(exc) from exc

    @app.get("/api/run", dependencies=[can_read])
    def api_run(run_id: RunId, session: SessionDep) -> JSONResponse:
        try:
            with offers_connection(offers_db_settings()) as conn:
                detail = explore.run_detail(conn, run_id)
        except OffersDbError as exc:
            raise _offers_db_unavailable(exc) from exc
        if detail is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no sync run {run_id!r} in sync_runs")
        detail["airflow"] = explore.airflow_run_info(session, run_id)
        return _json(detail)

    @app.get("/api/run/rejects", dependencies=[can_read])
    def api_run_rejects(
        run_id: RunId, reason: Text = None, after: After = 0, limit: Limit = explore.PAGE_DEFAULT
    ) -> JSONResponse:
        try:
            with offers_connection(offers_db_settings()) as conn:
                return _json(explore.run_rejects(conn, run_id, reason=reason, after=after, limit=limit))
        except OffersDbError as exc:
            raise _offers_db_unavailable(exc) from exc

    @app.get("/api/run/rejects.csv", dependencies=[can_read])
    def api_run_rejects_csv(run_id: RunId, reason: Text = None) -> StreamingResponse:
        """Every reject of the run (raw records whole), streamed in keyset batches as CSV.

        The run is looked up and the first batch read before the response starts, so a missing
        run is a 404 and a database error a 503, not a broken download.
        """
        stack = ExitStack()
        try:
            conn = stack.enter_context(offers_connection(offers_db_settings()))
            if explore.run_row(conn, run_id) is None:
                raise HTTPException(status.HTTP_404_NOT_FOUND, f"no sync run {run_id!r} in sync_runs")
            first = explore.run_rejects(conn, run_id, reason=reason, limit=explore.CSV_BATCH, raw_chars=None)
        except OffersDbError as exc:
            stack.close()
            raise _offers_db_unavailable(exc) from exc
        except BaseException:
            stack.close()
            raise

        def body() -> Iterator[str]:
            with stack:  # the connection lives as long as the download
                yield from explore.iter_rejects_csv(conn, run_id, reason, first=first)

        return StreamingResponse(
            body(),
            media_type="text/csv; charset=utf-8",
            headers={
                **NO_STORE,
                "Content-Disposition": f'attachment; filename="{_filename(run_id)}"',
                "X-Content-Type-Options": "nosniff",
            },
        )

    @app.get("/api/run/changes", dependencies=[can_read])
    def api_run_changes(
        run_id: RunId, action: explore.Action, after: After = 0, limit: Limit = explore.PAGE_DEFAULT
    ) -> JSONResponse:
        try:
            with offers_connection(offers_db_settings()) as conn:
                return _json(explore.run_changes(conn, run_id, action, after=after, limit=limit))
        except OffersDbError as exc:
            raise _offers_db_unavailable(exc) from exc

    @app.get("/api/offers", dependencies=[can_read])
    def api_offers(
        q: Annotated[str, Query(min_length=1, max_length=200)],
        limit: Annotated[int, Query(ge=1, le=100)] = explore.SEARCH_LIMIT,
    ) -> JSONResponse:
        try:
            with offers_connection(offers_db_settings()) as conn:
                return _json({"q": q, "offers": explore.search_offers(conn, q, limit), "limit": limit})
        except OffersDbError as exc:
            raise _offers_db_unavailable(exc) from exc

    @app.get("/api/offer", dependencies=[can_read])
    def api_offer(
        trackier_id: Annotated[str, Query(min_length=1, max_length=200)],
        before: Annotated[int | None, Query(ge=1)] = None,
        limit: Limit = explore.PAGE_DEFAULT,
    ) -> JSONResponse:
        try:
            with offers_connection(offers_db_settings()) as conn:
                found = explore.offer_lookup(conn, trackier_id, before=before, limit=limit)
        except OffersDbError as exc:
            raise _offers_db_unavailable(exc) from exc
        if found is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no offer with Trackier id {trackier_id!r}")
        return _json(found)

    return app
