// Offer Sync page, Overview: polls <base>/api/status and renders it; the button POSTs <base>/api/sync.
// Helpers (text-only DOM, formatting, links into Airflow) come from common.js.
"use strict";

(() => {
  const {
    BASE, AIRFLOW_ROOT, DAG_ID, $, el, titled, num, pct, duration, when, brief, since, pill, airflowLink, runPath,
    safeHref, viewLink, banner, table, emptyRow, replace,
  } = window.OfferSync;
  const body = document.body;
  const CAN_TRIGGER = body.dataset.canTrigger === "true";
  const POLL_ACTIVE_MS = 2000;
  const POLL_IDLE_MS = 10000;
  const POLL_ERROR_MS = 5000;

  const state = { timer: null, busy: false, stopped: false, notice: null, maxStaged: {}, data: null };

  // --- banners ----------------------------------------------------------------------------------
  function renderBanners(data) {
    const items = [];
    if (state.notice) items.push(banner(state.notice.kind, state.notice.title, state.notice.detail));
    if (data && !data.dag_found) items.push(banner("warn", "The DAG is not parsed yet.", "Syncs can be started once Airflow has loaded it."));
    if (data && data.is_paused) {
      items.push(banner("warn", "The DAG is paused.", "A sync started now waits in the queue until the DAG is unpaused (the toggle on ",
        el("span", {}, airflowLink(`/dags/${encodeURIComponent(DAG_ID)}`, "the DAG's page"), ").")));
    }
    if (data && data.offers_db && !data.offers_db.ok) {
      items.push(banner("error", "Offers database unavailable.", `${data.offers_db.error}. Run history, rejects and alerts cannot be shown; Airflow's own progress still is.`));
    }
    replace("banners", ...items);
  }
  function notify(kind, title, detail, ms) {
    state.notice = { kind, title, detail };
    renderBanners(state.data);
    if (ms) setTimeout(() => { if (state.notice && state.notice.title === title) { state.notice = null; renderBanners(state.data); } }, ms);
  }

  // --- the sync button --------------------------------------------------------------------------
  function renderButton(data) {
    const button = $("sync-button");
    const active = data && data.active;
    button.disabled = !CAN_TRIGGER || state.busy || !data || !data.dag_found || Boolean(active);
    button.textContent = state.busy ? "Starting…" : active ? (active.state === "queued" ? "Sync queued…" : "Sync running…") : "Sync from Trackier";
    button.title = !CAN_TRIGGER ? "Your role can view syncs but not start them" : active ? "A sync is already queued or running" : "Start a full sync now, as you";
    $("dry-run").disabled = button.disabled;
  }
  async function triggerSync() {
    if (state.busy) return;
    state.busy = true;
    renderButton(state.data);
    try {
      const resp = await fetch(`${BASE}/api/sync`, {
        method: "POST", credentials: "same-origin", cache: "no-store",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify({ dry_run: $("dry-run").checked }),
      });
      const payload = await resp.json().catch(() => ({}));
      if (resp.status === 201) {
        notify("ok", "Sync started.", `Run ${payload.run_id}${payload.is_paused ? " is queued until the DAG is unpaused." : " is queued; progress appears below."}`, 8000);
      } else if (resp.status === 401) {
        showSignedOut();
        return;
      } else {
        notify("error", "Could not start the sync.", typeof payload.detail === "string" ? payload.detail : `HTTP ${resp.status}`);
      }
    } catch (err) {
      notify("error", "Could not start the sync.", "The Airflow API server did not answer.");
    } finally {
      state.busy = false;
    }
    refresh();
  }

  // --- the current / last sync card ---------------------------------------------------------------
  function tile(label, value, key, sub) {
    return el("div", { class: "tile", attrs: { "data-count": key } },
      el("div", { class: "tile-label", text: label }),
      el("div", { class: "tile-value", text: value }),
      sub ? el("div", { class: "tile-sub", text: sub }) : null);
  }
  function runMeta(run, startedIso) {
    return el("div", { class: "meta" },
      airflowLink(runPath(run.run_id), run.run_id, "mono run-id"),
      run.triggered_by ? el("span", { class: "sep", text: `by ${run.triggered_by}` }) : null,
      startedIso ? el("span", { class: "sep", text: `started ${when(startedIso)}` }) : null,
      run.dry_run ? el("span", { class: "tag", text: "dry run" }) : null);
  }
  function renderStepper(steps) {
    return el("ol", { class: "steps" }, ...steps.map((s) => el("li", { class: `step s-${s.state}`, attrs: { "data-step": s.key } },
      el("span", { class: "dot" }),
      el("span", { class: "step-title", text: s.title }),
      el("span", { class: "step-count", text: s.total > 1 ? `${s.done}/${s.total}` : "" }))));
  }
  function renderActive(active) {
    $("current-title").textContent = active.state === "queued" ? "Sync queued" : "Sync in progress";
    const head = el("div", { class: "run-head" }, pill(active.state), runMeta(active, active.start_date || active.queued_at));
    const p = active.progress;
    if (!p) {
      const why = state.data && state.data.is_paused ? "The DAG is paused: the run starts when it is unpaused." : "Waiting for the scheduler to start it…";
      return [head, el("p", { class: "muted", text: why })];
    }
    const t = p.totals;
    const staged = Math.max(t.records_staged, state.maxStaged[active.run_id] || 0);
    state.maxStaged = { [active.run_id]: staged };
    const percent = t.records_expected ? Math.min(100, (100 * staged) / t.records_expected) : null;
    const bar = el("div", { class: `bar${percent === null ? " indeterminate" : ""}`, attrs: { role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100, "aria-valuenow": percent === null ? undefined : Math.round(percent) } },
      el("div", { class: "bar-fill", attrs: { style: percent === null ? undefined : `width:${percent.toFixed(1)}%` } }));
    const barLabel = el("div", { class: "bar-label" },
      el("span", { text: percent === null ? "Planning the sweep…" : `${num(staged)} of ${num(t.records_expected)} records staged` }),
      el("span", { class: "muted", text: percent === null ? "" : `${percent.toFixed(0)}%` }));
    const tiles = el("div", { class: "tiles" },
      tile("Tasks done", `${num(p.tasks.done)} / ${num(p.tasks.total)}`, "tasks", p.tasks.failed ? `${p.tasks.failed} failed` : `${p.tasks.running} running`),
      tile("Pages fetched", `${num(t.pages_fetched)}${t.pages_expected ? ` / ${num(t.pages_expected)}` : ""}`, "pages"),
      tile("Records staged", num(staged), "staged", t.records_in_flight ? `${num(t.records_in_flight)} in flight` : "live from COPY"),
      tile("Rejected so far", num(t.rejected), "rejected_so_far", "finished shards"),
      tile("Elapsed", duration(since(active.start_date)), "elapsed"));
    const shardRows = p.shards.map((s) => el("tr", { attrs: { "data-shard": s.label } },
      el("td", { text: s.label }), el("td", {}, pill(s.state)), el("td", { class: "num", text: num(s.pages) }),
      el("td", { class: "num" }, s.records_live ? el("span", { class: "live", text: "live" }) : null, num(s.records)),
      el("td", { class: "num", text: num(s.rejected) })));
    const shards = p.shards.length
      ? el("table", { class: "table compact" }, el("thead", {}, el("tr", {}, ...["Shard", "State", "Pages", "Records", "Rejected"].map((h, i) => el("th", { class: i > 1 ? "num" : "", text: h })))), el("tbody", {}, ...shardRows))
      : null;
    return [head, renderStepper(p.steps), el("div", { class: "progress" }, barLabel, bar), tiles, shards];
  }
  function renderLast(run) {
    $("current-title").textContent = "Last sync";
    const head = el("div", { class: "run-head" }, pill(run.status), runMeta(run, run.started_at),
      viewLink("run", run.run_id, "Run details →", "details-link"));
    const tiles = el("div", { class: "tiles" },
      tile("Added", num(run.added), "added"), tile("Updated", num(run.updated), "updated"),
      tile("Unchanged", num(run.unchanged), "unchanged"), tile("Deactivated", num(run.deactivated), "deactivated"),
      tile("Rejected", num(run.rejected), "rejected"), tile("Error rate", pct(run.error_rate), "error_rate"),
      tile("Duration", duration(run.duration_s), "duration"));
    const notes = [];
    if (run.dry_run) notes.push(el("p", { class: "muted", text: "Dry run: the counts are what a real sync would have done; nothing was written." }));
    if (run.error) notes.push(el("p", { class: "error-text", text: run.error }));
    return [head, tiles, ...notes];
  }
  function renderCurrent(data) {
    $("current").setAttribute("aria-busy", "false");
    if (data.active) return replace("current-body", ...renderActive(data.active));
    const last = data.runs.find((r) => r.status !== "running");
    if (last) return replace("current-body", ...renderLast(last));
    $("current-title").textContent = "Sync status";
    if (!data.offers_db.ok) return replace("current-body", el("p", { class: "muted", text: "The last sync's results are stored in the offers database, which cannot be read right now." }));
    replace("current-body", el("div", { class: "empty", attrs: { "data-empty": "runs" } },
      el("strong", { text: "No syncs yet." }),
      el("span", { text: CAN_TRIGGER ? " Click “Sync from Trackier” to fetch every advertiser and campaign; the first run creates the tables." : " An operator can start the first one." })));
  }

  // --- tables -----------------------------------------------------------------------------------
  function renderRuns(data) {
    if (!data.offers_db.ok) return replace("runs-body", emptyRow("Unavailable while the offers database cannot be read.", "runs-error"));
    if (!data.runs.length) return replace("runs-body", emptyRow("No syncs have run yet.", "runs"));
    const rows = data.runs.map((r) => el("tr", { attrs: { "data-run-id": r.run_id } },
      el("td", { class: "started" }, el("div", { text: when(r.started_at) }), titled(airflowLink(runPath(r.run_id), r.run_id, "mono small run-id"), r.run_id)),
      el("td", {}, pill(r.status), r.dry_run ? el("span", { class: "tag", text: "dry run" }) : null,
        el("div", {}, viewLink("run", r.run_id, "Details →", "details-link small"))),
      el("td", { text: r.triggered_by || (r.run_type === "scheduled" ? "schedule" : "–") }),
      el("td", { class: "num", text: num(r.added) }), el("td", { class: "num", text: num(r.updated) }),
      el("td", { class: "num", text: num(r.unchanged) }), el("td", { class: "num", text: num(r.deactivated) }),
      el("td", { class: "num", text: num(r.rejected) }), el("td", { class: "num", text: pct(r.error_rate) }),
      el("td", { class: "num", text: duration(r.duration_s) })));
    replace("runs-body", el("div", { class: "scroll" }, table(["Started", "Status", "By", "Added", "Updated", "Unchanged", "Deactivated", "Rejected", "Error rate", "Duration"], rows, 3)));
  }
  function renderRejects(data) {
    if (!data.offers_db.ok) return replace("rejects-body", emptyRow("Unavailable while the offers database cannot be read.", "rejects-error"));
    if (!data.rejects.length) return replace("rejects-body", emptyRow("No rejected records: everything Trackier sent passed validation.", "rejects"));
    const rows = data.rejects.map((r) => el("tr", { attrs: { "data-reject-id": r.id } },
      el("td", {}, el("div", { class: "mono", text: r.record_key || "(no id)" }), el("div", { class: "muted small", text: r.entity })),
      el("td", {}, el("div", { class: "reason", text: r.reason }), r.raw ? el("div", { class: "raw mono small", text: r.raw, title: r.raw }) : null),
      el("td", { class: "small muted nowrap", text: brief(r.rejected_at) })));
    replace("rejects-body", el("div", { class: "scroll tall" }, table(["Record", "Reason", "When"], rows, 99)));
  }
  function renderAlerts(data) {
    if (!data.offers_db.ok) return replace("alerts-body", emptyRow("Unavailable while the offers database cannot be read.", "alerts-error"));
    if (!data.alerts.length) return replace("alerts-body", emptyRow("No alerts raised.", "alerts"));
    const rows = data.alerts.map((a) => {
      const href = a.link ? safeHref(a.link) : null;
      return el("tr", { attrs: { "data-alert-id": a.id } },
        el("td", {}, el("span", { class: `sev sev-${String(a.severity).replace(/[^a-z]/g, "")}`, text: a.severity })),
        el("td", {}, el("div", { class: "mono small", text: a.rule }), el("div", { text: a.message }),
          href ? el("a", { href, text: "details", class: "small", attrs: { rel: "noopener noreferrer" } }) : null),
        el("td", { class: "small muted nowrap", text: brief(a.raised_at) }));
    });
    replace("alerts-body", el("div", { class: "scroll tall" }, table(["Severity", "Alert", "When"], rows, 99)));
  }

  // --- signed-out / forbidden states -----------------------------------------------------------
  function hideContent(text) {
    document.querySelector("main").hidden = true;
    $("refreshed").textContent = text;
  }
  function showSignedOut() {
    stop();
    hideContent("Not refreshing: signed out.");
    const next = `${BASE}/`;
    const login = el("a", { href: `${AIRFLOW_ROOT}/auth/login?next=${encodeURIComponent(next)}`, text: "Log in again", class: "btn" });
    replace("banners", banner("error", "You are signed out.", "Your Airflow session has expired or was ended. ", login));
    $("sync-button").disabled = true;
  }
  function showForbidden() {
    stop();
    hideContent("Not refreshing: not allowed.");
    replace("banners", banner("error", "Not allowed.", "Your role may not view the offer sync's runs."));
    $("sync-button").disabled = true;
  }
  function stop() {
    state.stopped = true;
    if (state.timer) clearTimeout(state.timer);
  }

  // --- polling ----------------------------------------------------------------------------------
  function schedule(ms) {
    if (state.stopped) return;
    if (state.timer) clearTimeout(state.timer);
    state.timer = setTimeout(refresh, ms);
  }
  async function refresh() {
    if (state.stopped) return;
    let resp;
    try {
      resp = await fetch(`${BASE}/api/status`, { credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json" } });
    } catch (_) {
      notify("error", "The Airflow API server does not answer.", "Retrying…");
      return schedule(POLL_ERROR_MS);
    }
    if (resp.status === 401) return showSignedOut();
    if (resp.status === 403) return showForbidden();
    if (!resp.ok) {
      notify("error", "Could not load the sync status.", `HTTP ${resp.status}; retrying…`);
      return schedule(POLL_ERROR_MS);
    }
    const data = await resp.json();
    if (state.notice && state.notice.kind === "error" && state.notice.title.startsWith("The Airflow API")) state.notice = null;
    state.data = data;
    renderBanners(data);
    renderButton(data);
    renderCurrent(data);
    renderRuns(data);
    renderRejects(data);
    renderAlerts(data);
    body.dataset.state = data.active ? data.active.state : "idle";
    $("refreshed").textContent = `Updated ${new Date().toLocaleTimeString()} · refreshes every ${(data.active ? POLL_ACTIVE_MS : POLL_IDLE_MS) / 1000} s`;
    schedule(data.active ? POLL_ACTIVE_MS : POLL_IDLE_MS);
  }

  document.addEventListener("offersync:auth", (event) => (event.detail === 401 ? showSignedOut() : showForbidden()));
  if (!CAN_TRIGGER) document.querySelector(".who").append(el("span", { class: "tag", text: "view only", title: "Your role can view syncs but not start them" }));
  $("sync-button").addEventListener("click", triggerSync);
  const dagLink = $("dag-link");
  dagLink.replaceWith(airflowLink(`/dags/${encodeURIComponent(DAG_ID)}`, dagLink.textContent, "mono"));
  document.addEventListener("visibilitychange", () => { if (!document.hidden && !state.stopped) refresh(); });
  refresh();
})();
