"""History, Run detail and Offer lookup in a real browser, with Airflow served under a sub-path.

One Airflow for the module with ``[api] base_url = http://127.0.0.1:<port>/airflow``: everything
(login, the UI, the plugin's page and API) lives under ``/airflow``, so every test here also checks
that no URL of the page escapes the sub-path (each same-origin request the browser makes is
recorded). Only the api-server and the dag-processor run: the catalogue's history is made by four
in-process syncs (``tests/ui_history.py``: added, changed, removed offers, a rejected record, a failed
run) against the offers database the api-server's plugin reads, so no scheduler is needed.

Checked against the database, never against constants: the chart has one point per run of
``sync_runs``, the run detail's counts are ``sync_runs``' counts, the CSV has the run's
``sync_rejects``, the offer lookup names the run that deactivated the offer. The console stays
clean (apart from Airflow's two known messages), and text from Trackier is never parsed as HTML.
Screenshots of each view go to ``docs/`` for the operator guide.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from devtools.airflow_server import FIXTURE_API_KEY, LiveAirflow, live_airflow
from devtools.fake_trackier import Catalogue
from tests.ui.test_browser import DOCS, VIEWPORT, Console, _open
from tests.ui.test_browser import browser as browser  # the module's Chromium fixture, shared
from tests.ui_history import FORMULA_ID, RENAMED_TITLE, TRICKY_TITLE, XSS, History, build_history

pytestmark = [pytest.mark.airflow, pytest.mark.browser]

BASE_PATH = "/airflow"
#: Alert thresholds of this Airflow: the chart must draw exactly these.
ENV = {"OFFER_SYNC_MAX_DURATION_S": "2", "OFFER_SYNC_MAX_ERROR_RATE": "0.002"}
TALL = {"width": VIEWPORT["width"], "height": 1750}


@pytest.fixture(scope="module")
def subpath(pg_admin_url: str) -> Iterator[tuple[LiveAirflow, History]]:
    with live_airflow(
        pg_admin_url,
        Catalogue(8, 400, seed=11),
        base_path=BASE_PATH,
        components=("api-server", "dag-processor"),
        extra_env=ENV,
    ) as live:
        live.unpause()  # no "DAG is paused" banner; without a scheduler nothing runs
        yield live, build_history(live.fake, live.offers_db_url, FIXTURE_API_KEY, ENV)


@dataclass
class Requests:
    """Same-origin requests the browser makes outside the sub-path (each one a bug of ours)."""

    origin: str
    outside: list[str] = field(default_factory=list)

    def on_request(self, request: Any) -> None:
        parts = urlsplit(request.url)
        if f"{parts.scheme}://{parts.netloc}" == self.origin and not parts.path.startswith(BASE_PATH + "/"):
            self.outside.append(request.url)


def _page(browser: Any, live: LiveAirflow) -> tuple[Any, Any, Any, Console, Requests]:
    """Logged in, on the Offer Sync page inside the Airflow UI: (context, page, frame, console, requests)."""
    from playwright.sync_api import expect

    parts = urlsplit(live.url)
    requests = Requests(f"{parts.scheme}://{parts.netloc}")
    context, page, console = _open(browser, live)
    page.on("request", requests.on_request)
    page.get_by_role("link", name="Offer Sync").click()
    expect(page).to_have_url(re.compile(rf"{BASE_PATH}/plugin/offer-sync"))
    frame = page.frame_locator("iframe")
    expect(frame.locator("#current-title")).to_have_text("Last sync")
    src = page.locator("iframe").element_handle().content_frame().url
    assert src.startswith(f"{live.url}/offer-sync/"), src  # the sidebar entry followed the sub-path
    return context, page, frame, console, requests


def _goto(page: Any, view: str) -> None:
    """Open a view by its hash inside the page's frame (what a bookmark or a link does)."""
    page.locator("iframe").element_handle().content_frame().evaluate("(h) => { location.hash = h; }", view)


def _clean(console: Console, requests: Requests) -> None:
    assert console.problems == []
    assert console.dialogs == []  # no alert() from markup in the data
    assert requests.outside == []


def _values(frame: Any, series: str) -> list[tuple[str, float]]:
    points = frame.locator(f'#history-chart circle[data-series="{series}"]')
    return [(p.get_attribute("data-run-id"), float(p.get_attribute("data-value"))) for p in points.all()]


def test_history_chart_has_one_point_per_run_and_the_alert_thresholds(
    subpath: tuple[LiveAirflow, History], browser: Any
) -> None:
    from playwright.sync_api import expect

    live, history = subpath
    runs = live.sql(
        "SELECT run_id, status, COALESCE(added, (result->>'added')::int), COALESCE(updated, 0), "
        "COALESCE(deactivated, 0), COALESCE(rejected, (result->>'rejected')::int), duration_s "
        "FROM sync_runs ORDER BY started_at"
    )
    context, page, frame, console, requests = _page(browser, live)
    try:
        frame.get_by_role("link", name="History", exact=True).click()
        chart = frame.locator("#history-chart .chart")
        expect(chart).to_have_attribute("data-runs", str(len(runs)))
        run_ids = [r[0] for r in runs]
        assert run_ids == history.run_ids
        for i, series in enumerate(("added", "updated", "deactivated", "rejected"), start=2):
            assert _values(frame, series) == [(r[0], float(r[i])) for r in runs], series
        assert [run for run, _ in _values(frame, "duration")] == run_ids  # one point per run
        assert [v for _, v in _values(frame, "duration")] == pytest.approx([float(r[6]) for r in runs], abs=1e-6)
        assert [run for run, _ in _values(frame, "error_rate")] == run_ids

        # The alert thresholds of this Airflow's environment, drawn as dashed lines with their value.
        expect(frame.locator('line[data-threshold="duration"]')).to_have_attribute("data-value", "2")
        expect(frame.locator('line[data-threshold="error_rate"]')).to_have_attribute("data-value", "0.002")
        expect(frame.locator('[data-threshold-label="duration"]')).to_have_text("alert above 2 s")
        expect(frame.locator('[data-threshold-label="error_rate"]')).to_have_text("alert above 0.20%")
        over = frame.locator('#history-chart circle.over[data-series="error_rate"]')
        assert sorted(p.get_attribute("data-run-id") for p in over.all()) == sorted(run_ids[1:])

        # The failed run at a glance: a red status cell and a band through every panel.
        band = frame.locator("#history-chart rect.band-failed")
        expect(band).to_have_count(1)
        expect(band).to_have_attribute("data-run-id", history.failed_run_id)
        statuses = frame.locator("#history-chart rect.status-cell")
        assert [c.get_attribute("data-status") for c in statuses.all()] == [r[1] for r in runs]

        # Hovering a run explains it; the table lists the same runs, newest first.
        frame.locator(f'#history-chart rect.hit[data-run-id="{run_ids[1]}"]').hover()
        expect(frame.locator(".chart-tip")).to_contain_text(run_ids[1])
        expect(frame.locator("#history-table tr[data-run-id]")).to_have_count(len(runs))
        page.screenshot(path=str(DOCS / "offer-sync-history.png"))

        # 90 runs: the same runs here (there are only four), fetched with the other window.
        frame.locator('[data-window="90"]').click()
        expect(frame.locator('[data-window="90"]')).to_have_attribute("aria-current", "true")
        expect(chart).to_have_attribute("data-runs", str(len(runs)))

        # Clicking a run's column opens it.
        frame.locator(f'#history-chart rect.hit[data-run-id="{history.failed_run_id}"]').click()
        expect(frame.locator("#run-summary")).to_have_attribute("data-run-id", history.failed_run_id)
        expect(frame.locator("#run-summary .pill").first).to_have_attribute("data-status", "failed")
        expect(frame.locator("[data-run-error]")).to_contain_text("circuit breaker")
        errors = frame.locator("#run-page-errors tr[data-page-error]")
        expect(errors).to_have_count(1)
        expect(errors).to_contain_text("failed_page")
        expect(frame.locator("#run-alerts")).to_contain_text("run_failed")
        _clean(console, requests)
    finally:
        context.close()


def test_run_detail_counts_equal_sync_runs_and_the_csv_has_its_rejects(
    subpath: tuple[LiveAirflow, History], browser: Any
) -> None:
    from playwright.sync_api import expect

    live, history = subpath
    run_id = history.run_ids[1]
    keys = ("added", "updated", "unchanged", "deactivated", "reactivated", "rejected", "duplicates")
    row = live.sql(f"SELECT {', '.join(keys)}, metrics FROM sync_runs WHERE run_id = %s", (run_id,))[0]
    context, page, frame, console, requests = _page(browser, live)
    try:
        frame.get_by_role("link", name="History", exact=True).click()
        frame.locator(f'#history-table tr[data-run-id="{run_id}"]').click()
        summary = frame.locator("#run-summary")
        expect(summary).to_have_attribute("data-run-id", run_id)
        shown = [int(summary.locator(f'[data-count="{k}"] .tile-value').inner_text().replace(",", "")) for k in keys]
        assert shown == list(row[:-1])
        metrics = row[-1]
        expect(frame.locator("#run-phases [data-phase]")).to_have_count(len(metrics["phases_s"]))
        shards = [t["task"] for t in metrics["tasks"] if t["task"].startswith(("advertisers", "campaigns"))]
        listed_shards = frame.locator("#run-shards tr[data-shard]").evaluate_all("rs => rs.map(r => r.dataset.shard)")
        assert listed_shards == shards
        expect(frame.locator("#run-alerts")).to_contain_text("error_rate")

        # Its rejects, as text: a markup reason and a formula-looking id are shown, never run.
        rejects = live.sql("SELECT id, record_key, reason FROM sync_rejects WHERE run_id = %s ORDER BY id", (run_id,))
        listed = frame.locator("#rejects-list tr[data-reject-id]")
        expect(listed).to_have_count(len(rejects))
        expect(listed.first).to_contain_text(FORMULA_ID)
        expect(listed.first).to_contain_text(XSS)
        assert frame.locator("#view-run img").count() == 0
        frame.locator("#reject-filter").fill("title:")  # no reject of this run has that reason
        expect(frame.locator('#rejects-list [data-empty="run-rejects"]')).to_be_visible()
        frame.locator("#reject-filter").fill("")
        expect(listed).to_have_count(len(rejects))

        # The CSV download: the run's rejects, the formula cell neutralised.
        with page.expect_download() as download:
            frame.locator("#rejects-csv").click()
        text = Path(download.value.path()).read_text(encoding="utf-8")
        rows = list(csv.DictReader(io.StringIO(text)))
        assert [(int(r["id"]), r["record_key"].removeprefix("'"), r["reason"]) for r in rows] == rejects
        assert rows[0]["record_key"] == "'" + FORMULA_ID
        assert download.value.suggested_filename.startswith("rejects-scheduled__2026-11-22")

        # Its changes, one kind at a time: updated shows field: old -> new.
        frame.locator('#run-changes button[data-action="updated"]').click()
        changed = frame.locator(f'#changes-list tr[data-trackier-id="{history.xss_offer}"]')
        expect(changed.locator('li[data-field="title"]')).to_contain_text(f"→ {XSS}")
        expect(frame.locator('#changes-list tr[data-action="updated"]')).to_have_count(row[1])
        deactivated = {
            r[0]
            for r in live.sql(
                "SELECT trackier_id FROM offer_audit WHERE run_id = %s AND action = 'deactivated'", (run_id,)
            )
        }
        frame.locator('#run-changes button[data-action="deactivated"]').click()
        rows_gone = frame.locator('#changes-list tr[data-action="deactivated"]')
        expect(rows_gone).to_have_count(len(deactivated))
        assert set(rows_gone.evaluate_all("rs => rs.map(r => r.dataset.trackierId)")) == deactivated
        assert set(history.removed_in_run2) <= deactivated
        assert frame.locator("#view-run img").count() == 0
        page.set_viewport_size(TALL)
        frame.locator('#run-changes button[data-action="updated"]').click()
        expect(frame.locator('#changes-list tr[data-action="updated"]')).to_have_count(row[1])
        page.screenshot(path=str(DOCS / "offer-sync-run-detail.png"))
        page.set_viewport_size(VIEWPORT)

        # The first sync added 400 offers: its changes come 50 at a time, each page from the server.
        _goto(page, f"#run/{history.run_ids[0]}")
        expect(frame.locator("#run-summary")).to_have_attribute("data-run-id", history.run_ids[0])
        audit = frame.locator("#changes-list tr[data-audit-id]")
        expect(audit).to_have_count(50)
        first_page = audit.evaluate_all("rows => rows.map(r => Number(r.dataset.auditId))")
        frame.locator('[data-pager="changes"] [data-page="next"]').click()
        expect(audit.first).not_to_have_attribute("data-audit-id", str(first_page[0]))
        second_page = audit.evaluate_all("rows => rows.map(r => Number(r.dataset.auditId))")
        assert len(second_page) == 50
        assert min(second_page) > max(first_page)
        frame.locator('[data-pager="changes"] [data-page="prev"]').click()
        expect(audit.first).to_have_attribute("data-audit-id", str(first_page[0]))
        _clean(console, requests)
    finally:
        context.close()


def test_offer_lookup_shows_the_run_that_deactivated_an_offer(
    subpath: tuple[LiveAirflow, History], browser: Any
) -> None:
    from playwright.sync_api import expect

    live, history = subpath
    gone = history.removed_in_run2[0]
    trail = live.sql("SELECT action, run_id FROM offer_audit WHERE trackier_id = %s ORDER BY id DESC", (gone,))
    context, page, frame, console, requests = _page(browser, live)
    try:
        frame.get_by_role("link", name="Offer lookup", exact=True).click()
        frame.locator("#offer-query").fill(gone)
        frame.locator("#offer-query").press("Enter")
        frame.locator(f'#offer-results tr[data-trackier-id="{gone}"] a').click()
        detail = frame.locator("#offer-detail")
        expect(detail).to_have_attribute("data-trackier-id", gone)
        expect(detail.locator("[data-active]")).to_have_text("Inactive")
        why = detail.locator('[data-why="deactivated"]')
        expect(why).to_have_attribute("data-run-id", history.run_ids[1])
        expect(why).to_contain_text(history.run_ids[1])
        rows = frame.locator("#offer-audit tr[data-audit-id]")
        expect(rows).to_have_count(len(trail))
        assert rows.evaluate_all("rs => rs.map(r => [r.dataset.action, r.dataset.runId])") == [list(t) for t in trail]
        page.set_viewport_size({"width": VIEWPORT["width"], "height": 1200})
        page.screenshot(path=str(DOCS / "offer-sync-offer-lookup.png"))
        page.set_viewport_size(VIEWPORT)
        why.get_by_role("link", name=history.run_ids[1]).click()  # the answer links to the run
        expect(frame.locator("#run-summary")).to_have_attribute("data-run-id", history.run_ids[1])

        # Titles are text: markup, quotes, an RTL override, tabs and newlines come out as stored.
        frame.get_by_role("link", name="Offer lookup", exact=True).click()
        frame.locator("#offer-query").fill("<img")
        frame.locator("#offer-query").press("Enter")
        expect(frame.locator("#offer-results tr[data-trackier-id]")).to_have_count(1)
        expect(frame.locator("#offer-results .title-cell")).to_have_text(XSS)
        _goto(page, f"#offer/{history.tricky_offer}")
        expect(frame.locator("#offer-detail")).to_have_attribute("data-trackier-id", history.tricky_offer)
        assert frame.locator("#offer-detail .offer-title").text_content() == TRICKY_TITLE
        assert frame.locator("#offer-detail b, #view-offers img").count() == 0
        # % and _ are searched for as typed.
        frame.get_by_role("link", name="Offer lookup", exact=True).click()
        frame.locator("#offer-query").fill("%")
        frame.locator("#offer-query").press("Enter")
        expect(frame.locator("#offer-results tr[data-trackier-id]")).to_have_count(1)
        expect(frame.locator("#offer-results .title-cell")).to_have_text(RENAMED_TITLE)
        _clean(console, requests)
    finally:
        context.close()


def test_page_follows_the_airflow_ui_light_and_dark_mode(subpath: tuple[LiveAirflow, History], browser: Any) -> None:
    from playwright.sync_api import expect

    live, history = subpath
    context, page, frame, console, requests = _page(browser, live)
    try:
        root = frame.locator("html")
        expect(root).to_have_attribute("data-theme", "light")
        light = frame.locator("body").evaluate("b => getComputedStyle(b).backgroundColor")
        # Switch with Airflow's own menu: the page follows at once, without a reload.
        page.get_by_role("button", name="User").click()
        page.get_by_role("menuitem", name="Appearance").click()
        page.get_by_role("menuitemradio", name="Dark Mode").click()
        expect(page.locator("html")).to_have_class(re.compile(r"\bdark\b"))
        expect(root).to_have_attribute("data-theme", "dark")
        dark = frame.locator("body").evaluate("b => getComputedStyle(b).backgroundColor")
        assert _luminance(dark) < 0.1 < 0.8 < _luminance(light), (dark, light)
        frame.get_by_role("link", name="History", exact=True).click()
        expect(frame.locator("#history-chart .chart")).to_have_attribute("data-runs", str(len(history.run_ids)))
        page.mouse.move(0, 0)
        page.screenshot(path=str(DOCS / "offer-sync-dark.png"))
        # A new page load starts dark (the choice Airflow stored), and back to light follows too.
        page.reload()
        expect(page.frame_locator("iframe").locator("html")).to_have_attribute("data-theme", "dark")
        page.get_by_role("button", name="User").click()
        page.get_by_role("menuitem", name="Appearance").click()
        page.get_by_role("menuitemradio", name="Light Mode").click()
        expect(page.frame_locator("iframe").locator("html")).to_have_attribute("data-theme", "light")
        _clean(console, requests)
    finally:
        context.close()


def _luminance(css_rgb: str) -> float:
    r, g, b = (int(v) for v in re.findall(r"\d+", css_rgb)[:3])
    return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255


def test_under_the_sub_path_anonymous_visitors_go_to_its_login_and_the_api_needs_a_token(
    subpath: tuple[LiveAirflow, History],
) -> None:
    import requests

    live, history = subpath
    page = requests.get(f"{live.url}/offer-sync/", allow_redirects=False, timeout=30)
    assert page.status_code == 303
    assert page.headers["location"].startswith(f"{BASE_PATH}/auth/login?next=")
    run = {"run_id": history.run_ids[1]}
    assert requests.get(f"{live.url}/offer-sync/api/run", params=run, timeout=30).status_code == 401
    assert requests.get(f"{live.url}/offer-sync/api/run/rejects.csv", params=run, timeout=30).status_code == 401
    html = live.api("GET", "/offer-sync/", user="viewer")
    assert html.status_code == 200
    # Rendered with the sub-path: the page's own base and Airflow's root (links, login).
    assert f'data-base="{BASE_PATH}/offer-sync"' in html.text
    assert f'data-airflow-root="{BASE_PATH}"' in html.text
    assert f'href="{BASE_PATH}/offer-sync/static/page.css"' in html.text
    csv_text = live.api("GET", "/offer-sync/api/run/rejects.csv", user="viewer", params=run).text
    assert FORMULA_ID.replace('"', '""') in csv_text
