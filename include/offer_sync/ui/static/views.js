// Offer Sync page, the views after the Overview: History, Run detail and Offer lookup.
//
// The view is in the location hash, so a view can be bookmarked or linked from elsewhere:
//   #overview             the last sync, live progress, recent runs (page.js)
//   #history[/90]          the chart of the last 30 (or 90) runs
//   #run/<run id>          one run: counts, phases, shards, failed pages, alerts, rejects, changes
//   #offers[/<query>]      offer search by Trackier id, hash id or title
//   #offer/<trackier id>   one offer, its audit trail and the run that deactivated it
// Long lists (a run's rejects and changes, an offer's audit trail) are pages fetched from the
// server with a keyset cursor; the browser never holds more than one page of them.
"use strict";

(() => {
  const {
    $, el, replace, titled, data, num, pct, duration, when, brief, pill, airflowLink, runPath, safeHref, viewHref, viewLink,
    table, emptyRow, apiUrl, getJSON,
  } = window.OfferSync;
  const { historyChart, SERIES } = window.OfferSync.chart;

  const VIEWS = ["overview", "history", "run", "offers", "offer"];
  const TAB_OF = { overview: "overview", history: "history", run: "history", offers: "offers", offer: "offers" };
  const state = { history: { limit: 30, data: null, hidden: new Set() }, run: null, offerQuery: "" };
  let seq = 0; // a newer navigation wins over a slower older request

  // --- small shared pieces --------------------------------------------------------------------
  function failure(err, what) {
    return el("div", { class: "banner error", attrs: { role: "alert", "data-error": what } },
      el("strong", { text: `Could not load ${what}.` }), el("span", { text: ` ${err.message}` }));
  }
  const loading = () => el("p", { class: "muted pad", text: "Loading…" });
  function card(id, title, hint, ...content) {
    return el("section", { class: "card", attrs: { id } },
      el("div", { class: "card-head" }, el("h2", { text: title }), hint ? el("span", { class: "hint", text: hint }) : null),
      el("div", { class: "card-body flush" }, ...content));
  }
  function tile(label, value, key, sub) {
    return el("div", { class: "tile", attrs: { "data-count": key } },
      el("div", { class: "tile-label", text: label }), el("div", { class: "tile-value", text: value }),
      sub ? el("div", { class: "tile-sub", text: sub }) : null);
  }
  const sev = (a) => el("span", { class: `sev sev-${String(a.severity).replace(/[^a-z]/g, "")}`, text: a.severity });
  const ACTION_TEXT = { inserted: "Added", updated: "Updated", deactivated: "Deactivated", reactivated: "Reactivated" };
  const action = (a) => el("span", { class: `act act-${a}`, text: ACTION_TEXT[a] || a, attrs: { "data-action": a } });

  // A value of the audit trail as short text (arrays and objects as JSON, cut; full text on hover).
  function valueText(v) {
    if (v === null || v === undefined) return "∅";
    if (typeof v === "string") return v;
    return JSON.stringify(v);
  }
  function shortValue(v, max) {
    const full = valueText(v);
    const cut = full.length > max ? `${full.slice(0, max - 1)}…` : full;
    const node = data(cut, "val");
    if (cut !== full) node.title = full;
    return node;
  }
  // {field: {old, new}} -> one "field: old → new" line per field.
  function changeList(changes, act) {
    if (act === "inserted") return el("span", { class: "muted", text: "new offer" });
    if (act === "deactivated" && (!changes || Object.keys(changes).length <= 1)) {
      return el("span", { class: "muted", text: "gone from Trackier's feed (complete sweep)" });
    }
    if (!changes || typeof changes !== "object") return el("span", { class: "muted", text: "–" });
    return el("ul", { class: "changes" }, ...Object.entries(changes).map(([field, diff]) =>
      el("li", { attrs: { "data-field": field } }, el("span", { class: "field mono", text: field }), ": ",
        shortValue(diff && diff.old, 60), el("span", { class: "arrow", text: " → " }), shortValue(diff && diff.new, 60))));
  }
  // Previous / next over a keyset-paginated list: the cursors seen so far are a stack.
  function pager(pageData, cursors, onMove, what) {
    const first = cursors.length === 1;
    const start = (cursors.length - 1) * pageData.limit + 1;
    const end = start + pageData.items.length - 1;
    return el("div", { class: "pager", attrs: { "data-pager": what } },
      el("span", { class: "muted small", text: pageData.items.length ? `${num(start)}–${num(end)}${pageData.next === null ? "" : "+"}` : "" }),
      el("button", { class: "btn small-btn", text: "← Previous", attrs: { type: "button", ...(first ? { disabled: "" } : {}), "data-page": "prev" },
        on: { click: () => { cursors.pop(); onMove(); } } }),
      el("button", { class: "btn small-btn", text: "Next →", attrs: { type: "button", ...(pageData.next === null ? { disabled: "" } : {}), "data-page": "next" },
        on: { click: () => { cursors.push(pageData.next); onMove(); } } }));
  }

  // --- History --------------------------------------------------------------------------------
  function renderHistoryChart() {
    const h = state.history.data;
    const host = $("history-chart");
    if (!h || !host) return;
    if (!h.runs.length) return replace(host, emptyRow("No syncs have run yet: the chart fills in as they do.", "history"));
    const width = host.clientWidth || 900;
    host.dataset.width = String(width);
    replace(host, historyChart(h.runs, h.thresholds, {
      width, hidden: state.history.hidden, onSelect: (runId) => { location.hash = viewHref("run", runId); },
    }));
  }
  function legend() {
    return el("div", { class: "legend", attrs: { role: "group", "aria-label": "Series" } },
      ...SERIES.map((s) => el("button", {
        class: `legend-item c-${s.key}`, attrs: { type: "button", "aria-pressed": String(!state.history.hidden.has(s.key)), "data-series": s.key },
        on: { click: (event) => {
          if (state.history.hidden.has(s.key)) state.history.hidden.delete(s.key); else state.history.hidden.add(s.key);
          event.currentTarget.setAttribute("aria-pressed", String(!state.history.hidden.has(s.key)));
          renderHistoryChart();
        } } }, el("span", { class: "swatch" }), s.label)),
      el("span", { class: "legend-item static c-duration" }, el("span", { class: "swatch" }), "Duration"),
      el("span", { class: "legend-item static c-error_rate" }, el("span", { class: "swatch" }), "Error rate"),
      el("span", { class: "legend-item static threshold-key" }, el("span", { class: "swatch dashed" }), "Alert threshold"),
      el("span", { class: "legend-item static st-failed-key" }, el("span", { class: "swatch band" }), "Failed run"));
  }
  function thresholdNote(t) {
    if (!t) return null;
    if (t.error) return el("p", { class: "error-text small", text: `Alert thresholds unavailable: ${t.error}` });
    return el("p", { class: "muted small pad-x", attrs: { "data-thresholds": "" } },
      `Alert thresholds (as the alert rules read them): duration above ${duration(t.max_duration_s)} `,
      el("code", { text: "OFFER_SYNC_MAX_DURATION_S" }), `, error rate above ${pct(t.max_error_rate)} `,
      el("code", { text: "OFFER_SYNC_MAX_ERROR_RATE" }), ".");
  }
  function historyTable(runs) {
    const rows = [...runs].reverse().map((r) => el("tr", { class: "clickable", attrs: { "data-run-id": r.run_id },
      on: { click: (event) => { if (!event.target.closest("a")) location.hash = viewHref("run", r.run_id); } } },
      el("td", { class: "nowrap" }, el("div", { text: when(r.started_at) }), el("div", { class: "mono small muted run-id", text: r.run_id, title: r.run_id })),
      el("td", {}, pill(r.status), r.dry_run ? el("span", { class: "tag", text: "dry run" }) : null),
      el("td", { class: "num", text: num(r.added) }), el("td", { class: "num", text: num(r.updated) }),
      el("td", { class: "num", text: num(r.deactivated) }), el("td", { class: "num", text: num(r.rejected) }),
      el("td", { class: "num", text: pct(r.error_rate) }), el("td", { class: "num", text: duration(r.duration_s) }),
      el("td", { class: "num" }, viewLink("run", r.run_id, "Details", "details-link"))));
    return el("div", { class: "scroll tall" }, table(["Started", "Status", "Added", "Updated", "Deactivated", "Rejected", "Error rate", "Duration", ""], rows, 2));
  }
  async function showHistory(arg) {
    const limit = arg === "90" ? 90 : 30;
    state.history.limit = limit;
    const view = $("view-history");
    const windowButtons = el("div", { class: "segmented", attrs: { role: "group", "aria-label": "Window" } },
      ...[30, 90].map((w) => el("a", { class: `seg${w === limit ? " on" : ""}`, href: w === 30 ? "#history" : "#history/90",
        text: `Last ${w}`, attrs: { "aria-current": w === limit ? "true" : "false", "data-window": w } })));
    const chartCard = el("section", { class: "card", attrs: { id: "history-card" } },
      el("div", { class: "card-head" }, el("h2", { text: "Sync history" }), el("span", { class: "hint", attrs: { id: "history-count" } }),
        el("span", { class: "spacer" }), windowButtons),
      el("div", { class: "card-body" }, legend(), el("div", { attrs: { id: "history-chart" } }, loading()), el("div", { attrs: { id: "history-note" } })));
    const runsCard = card("history-runs", "Runs in this window", "newest first; click a run for its details", el("div", { attrs: { id: "history-table" } }, loading()));
    replace(view, chartCard, runsCard);
    const mine = ++seq;
    try {
      const h = await getJSON("/api/history", { limit });
      if (mine !== seq) return;
      state.history.data = h;
      $("history-count").textContent = `${h.runs.length} run${h.runs.length === 1 ? "" : "s"}, oldest on the left`;
      renderHistoryChart();
      replace("history-note", thresholdNote(h.thresholds));
      replace("history-table", h.runs.length ? historyTable(h.runs) : emptyRow("No syncs yet.", "history-runs"));
    } catch (err) {
      if (mine === seq) replace("history-chart", failure(err, "the history"));
    }
  }
  let resizeTimer = null;
  if (window.ResizeObserver) {
    new ResizeObserver(() => {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(() => {
        const host = $("history-chart");
        if (host && !$("view-history").hidden && String(host.clientWidth) !== host.dataset.width) renderHistoryChart();
      }, 120);
    }).observe(document.body);
  }
  document.addEventListener("offersync:theme", () => { if (!$("view-history").hidden) renderHistoryChart(); });

  // --- Run detail -----------------------------------------------------------------------------
  function runHead(d) {
    const r = d.run;
    const af = d.airflow;
    const by = af ? (af.triggered_by || (af.run_type === "scheduled" ? "schedule" : af.run_type)) : null;
    return el("div", { class: "run-head" }, pill(r.status),
      el("div", { class: "meta" },
        airflowLink(runPath(r.run_id), r.run_id, "mono run-id"),
        by ? el("span", { class: "sep", text: `by ${by}` }) : null,
        el("span", { class: "sep", text: `started ${when(r.started_at)}` }),
        r.finished_at ? el("span", { class: "sep", text: `finished ${when(r.finished_at)}` }) : null,
        r.dry_run ? el("span", { class: "tag", text: "dry run" }) : null,
        r.complete_sweep === false ? el("span", { class: "tag warn-tag", text: "partial sweep", title: "Some pages were not fetched: nothing was deactivated" }) : null));
  }
  function phasesCard(d) {
    const m = d.run.metrics || {};
    if (!d.phases.length) return card("run-phases", "Time per phase", null, emptyRow("Not measured: the run ended before its metrics were recorded.", "phases"));
    const max = Math.max(...d.phases.map((p) => p.seconds), 0.001);
    const bars = el("div", { class: "phases" }, ...d.phases.map((p) => el("div", { class: "phase", attrs: { "data-phase": p.key } },
      el("span", { class: "phase-title", text: p.title }),
      el("span", { class: "phase-bar" }, el("span", { class: `phase-fill ph-${p.key}`, attrs: { style: `width:${Math.max(0.5, (100 * p.seconds) / max).toFixed(1)}%` } })),
      el("span", { class: "phase-value num", text: duration(p.seconds) }))));
    const facts = [
      ["API requests", m.api_requests !== undefined ? `${num(m.api_requests)} (${num(m.api_retries)} retried)` : null],
      ["Pages fetched", m.pages_fetched !== undefined ? `${num(m.pages_fetched)} (${num(m.pages_failed)} failed)` : null],
      ["Records fetched", m.records_fetched !== undefined ? `${num(m.records_fetched)} (${num(m.records_valid)} valid)` : null],
      ["SQL statements", m.db_statements !== undefined ? num(m.db_statements) : null],
      ["Peak task memory", m.peak_task_rss_mb !== undefined ? `${Math.round(m.peak_task_rss_mb)} MB` : null],
    ].filter(([, v]) => v !== null);
    return card("run-phases", "Time per phase", "fetch, validate and stage are summed over shards that run in parallel",
      el("div", { class: "pad-box" }, bars,
        el("dl", { class: "facts" }, ...facts.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })]))));
  }
  function shardsCard(d) {
    if (!d.shards.length) return card("run-shards", "Shards", null, emptyRow("No shard measurements recorded.", "shards"));
    const rows = d.shards.map((s) => el("tr", { attrs: { "data-shard": s.label } },
      el("td", {}, data(s.label)), el("td", { class: "num", text: s.wall_s === null || s.wall_s === undefined ? "–" : duration(s.wall_s) }),
      el("td", { class: "num", text: s.peak_rss_mb === null || s.peak_rss_mb === undefined ? "–" : `${Math.round(s.peak_rss_mb)} MB` })));
    return card("run-shards", "Shards", `${d.shards.length} extract task${d.shards.length === 1 ? "" : "s"}`,
      el("div", { class: "scroll" }, table(["Shard", "Wall time", "Peak memory"], rows, 1)));
  }
  function pageErrorsCard(d) {
    if (!d.page_errors.length) return card("run-page-errors", "Failed pages & anomalies", null, emptyRow("None: every page was fetched and paginated as expected.", "page-errors"));
    const rows = d.page_errors.map((e) => el("tr", { attrs: { "data-page-error": e.id } },
      el("td", {}, el("div", { text: e.entity }), el("div", { class: "muted small", text: `shard ${e.shard}` })),
      el("td", { class: "nowrap" }, e.page !== null ? `page ${e.page}` : "", e.cursor ? el("div", { class: "mono small muted", text: e.cursor }) : null),
      el("td", {}, el("span", { class: "kind mono", text: e.kind })),
      el("td", {}, data(e.error, "reason")),
      el("td", { class: "num", text: num(e.attempts) })));
    const more = d.page_errors_total > d.page_errors.length ? `first ${d.page_errors.length} of ${num(d.page_errors_total)}` : `${d.page_errors_total}`;
    return card("run-page-errors", "Failed pages & anomalies", more,
      el("div", { class: "scroll tall" }, table(["Entity", "Page", "Kind", "Error", "Tries"], rows, 4, "fixed-errors")));
  }
  function alertsCard(d) {
    if (!d.alerts.length) return card("run-alerts", "Alerts", null, emptyRow("No alerts raised for this run.", "run-alerts"));
    const rows = d.alerts.map((a) => {
      const href = a.link ? safeHref(a.link) : null;
      return el("tr", { attrs: { "data-alert-id": a.id } }, el("td", {}, sev(a)),
        el("td", {}, el("div", { class: "mono small", text: a.rule }), el("div", {}, data(a.message)),
          href ? el("a", { href, text: "details", class: "small", attrs: { rel: "noopener noreferrer", target: "_top" } }) : null),
        el("td", { class: "small muted nowrap", text: brief(a.raised_at) }));
    });
    return card("run-alerts", "Alerts", `${d.alerts.length}`, el("div", { class: "scroll" }, table(["Severity", "Alert", "When"], rows, 99)));
  }

  // Rejects: reason groups, a text filter, pages, and the CSV of the same selection.
  function rejectsCard(d) {
    const runId = d.run.run_id;
    const st = { reason: "", cursors: [0] };
    const list = el("div", { attrs: { id: "rejects-list" } }, loading());
    const input = el("input", { class: "input", attrs: { type: "search", id: "reject-filter", placeholder: "Filter by reason…", "aria-label": "Filter rejects by reason", maxlength: 200 } });
    const csv = el("a", { class: "btn small-btn", text: "Download CSV", attrs: { id: "rejects-csv", download: "", href: apiUrl("/api/run/rejects.csv", { run_id: runId }) } });
    function setReason(reason) {
      st.reason = reason;
      st.cursors = [0];
      input.value = reason;
      csv.setAttribute("href", apiUrl("/api/run/rejects.csv", { run_id: runId, reason: reason || null }));
      load();
    }
    async function load() {
      const mine = seq;
      try {
        const page = await getJSON("/api/run/rejects", { run_id: runId, reason: st.reason || null, after: st.cursors[st.cursors.length - 1] });
        if (mine !== seq) return;
        if (!page.items.length) return replace(list, emptyRow(st.reason ? "No rejects match this filter." : "No rejected records in this run.", "run-rejects"));
        const rows = page.items.map((r) => el("tr", { attrs: { "data-reject-id": r.id } },
          el("td", {}, el("div", {}, data(r.record_key || "(no id)", "mono")), el("div", { class: "muted small", text: r.entity })),
          el("td", {}, el("div", {}, data(r.reason, "reason")), r.raw ? el("div", { class: "raw mono small", title: r.raw }, data(r.raw)) : null),
          el("td", { class: "small muted nowrap", text: r.page !== null ? `shard ${r.shard} · page ${r.page}` : "–" })));
        replace(list, el("div", { class: "scroll" }, table(["Record", "Reason", "Where"], rows, 99, "fixed-rejects")), pager(page, st.cursors, load, "rejects"));
      } catch (err) {
        if (mine === seq) replace(list, failure(err, "the rejects"));
      }
    }
    let typing = null;
    input.addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(() => setReason(input.value.trim()), 300); });
    const groups = d.reject_reasons.length
      ? el("div", { class: "chips", attrs: { "aria-label": "Most common reasons" } },
        el("button", { class: "chip", attrs: { type: "button", "data-reason": "" }, on: { click: () => setReason("") } }, "All"),
        ...d.reject_reasons.map((g) => el("button", { class: "chip", attrs: { type: "button", "data-reason": g.reason }, title: g.reason, on: { click: () => setReason(g.reason) } },
          data(g.reason), el("span", { class: "chip-count", text: num(g.count) }))))
      : null;
    const tools = el("div", { class: "toolbar" }, input, csv);
    load();
    return card("run-rejects", "Rejects", `${num(d.run.rejected)} record${d.run.rejected === 1 ? "" : "s"} failed validation`,
      d.run.rejected ? el("div", { class: "pad-box" }, groups, tools) : null, list);
  }

  // Changes from the audit trail, one kind at a time (the index is (run_id, action, id)).
  function changesCard(d) {
    const r = d.run;
    const kinds = [["inserted", r.added], ["updated", r.updated], ["deactivated", r.deactivated], ["reactivated", r.reactivated]];
    const st = { action: (kinds.find(([, n]) => n) || kinds[0])[0], cursors: [0] };
    const list = el("div", { attrs: { id: "changes-list" } }, loading());
    const tabs = el("div", { class: "segmented", attrs: { role: "tablist", "aria-label": "Kind of change" } });
    function drawTabs() {
      replace(tabs, ...kinds.map(([k, n]) => el("button", { class: `seg${k === st.action ? " on" : ""}`,
        attrs: { type: "button", role: "tab", "aria-selected": String(k === st.action), "data-action": k },
        on: { click: () => { st.action = k; st.cursors = [0]; drawTabs(); load(); } } }, `${ACTION_TEXT[k]} `, el("span", { class: "chip-count", text: num(n) }))));
    }
    async function load() {
      const mine = seq;
      try {
        const page = await getJSON("/api/run/changes", { run_id: r.run_id, action: st.action, after: st.cursors[st.cursors.length - 1] });
        if (mine !== seq) return;
        if (!page.items.length) {
          const why = r.dry_run ? "A dry run writes no changes: its counts are what a real run would have done." : `No offers ${ACTION_TEXT[st.action].toLowerCase()} in this run.`;
          return replace(list, emptyRow(why, "changes"));
        }
        const rows = page.items.map((c) => el("tr", { attrs: { "data-audit-id": c.id, "data-trackier-id": c.trackier_id, "data-action": c.action } },
          el("td", { class: "nowrap" }, viewLink("offer", c.trackier_id, c.trackier_id, "mono")),
          el("td", { class: "title-cell" }, data(c.title === null ? "(offer row removed)" : c.title)),
          el("td", {}, changeList(c.changes, c.action)),
          el("td", { class: "small muted nowrap", text: brief(c.recorded_at) })));
        replace(list, el("div", { class: "scroll" }, table(["Offer", "Title (now)", "Change", "When"], rows, 99, "fixed-changes")), pager(page, st.cursors, load, "changes"));
      } catch (err) {
        if (mine === seq) replace(list, failure(err, "the changes"));
      }
    }
    drawTabs();
    load();
    return card("run-changes", "Changes", "from the audit trail (offer_audit)", el("div", { class: "pad-box" }, tabs), list);
  }

  async function showRun(runId) {
    const view = $("view-run");
    replace(view, el("p", { class: "crumbs" }, el("a", { href: viewHref("history", state.history.limit === 90 ? "90" : null), text: "← History" })), loading());
    const mine = ++seq;
    let d;
    try {
      d = await getJSON("/api/run", { run_id: runId });
    } catch (err) {
      if (mine === seq) replace(view, el("p", { class: "crumbs" }, el("a", { href: "#history", text: "← History" })), failure(err, `run ${runId}`));
      return;
    }
    if (mine !== seq) return;
    const r = d.run;
    const problems = Array.isArray(r.problems) ? r.problems : [];
    const summary = el("section", { class: "card", attrs: { id: "run-summary", "data-run-id": r.run_id } },
      el("div", { class: "card-head" }, el("h2", { text: "Sync run" })),
      el("div", { class: "card-body" }, runHead(d),
        el("div", { class: "tiles" },
          tile("Added", num(r.added), "added"), tile("Updated", num(r.updated), "updated"),
          tile("Unchanged", num(r.unchanged), "unchanged"), tile("Deactivated", num(r.deactivated), "deactivated"),
          tile("Reactivated", num(r.reactivated), "reactivated"), tile("Rejected", num(r.rejected), "rejected"),
          tile("Duplicates", num(r.duplicates), "duplicates"), tile("Error rate", pct(r.error_rate), "error_rate"),
          tile("Campaigns", num(r.campaigns_processed), "campaigns_processed", "processed"),
          tile("Advertisers", num(r.advertisers_processed), "advertisers_processed", `${num(r.brands_added)} new brands`),
          tile("Duration", duration(r.duration_s), "duration")),
        r.dry_run ? el("p", { class: "muted", text: "Dry run: the counts are what a real sync would have done; nothing was written." }) : null,
        r.error ? el("p", { class: "error-text", attrs: { "data-run-error": "" } }, data(r.error)) : null,
        problems.length ? el("ul", { class: "problems" }, ...problems.map((p) => el("li", {}, data(p)))) : null));
    replace(view, el("p", { class: "crumbs" }, el("a", { href: viewHref("history", state.history.limit === 90 ? "90" : null), text: "← History" })),
      summary, el("div", { class: "grid2" }, phasesCard(d), shardsCard(d)),
      el("div", { class: "grid2" }, pageErrorsCard(d), alertsCard(d)), rejectsCard(d), changesCard(d));
  }

  // --- Offer lookup -----------------------------------------------------------------------------
  function searchForm(value) {
    const input = el("input", { class: "input wide", attrs: { type: "search", id: "offer-query", name: "q", placeholder: "Trackier id, hash id or part of the title",
      "aria-label": "Find an offer", maxlength: 200, autocomplete: "off" } });
    input.value = value || "";
    const form = el("form", { class: "toolbar", attrs: { role: "search", id: "offer-search" } }, input,
      el("button", { class: "btn primary", text: "Find", attrs: { type: "submit" } }));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const q = input.value.trim();
      if (q) location.hash = viewHref("offers", q);
    });
    return form;
  }
  const activePill = (o) => el("span", { class: `pill ${o.is_active ? "s-completed" : "s-failed"}`, text: o.is_active ? "Active" : "Inactive", attrs: { "data-active": String(o.is_active) } });
  async function showOffers(q) {
    const view = $("view-offers");
    state.offerQuery = q || "";
    const results = el("div", { attrs: { id: "offer-results" } }, q ? loading() : emptyRow("Search the catalogue: an exact Trackier id or hash id, or any part of a title (case-insensitive; % and _ are matched as typed).", "offer-search"));
    replace(view, card("offer-lookup", "Offer lookup", "offers and their audit trail", el("div", { class: "pad-box" }, searchForm(q)), results));
    if (!q) { $("offer-query").focus(); return; }
    const mine = ++seq;
    try {
      const found = await getJSON("/api/offers", { q });
      if (mine !== seq) return;
      if (!found.offers.length) return replace(results, emptyRow(`No offer matches “${q}”.`, "offer-results"));
      const rows = found.offers.map((o) => el("tr", { class: "clickable", attrs: { "data-trackier-id": o.trackier_id },
        on: { click: (event) => { if (!event.target.closest("a")) location.hash = viewHref("offer", o.trackier_id); } } },
        el("td", { class: "nowrap" }, viewLink("offer", o.trackier_id, o.trackier_id, "mono")),
        el("td", {}, data(o.hash_id || "–", "mono small")),
        el("td", { class: "title-cell" }, data(o.title)), el("td", {}, data(o.brand)),
        el("td", {}, activePill(o)), el("td", { class: "small muted nowrap", text: brief(o.updated_at) })));
      const note = found.offers.length >= found.limit ? el("p", { class: "muted small pad-x", text: `The first ${found.limit} matches; refine the search for others.` }) : null;
      replace(results, el("div", { class: "scroll" }, table(["Trackier id", "Hash id", "Title", "Brand", "State", "Updated"], rows, 99, "fixed-offers")), note);
    } catch (err) {
      if (mine === seq) replace(results, failure(err, "the search"));
    }
  }
  function whyInactive(o) {
    if (o.is_active) return null;
    if (!o.deactivated_by) {
      return el("div", { class: "callout warn", attrs: { "data-why": "unknown" } },
        el("strong", { text: "Inactive." }), " No deactivation is recorded in the audit trail for it.");
    }
    return el("div", { class: "callout bad", attrs: { "data-why": "deactivated", "data-run-id": o.deactivated_by } },
      el("strong", { text: "Why is this offer inactive? " }),
      `Run `, viewLink("run", o.deactivated_by, o.deactivated_by, "mono"),
      ` (started ${when(o.deactivation_run_started_at)}) deactivated it on ${when(o.deactivation_recorded_at)}: `,
      "a complete sweep of Trackier no longer returned this campaign. It comes back (reactivated) if Trackier lists it again.");
  }
  function offerFields(o) {
    const list = (v) => (Array.isArray(v) ? v.join(", ") || "–" : v);
    const money = (v, cur) => (v === null || v === undefined ? "–" : `${v} ${cur || ""}`.trim());
    const fields = [
      ["Trackier id", o.trackier_id, "mono"], ["Hash id", o.hash_id || "–", "mono"], ["Brand", `${o.brand} (${o.brand_trackier_id})`],
      ["Status in Trackier", o.status || "–"], ["Visibility", o.visibility || "–"], ["Model", o.comm_model || "–"],
      ["Payout", money(o.payout, o.payout_currency)], ["Revenue", money(o.revenue, o.currency)], ["Currency", o.currency],
      ["Geo", list(o.geo)], ["Devices", list(o.device)], ["OS", list(o.os)], ["Categories", list(o.categories)],
      ["Tracking URL", o.url || "–", "mono small"], ["Preview URL", o.preview_url || "–", "mono small"],
      ["Created in Trackier", when(o.source_created)], ["Modified in Trackier", when(o.source_modified)],
      ["First seen", when(o.first_seen_at)], ["Updated here", when(o.updated_at)],
    ];
    return el("dl", { class: "fields" }, ...fields.flatMap(([k, v, cls]) => [el("dt", { text: k }), el("dd", {}, data(v, cls))]),
      el("dt", { text: "Last changed by" }), el("dd", {}, o.last_sync_run_id ? viewLink("run", o.last_sync_run_id, o.last_sync_run_id, "mono small") : "–"));
  }
  async function showOffer(trackierId) {
    const view = $("view-offers");
    const back = el("p", { class: "crumbs" }, el("a", { href: state.offerQuery ? viewHref("offers", state.offerQuery) : "#offers", text: "← Offer lookup" }));
    replace(view, back, loading());
    const mine = ++seq;
    const cursors = [null];
    let first;
    try {
      first = await getJSON("/api/offer", { trackier_id: trackierId });
    } catch (err) {
      if (mine === seq) replace(view, back, card("offer-lookup", "Offer lookup", null, el("div", { class: "pad-box" }, searchForm(trackierId)), failure(err, `offer ${trackierId}`)));
      return;
    }
    if (mine !== seq) return;
    const o = first.offer;
    const trail = el("div", { attrs: { id: "offer-audit" } });
    function drawTrail(page) {
      if (!page.items.length) return replace(trail, emptyRow("No audit rows for this offer.", "offer-audit"));
      const rows = page.items.map((a) => el("tr", { attrs: { "data-audit-id": a.id, "data-action": a.action, "data-run-id": a.run_id } },
        el("td", { class: "small nowrap", text: when(a.recorded_at) }),
        el("td", {}, action(a.action)),
        el("td", { class: "nowrap" }, titled(viewLink("run", a.run_id, a.run_id, "mono small run-id"), a.run_id), a.run_status ? el("div", {}, pill(a.run_status)) : null),
        el("td", {}, changeList(a.changes, a.action))));
      const older = el("div", { class: "pager", attrs: { "data-pager": "audit" } },
        el("button", { class: "btn small-btn", text: "← Newer", attrs: { type: "button", ...(cursors.length === 1 ? { disabled: "" } : {}) },
          on: { click: () => { cursors.pop(); loadTrail(); } } }),
        el("button", { class: "btn small-btn", text: "Older →", attrs: { type: "button", ...(page.next === null ? { disabled: "" } : {}) },
          on: { click: () => { cursors.push(page.next); loadTrail(); } } }));
      replace(trail, el("div", { class: "scroll" }, table(["When", "Change", "Run", "Details"], rows, 99, "fixed-audit")), older);
    }
    async function loadTrail() {
      const me = seq;
      try {
        const next = await getJSON("/api/offer", { trackier_id: trackierId, before: cursors[cursors.length - 1] });
        if (me === seq) drawTrail(next.audit);
      } catch (err) {
        if (me === seq) replace(trail, failure(err, "the audit trail"));
      }
    }
    drawTrail(first.audit);
    const head = el("section", { class: "card", attrs: { id: "offer-detail", "data-trackier-id": o.trackier_id } },
      el("div", { class: "card-head" }, el("h2", {}, data(o.title, "offer-title")), activePill(o)),
      el("div", { class: "card-body" }, whyInactive(o), offerFields(o)));
    replace(view, back, head, card("offer-history", "Audit trail", "every insert, change, deactivation and reactivation, newest first", trail));
  }

  // --- routing ----------------------------------------------------------------------------------
  function parseHash() {
    const raw = location.hash.replace(/^#/, "");
    const slash = raw.indexOf("/");
    const name = slash === -1 ? raw : raw.slice(0, slash);
    let arg = slash === -1 ? null : raw.slice(slash + 1);
    try { arg = arg === null ? null : decodeURIComponent(arg); } catch (_) { arg = null; }
    return { name: VIEWS.includes(name) ? name : "overview", arg };
  }
  function route() {
    const { name, arg } = parseHash();
    const panel = name === "offer" ? "offers" : name;
    for (const v of ["overview", "history", "run", "offers"]) $(`view-${v}`).hidden = v !== panel;
    for (const tab of document.querySelectorAll(".tabs [data-tab]")) {
      const on = tab.dataset.tab === TAB_OF[name];
      tab.classList.toggle("on", on);
      tab.setAttribute("aria-current", on ? "page" : "false");
    }
    document.body.dataset.view = name;
    if (name === "overview") seq++;
    else if (name === "history") showHistory(arg);
    else if (name === "run" && arg) showRun(arg);
    else if (name === "run") location.replace("#history");
    else if (name === "offers") showOffers(arg);
    else if (name === "offer" && arg) showOffer(arg);
    else location.replace("#offers");
    window.scrollTo(0, 0);
  }
  window.addEventListener("hashchange", route);
  route();
})();
