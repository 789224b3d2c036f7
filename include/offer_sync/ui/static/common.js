// Offer Sync page: what every view shares (window.OfferSync): DOM helpers that only ever set text,
// formatting, links into Airflow, and JSON requests to the page's own API.
//
// Safety rule: every value from the server (and so from Trackier) goes into the DOM through
// textContent or setAttribute, never innerHTML. An offer named <img src=x onerror=alert(1)> is text.
//
// URLs: the page may be served under a sub-path ([api] base_url = https://host/airflow). The
// server renders two paths into <body>: data-base (this app, e.g. /airflow/offer-sync) and
// data-airflow-root (Airflow itself, e.g. /airflow). Every URL below is built from those two.
"use strict";

(() => {
  const body = document.body;
  const BASE = body.dataset.base || "";
  const AIRFLOW_ROOT = body.dataset.airflowRoot || "";
  const DAG_ID = body.dataset.dagId;
  const $ = (id) => document.getElementById(id);

  // --- DOM helpers (text only) ---------------------------------------------------------------
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    const p = props || {};
    if (p.class) node.className = p.class;
    if (p.text !== undefined && p.text !== null) node.textContent = String(p.text);
    if (p.title) node.title = String(p.title);
    if (p.href) node.setAttribute("href", String(p.href));
    if (p.attrs) for (const [k, v] of Object.entries(p.attrs)) if (v !== undefined && v !== null) node.setAttribute(k, String(v));
    if (p.on) for (const [k, fn] of Object.entries(p.on)) node.addEventListener(k, fn);
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }
  const replace = (target, ...nodes) => (typeof target === "string" ? $(target) : target).replaceChildren(...nodes.filter(Boolean));
  const titled = (node, title) => { node.title = String(title); return node; };
  // Text from Trackier in its own bidi island: an RTL override in a title cannot flip the page around it.
  const data = (text, cls) => el("bdi", { class: cls ? `data ${cls}` : "data", text: text === null || text === undefined ? "" : text });

  // --- formatting -------------------------------------------------------------------------------
  const nf = new Intl.NumberFormat("en-US");
  const num = (n) => (n === null || n === undefined ? "–" : nf.format(n));
  const pct = (rate) => (rate === null || rate === undefined ? "–" : `${(rate * 100).toFixed(rate < 0.01 && rate > 0 ? 2 : 1)}%`);
  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    if (seconds > 0 && seconds < 10) return `${seconds.toFixed(seconds < 1 ? 2 : 1)} s`;
    const s = Math.max(0, Math.round(seconds));
    if (s < 60) return `${s} s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m} min ${String(s % 60).padStart(2, "0")} s`;
    return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, "0")} min`;
  }
  const when = (iso) => (iso ? new Date(iso).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" }) : "–");
  const brief = (iso) => (iso ? new Date(iso).toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" }) : "–");
  const since = (iso) => (iso ? (Date.now() - new Date(iso).getTime()) / 1000 : null);
  const STATUS_TEXT = {
    completed: "Completed", completed_with_errors: "Completed with errors", failed: "Failed", running: "Running",
    queued: "Queued", success: "Success", pending: "Pending", skipped: "Skipped", upstream_failed: "Upstream failed",
    up_for_retry: "Retrying", scheduled: "Scheduled", deferred: "Deferred",
  };
  const pill = (status) => el("span", { class: `pill s-${String(status || "pending").replace(/[^a-z_]/g, "")}`,
    text: STATUS_TEXT[status] || status || "Pending", attrs: { "data-status": status || "" } });

  // Links to Airflow's own pages: inside the UI's iframe, navigate the Airflow UI itself (same
  // origin: its router follows history changes), instead of nesting the UI inside the frame.
  function airflowLink(path, text, cls) {
    const href = `${AIRFLOW_ROOT}${path}`;
    const a = el("a", { href, text, class: cls });
    a.addEventListener("click", (event) => {
      if (window.top === window || event.ctrlKey || event.metaKey || event.shiftKey) return;
      try {
        window.top.history.pushState({}, "", href);
        window.top.dispatchEvent(new PopStateEvent("popstate", { state: {} }));
        event.preventDefault();
      } catch (_) { /* not reachable: let the link open here */ }
    });
    return a;
  }
  const runPath = (runId) => `/dags/${encodeURIComponent(DAG_ID)}/runs/${encodeURIComponent(runId)}`;
  function safeHref(link) {
    try {
      const url = new URL(link, window.location.origin);
      return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
    } catch (_) { return null; }
  }
  // In-page views live in the location hash: #history, #run/<id>, #offers/<query>, #offer/<id>.
  const viewHref = (view, arg) => (arg === undefined || arg === null ? `#${view}` : `#${view}/${encodeURIComponent(arg)}`);
  const viewLink = (view, arg, text, cls) => el("a", { href: viewHref(view, arg), text, class: cls });

  // --- banners and tables -----------------------------------------------------------------------
  function banner(kind, title, detail, extra) {
    return el("div", { class: `banner ${kind}`, attrs: { role: kind === "error" ? "alert" : "status", "data-banner": kind } },
      el("strong", { text: title }), detail ? el("span", { text: ` ${detail}` }) : null, extra || null);
  }
  function table(headers, rows, numericFrom, cls) {
    return el("table", { class: cls ? `table ${cls}` : "table" },
      el("thead", {}, el("tr", {}, ...headers.map((h, i) => el("th", { class: i >= numericFrom ? "num" : "", text: h })))),
      el("tbody", {}, ...rows));
  }
  function emptyRow(text, key) { return el("p", { class: "muted pad", text, attrs: { "data-empty": key } }); }

  // --- the page's JSON API ----------------------------------------------------------------------
  // 401/403 end the session for every view at once (page.js shows the signed-out / forbidden state).
  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }
  function apiUrl(path, params) {
    const query = new URLSearchParams();
    for (const [k, v] of Object.entries(params || {})) if (v !== undefined && v !== null && v !== "") query.set(k, String(v));
    const qs = query.toString();
    return `${BASE}${path}${qs ? `?${qs}` : ""}`;
  }
  async function getJSON(path, params) {
    let resp;
    try {
      resp = await fetch(apiUrl(path, params), { credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json" } });
    } catch (_) {
      throw new ApiError(0, "The Airflow API server did not answer.");
    }
    if (resp.status === 401 || resp.status === 403) {
      document.dispatchEvent(new CustomEvent("offersync:auth", { detail: resp.status }));
      throw new ApiError(resp.status, resp.status === 401 ? "You are signed out." : "Not allowed.");
    }
    const payload = await resp.json().catch(() => ({}));
    if (!resp.ok) {
      const detail = typeof payload.detail === "string" ? payload.detail : `HTTP ${resp.status}`;
      throw new ApiError(resp.status, detail);
    }
    return payload;
  }

  window.OfferSync = {
    BASE, AIRFLOW_ROOT, DAG_ID, $, el, replace, titled, data, num, pct, duration, when, brief, since, STATUS_TEXT,
    pill, airflowLink, runPath, safeHref, viewHref, viewLink, banner, table, emptyRow, ApiError, apiUrl, getJSON,
  };
})();
