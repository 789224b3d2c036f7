"""The operator's manual sync in a real browser: Playwright for Python driving Debian's Chromium.

Against the real Airflow of ``airflow_server`` (api-server with the Offer Sync plugin, scheduler,
dag-processor): log in through Airflow's login page, open "Offer Sync" from the sidebar, click
"Sync from Trackier", watch the live progress, check the final counts against ``sync_runs``, and
trigger once more through the stock "Trigger Dag" form with changed params. The browser console
must stay clean apart from two known messages of Airflow's own UI (a 401 on ``/ui/config`` before
login, and Chrome's warning about the plugin iframe's sandbox).

Screenshots of the page (idle, running, done) are written to ``docs/`` for the README. The fake
Trackier answers with ``latency_ms`` of delay while the sync runs, so "running" lasts long enough
to be seen (a poll every 2 s) without any timed assertion.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from devtools.airflow_server import DAG_ID, LiveAirflow, wait_until

pytestmark = [pytest.mark.airflow, pytest.mark.browser]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DOCS = Path(__file__).resolve().parents[2] / "docs"
XSS = "<img src=x onerror=alert(1)>"
VIEWPORT = {"width": 1360, "height": 1000}
SANDBOX_WARNING = "allow-scripts and allow-same-origin"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail("Chromium is missing: `apt-get install -y chromium` (make browser / .ci/run do it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@dataclass
class Console:
    """Everything the page and its frames print, minus Airflow's two known messages."""

    logged_in: bool = False
    problems: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def on_console(self, msg: Any) -> None:
        url = (msg.location or {}).get("url", "")
        if msg.type == "error":
            if not self.logged_in and url.endswith("/ui/config") and "401" in msg.text:
                return  # the UI asks for its config before anyone has logged in
            self.problems.append(f"console error: {msg.text} @ {url}")
        elif msg.type == "warning":
            if SANDBOX_WARNING in msg.text:
                return  # Chrome's note on the UI's plugin iframe (allow-scripts + allow-same-origin)
            if "/offer-sync" in url:
                self.problems.append(f"console warning from the page: {msg.text} @ {url}")

    def attach(self, page: Any) -> None:
        page.on("console", self.on_console)
        page.on("pageerror", lambda exc: self.problems.append(f"uncaught: {exc}"))
        page.on("dialog", lambda dialog: (self.dialogs.append(dialog.message), dialog.dismiss()))


def _open(browser: Any, live: LiveAirflow, user: str = "admin") -> tuple[Any, Any, Console]:
    """A fresh context, logged in through Airflow's login page."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    console = Console()
    console.attach(page)
    page.goto(f"{live.url}/")
    page.get_by_label("Username").fill(user)
    page.get_by_label("Password").fill(live.passwords[user])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{live.url}/")
    console.logged_in = True
    return context, page, console


def _tile(frame: Any, key: str) -> Any:
    return frame.locator(f'#current-body [data-count="{key}"] .tile-value')


def _int(text: str) -> int:
    return int(text.replace(",", "").strip())


def test_case_2_manual_sync_trigger_from_the_offer_sync_page(airflow_server: LiveAirflow, browser: Any) -> None:
    from playwright.sync_api import expect

    live = airflow_server
    live.unpause_and_settle()  # the catch-up run Airflow starts on unpausing, out of the way
    # Give the next sweep something to report: new, changed, removed and one rejected campaign
    # whose title and currency are markup (its reason and raw record are shown on the page).
    fake = live.fake
    victim = fake.catalogue.campaign_ids()[0]
    fake.mutate("add_campaigns", count=5)
    fake.mutate("remove_campaigns", count=3)
    fake.mutate("change_payouts", fraction=0.05, seed=3)
    fake.mutate("set_campaign", id=victim, fields={"title": XSS, "currency": XSS})
    live.sql(
        "INSERT INTO sync_alerts (rule, severity, message, link) VALUES (%s, %s, %s, %s)",
        ("xss_probe", "warning", f"alert text {XSS}", "javascript:alert(1)"),
    )

    context, page, console = _open(browser, live)
    try:
        page.get_by_role("link", name="Offer Sync").click()
        expect(page).to_have_url(re.compile(r"/plugin/offer-sync"))
        frame = page.frame_locator("iframe")
        button = frame.get_by_role("button", name="Sync from Trackier")
        expect(button).to_be_enabled()
        expect(frame.locator("#current-title")).to_have_text("Last sync")
        DOCS.mkdir(exist_ok=True)
        page.screenshot(path=str(DOCS / "offer-sync-page-idle.png"))

        fake.configure(latency_ms=800)  # each API page takes 0.8 s: "running" lasts ~10 s
        try:
            button.click()
            expect(frame.locator("#banners")).to_contain_text("Sync started")
            expect(frame.locator("body")).to_have_attribute("data-state", "running", timeout=60_000)
            # Live progress: records staged (from pg_stat_progress_copy / finished shards) > 0.
            expect(_tile(frame, "staged")).to_have_text(re.compile(r"^[1-9][\d,]*$"), timeout=60_000)
            expect(_tile(frame, "tasks")).to_have_text(re.compile(r"^\d+ / \d+$"))
            # ... and moving: the bar passes 20% while the run is still running (merge comes after 100%).
            bar = frame.locator('#current-body [role="progressbar"]')
            expect(bar).to_have_attribute("aria-valuenow", re.compile(r"^([2-9]\d|100)$"), timeout=60_000)
            page.screenshot(path=str(DOCS / "offer-sync-page-running.png"))
            expect(frame.locator("body")).to_have_attribute("data-state", "idle", timeout=240_000)
        finally:
            fake.configure(latency_ms=0)

        # The run was triggered by the logged-in user, and it is the one the page now shows.
        run = live.dag_runs()[0]
        assert run["triggering_user_name"] == "admin"
        assert run["state"] == "success", live.log_tail("scheduler")
        expect(frame.locator("#current-title")).to_have_text("Last sync")
        expect(frame.locator("#current-body .run-id")).to_have_text(run["dag_run_id"])
        row = live.sql(
            "SELECT status, added, updated, unchanged, deactivated, rejected FROM sync_runs WHERE run_id = %s",
            (run["dag_run_id"],),
        )
        assert row, "no sync_runs row for the page's run"
        status, *counts = row[0]
        shown = [
            _int(_tile(frame, key).inner_text()) for key in ("added", "updated", "unchanged", "deactivated", "rejected")
        ]
        assert shown == counts
        assert counts[0] == 5  # added
        assert counts[3] == 3  # deactivated
        assert counts[4] == 1  # rejected: the markup-named campaign
        expect(frame.locator("#current-body .pill")).to_have_attribute("data-status", status)
        table_row = frame.locator(f'#runs-body tr[data-run-id="{run["dag_run_id"]}"]')
        expect(table_row.locator("td").nth(3)).to_have_text(str(counts[0]))
        page.screenshot(path=str(DOCS / "offer-sync-page-done.png"))

        # Trackier's markup is shown as text, never parsed: no <img> in the tables, no alert().
        rejects = frame.locator("#rejects-body")
        expect(rejects).to_contain_text(XSS)
        expect(frame.locator("#alerts-body")).to_contain_text(f"alert text {XSS}")
        assert frame.locator("#rejects-body img, #alerts-body img").count() == 0
        assert frame.locator('#alerts-body a[href^="javascript"]').count() == 0
        assert console.dialogs == []

        # A link to the run opens Airflow's own run page (in the UI, not nested in the frame).
        frame.locator(f'#runs-body tr[data-run-id="{run["dag_run_id"]}"] a.run-id').click()
        expect(page).to_have_url(re.compile(r"/dags/trackier_offer_sync/runs/"))
        assert console.problems == []
    finally:
        fake.mutate("restore")
        context.close()


def test_stock_trigger_form_with_changed_params(airflow_server: LiveAirflow, browser: Any) -> None:
    from playwright.sync_api import expect

    live = airflow_server
    live.unpause_and_settle()
    before = {r["dag_run_id"] for r in live.dag_runs()}
    context, page, console = _open(browser, live, user="op")
    try:
        page.goto(f"{live.url}/dags/{DAG_ID}")
        page.get_by_test_id("trigger-dag-button").click()
        dialog = page.get_by_role("dialog")
        expect(dialog).to_contain_text("Run Parameters")
        dialog.locator('[id="switch:element_dry_run"]').click()  # the param's switch (Chakra: id from its name)
        expect(dialog.locator('input[name="element_dry_run"]')).to_be_checked()
        rate = dialog.get_by_role("spinbutton", name="Max error rate")
        rate.fill("0.2")
        rate.blur()
        dialog.get_by_text("Dry run", exact=False).first.scroll_into_view_if_needed()
        page.screenshot(path=str(DOCS / "trigger-dag-form.png"))
        page.get_by_test_id("trigger-dag-submit").click()

        new = wait_until(
            lambda: [r for r in live.dag_runs() if r["dag_run_id"] not in before],
            60,
            what="the run triggered from the form",
        )
        run = new[0]
        assert run["conf"]["dry_run"] is True
        assert run["conf"]["max_error_rate"] == 0.2
        assert run["triggering_user_name"] == "op"
        final = live.wait_for_run(run["dag_run_id"])
        assert final["state"] == "success", live.log_tail("scheduler")
        row = live.sql(
            "SELECT dry_run, params->>'max_error_rate' FROM sync_runs WHERE run_id = %s", (run["dag_run_id"],)
        )
        assert row == [(True, "0.2")]
        assert console.problems == []
    finally:
        context.close()
