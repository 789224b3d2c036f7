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
- ``GET /static/page.js|page.css``: behind login too.

The browser authenticates with the ``_token`` cookie the Airflow UI sets at login (same origin,
SameSite=Lax); API clients may send ``Authorization: Bearer <token>`` instead. The trigger only
accepts ``application/json`` bodies, so a cross-site form post cannot reach it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag, requires_authenticated
from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import BaseModel, ConfigDict

from include.offer_sync.ui.data import DAG_ID, snapshot

log = logging.getLogger(__name__)
# FastAPI reads the route signatures' annotations (GetUserDep, SessionDep) from this module's globals.

HERE = Path(__file__).parent
STATIC_FILES = {"page.js": "text/javascript; charset=utf-8", "page.css": "text/css; charset=utf-8"}
NO_STORE = {"Cache-Control": "no-store"}
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


def _can(user: Any, method: str) -> bool:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails

    return bool(get_auth_manager().is_authorized_dag(
        method=method, access_entity=DagAccessEntity.RUN, details=DagDetails(id=DAG_ID), user=user,  # type: ignore[arg-type]
    ))  # fmt: skip


def create_app() -> FastAPI:
    """Build the app (this module imports Airflow's API modules: only the api-server loads it)."""
    can_read = Depends(requires_access_dag("GET", DagAccessEntity.RUN, param_dag_id=DAG_ID))
    can_trigger = Depends(requires_access_dag("POST", DagAccessEntity.RUN, param_dag_id=DAG_ID))

    app = FastAPI(title="Offer Sync", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page(request: Request) -> Response:
        user = await _optional_user(request)
        base = request.scope.get("root_path", "").rstrip("/")
        if user is None:
            from airflow.api_fastapi.app import get_auth_manager

            return RedirectResponse(get_auth_manager().get_url_login(next_url=str(request.url)),
                                    status_code=status.HTTP_303_SEE_OTHER)  # fmt: skip
        if not _can(user, "GET"):
            html = _templates.get_template("forbidden.html").render(user=user.get_name(), base=base)
            return HTMLResponse(html, status_code=status.HTTP_403_FORBIDDEN, headers=NO_STORE)
        html = _templates.get_template("page.html").render(
            base=base, dag_id=DAG_ID, user=user.get_name(), can_trigger=_can(user, "POST")
        )
        return HTMLResponse(html, headers=NO_STORE)

    @app.get("/static/{name}", include_in_schema=False, dependencies=[Depends(requires_authenticated())])
    def static(name: str) -> Response:
        if name not in STATIC_FILES:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "not found")
        return Response((HERE / "static" / name).read_bytes(), media_type=STATIC_FILES[name],
                        headers={"Cache-Control": "no-cache"})  # fmt: skip

    @app.get("/api/status", dependencies=[can_read])
    def api_status(user: GetUserDep, session: SessionDep) -> JSONResponse:
        data = snapshot(session)
        data["user"] = {"name": user.get_name(), "can_trigger": _can(user, "POST")}
        return JSONResponse(data, headers=NO_STORE)

    @app.post("/api/sync", status_code=status.HTTP_201_CREATED,
              dependencies=[can_trigger, Depends(_require_json)])  # fmt: skip
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
        run = trigger_dag(DAG_ID, triggered_by=DagRunTriggeredByType.UI,
                          triggering_user_name=user.get_name(), conf={"dry_run": body.dry_run})  # fmt: skip
        if run is None:
            raise HTTPException(status.HTTP_500_INTERNAL_SERVER_ERROR, "Airflow did not create the run")
        log.info("Offer Sync page: %s triggered %s (dry_run=%s)", user.get_name(), run.run_id, body.dry_run)
        return JSONResponse({"run_id": run.run_id, "state": str(run.state), "is_paused": bool(dag.is_paused)},
                            status_code=status.HTTP_201_CREATED)  # fmt: skip

    return app

