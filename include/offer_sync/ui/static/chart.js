// Offer Sync page, History chart: plain SVG drawn here (no library, nothing fetched from a CDN;
// the page works offline). One column per run, oldest on the left:
//
//   status strip   one square per run in its status colour: a failed run is a red square, and a
//                  red band runs down through every panel behind it
//   offers         added / updated / deactivated / rejected per run (lines with a point per run),
//                  on a log scale so a first sync of a million offers does not flatten the rest
//   duration       per run, with the duration alert threshold as a dashed line
//   error rate     per run, with the error-rate alert threshold as a dashed line
//
// Hovering a column shows its numbers; clicking it (or Enter on it) opens the run. Every label is
// set with textContent; run ids only ever go into attributes.
"use strict";

(() => {
  const { el, num, pct, duration, brief, STATUS_TEXT } = window.OfferSync;
  const NS = "http://www.w3.org/2000/svg";

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) if (v !== undefined && v !== null) node.setAttribute(k, String(v));
    for (const child of children) if (child) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    return node;
  }
  const text = (x, y, content, attrs) => svg("text", { x, y, ...(attrs || {}) }, String(content));

  const SERIES = [
    { key: "added", label: "Added" },
    { key: "updated", label: "Updated" },
    { key: "deactivated", label: "Deactivated" },
    { key: "rejected", label: "Rejected" },
  ];
  const STATUS_CLASS = (status) => `st-${String(status || "pending").replace(/[^a-z_]/g, "")}`;

  // log10(1 + v): 0 stays 0, and each power of ten is one step up.
  const symlog = (v) => Math.log10(1 + Math.max(0, v));
  const compact = (v) => (v >= 1e6 ? `${v / 1e6}M` : v >= 1e3 ? `${v / 1e3}k` : String(v));
  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = 10 ** Math.floor(Math.log10(v));
    for (const m of [1, 2, 4, 5, 10]) if (m * p >= v) return m * p; // halves stay round: .5, 1, 2, 2.5, 5
    return 10 * p;
  }

  // Durations on an axis: round in the unit that fits (s, min, h), labelled short ("20 min").
  function niceDuration(v) {
    if (v <= 90) return niceMax(v);
    if (v <= 5400) return niceMax(v / 60) * 60;
    return niceMax(v / 3600) * 3600;
  }
  function shortDuration(s) {
    const round = (v) => String(Math.round(v * 10) / 10);
    if (s < 60) return `${round(s)} s`;
    if (s < 3600) return `${round(s / 60)} min`;
    return `${round(s / 3600)} h`;
  }

  /**
   * Build the chart: returns a <div class="chart"> holding the SVG and its tooltip.
   * runs: oldest first (from /api/history); thresholds: {max_duration_s, max_error_rate};
   * opts: {width, hidden: Set of series keys to leave out, onSelect(runId)}.
   */
  function historyChart(runs, thresholds, opts) {
    const width = Math.max(560, Math.floor(opts.width || 900));
    const hidden = opts.hidden || new Set();
    const M = { left: 70, right: 18 };
    const plotW = width - M.left - M.right;
    const n = runs.length;
    const step = plotW / Math.max(1, n);
    const x = (i) => M.left + (i + 0.5) * step;

    const STRIP = { top: 8, h: 14 };
    const COUNTS = { top: 48, h: 190, title: "Offers per run" };
    const DURATION = { top: COUNTS.top + COUNTS.h + 40, h: 110, title: "Duration" };
    const RATE = { top: DURATION.top + DURATION.h + 40, h: 110, title: "Error rate" };
    const AXIS = RATE.top + RATE.h;
    const height = AXIS + 34;

    const root = svg("svg", { class: "chart-svg", width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
      "aria-label": `History of the last ${n} syncs: offers added, updated, deactivated and rejected, duration and error rate per run` });

    // Failed runs: a band behind every panel, so they stand out at a glance.
    runs.forEach((r, i) => {
      if (r.status === "failed") {
        root.append(svg("rect", { class: "band-failed", x: x(i) - step / 2, y: STRIP.top - 4, width: step, height: AXIS - STRIP.top + 4,
          "data-run-id": r.run_id }));
      }
    });

    // Status strip.
    root.append(text(M.left - 10, STRIP.top + STRIP.h - 3, "Status", { class: "axis-title", "text-anchor": "end" }));
    const sq = Math.max(3, Math.min(STRIP.h, step - 2));
    runs.forEach((r, i) => {
      root.append(svg("rect", { class: `status-cell ${STATUS_CLASS(r.status)}${r.dry_run ? " dry" : ""}`, x: x(i) - sq / 2, y: STRIP.top,
        width: sq, height: STRIP.h, rx: 2, "data-run-id": r.run_id, "data-status": r.status }));
    });

    function panelFrame(panel, ticks, fmt, yOf, note) {
      const g = svg("g", { class: "panel" });
      g.append(text(M.left, panel.top - 12, panel.title, { class: "panel-title" }));
      if (note) g.append(text(M.left + plotW, panel.top - 12, note, { class: "panel-note", "text-anchor": "end" }));
      for (const t of ticks) {
        const y = yOf(t);
        g.append(svg("line", { class: "grid", x1: M.left, x2: M.left + plotW, y1: y, y2: y }));
        g.append(text(M.left - 8, y + 4, fmt(t), { class: "tick", "text-anchor": "end" }));
      }
      g.append(svg("line", { class: "axis", x1: M.left, x2: M.left + plotW, y1: panel.top + panel.h, y2: panel.top + panel.h }));
      return g;
    }
    function series(g, key, cls, values, yOf, extraClass) {
      // One line through the runs that have a value (a gap where a run has none), a point per run.
      const segments = [[]];
      values.forEach((v, i) => {
        if (v === null || v === undefined) segments.push([]);
        else segments[segments.length - 1].push(`${x(i).toFixed(1)},${yOf(v).toFixed(1)}`);
      });
      const d = segments.filter((seg) => seg.length > 1).map((seg) => `M${seg.join("L")}`).join(" ");
      if (d) g.append(svg("path", { class: `line ${cls}`, d }));
      const r = Math.max(2, Math.min(4, step / 4));
      values.forEach((v, i) => {
        if (v === null || v === undefined) return;
        const over = extraClass ? extraClass(v, runs[i]) : "";
        g.append(svg("circle", { class: `point ${cls}${over ? ` ${over}` : ""}${runs[i].status === "failed" ? " failed" : ""}`,
          cx: x(i), cy: yOf(v), r, "data-series": key, "data-run-id": runs[i].run_id, "data-value": v }));
      });
    }
    function threshold(g, key, panel, value, yOf, label) {
      if (value === null || value === undefined) return;
      const y = yOf(value);
      g.append(svg("line", { class: "threshold", x1: M.left, x2: M.left + plotW, y1: y, y2: y, "data-threshold": key, "data-value": value }));
      g.append(text(M.left + plotW - 4, Math.max(panel.top + 10, y - 5), label, { class: "threshold-label", "text-anchor": "end", "data-threshold-label": key }));
    }

    // Offers per run (log scale).
    const shown = SERIES.filter((s) => !hidden.has(s.key));
    const maxCount = Math.max(1, ...runs.flatMap((r) => shown.map((s) => r[s.key] || 0)));
    const decade = 10 ** Math.ceil(Math.log10(maxCount)); // the top grid line: the next power of ten
    const top = symlog(decade);
    const yCount = (v) => COUNTS.top + COUNTS.h - (symlog(v) / top) * COUNTS.h;
    const countTicks = [0];
    for (let p = 1; p <= decade; p *= 10) countTicks.push(p);
    const gCounts = panelFrame(COUNTS, countTicks, compact, yCount, "log scale");
    for (const s of shown) series(gCounts, s.key, `c-${s.key}`, runs.map((r) => r[s.key]), yCount);
    root.append(gCounts);

    // Duration.
    const limitS = thresholds ? thresholds.max_duration_s : null;
    const maxD = niceDuration(Math.max(...runs.map((r) => r.duration_s || 0), limitS || 0) * 1.1);
    const yDur = (v) => DURATION.top + DURATION.h - (Math.min(v, maxD) / maxD) * DURATION.h;
    const gDur = panelFrame(DURATION, [0, maxD / 2, maxD], shortDuration, yDur);
    threshold(gDur, "duration", DURATION, limitS, yDur, `alert above ${shortDuration(limitS)}`);
    series(gDur, "duration", "c-duration", runs.map((r) => r.duration_s), yDur,
      (v) => (limitS !== null && limitS !== undefined && v > limitS ? "over" : ""));
    root.append(gDur);

    // Error rate.
    const limitR = thresholds ? thresholds.max_error_rate : null;
    const maxR = niceMax(Math.max(...runs.map((r) => r.error_rate || 0), limitR || 0, 0.001) * 1.1);
    const yRate = (v) => RATE.top + RATE.h - (Math.min(v, maxR) / maxR) * RATE.h;
    const gRate = panelFrame(RATE, [0, maxR / 2, maxR], (t) => pct(t), yRate);
    threshold(gRate, "error_rate", RATE, limitR, yRate, `alert above ${pct(limitR)}`);
    series(gRate, "error_rate", "c-error_rate", runs.map((r) => r.error_rate), yRate,
      (v) => (limitR !== null && limitR !== undefined && v > limitR ? "over" : ""));
    root.append(gRate);

    // Dates under the axis: every `every` runs, skipping a label that would touch the previous one.
    const every = Math.max(1, Math.ceil(n / Math.max(1, Math.floor(plotW / 120))));
    let lastRight = -Infinity;
    runs.forEach((r, i) => {
      if (i % every !== 0) return;
      const label = brief(r.started_at);
      const w = label.length * 6.2; // 11px text: a conservative width, no layout pass needed
      const anchor = n === 1 ? "middle" : x(i) - M.left < w / 2 ? "start" : M.left + plotW - x(i) < w / 2 ? "end" : "middle";
      const left = anchor === "start" ? x(i) : anchor === "end" ? x(i) - w : x(i) - w / 2;
      if (left < lastRight + 10) return;
      lastRight = left + w;
      root.append(text(x(i), AXIS + 18, label, { class: "tick", "text-anchor": anchor }));
    });

    // Hover/click targets, one column per run, on top of everything.
    const guide = svg("line", { class: "guide", x1: 0, x2: 0, y1: STRIP.top - 4, y2: AXIS, visibility: "hidden" });
    root.append(guide);
    const tip = el("div", { class: "chart-tip", attrs: { role: "status", hidden: "" } });
    function tipFor(r) {
      const rows = [
        ["Added", num(r.added)], ["Updated", num(r.updated)], ["Deactivated", num(r.deactivated)],
        ["Rejected", num(r.rejected)], ["Duration", duration(r.duration_s)], ["Error rate", pct(r.error_rate)],
      ];
      return [
        el("div", { class: "tip-head" }, el("span", { class: `dot ${STATUS_CLASS(r.status)}` }),
          el("strong", { text: STATUS_TEXT[r.status] || r.status }), r.dry_run ? el("span", { class: "tag", text: "dry run" }) : null),
        el("div", { class: "mono small tip-run", text: r.run_id }),
        el("div", { class: "muted small", text: brief(r.started_at) }),
        el("dl", {}, ...rows.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })])),
        el("div", { class: "muted small", text: "Click for the run's details" }),
      ];
    }
    const wrap = el("div", { class: "chart", attrs: { "data-runs": n } }, root, tip);
    function show(i) {
      const r = runs[i];
      guide.setAttribute("x1", x(i)); guide.setAttribute("x2", x(i)); guide.setAttribute("visibility", "visible");
      tip.replaceChildren(...tipFor(r));
      tip.hidden = false;
      const left = x(i) + 14;
      tip.style.left = `${left + 200 > width ? x(i) - 214 : left}px`;
      tip.style.top = `${COUNTS.top}px`;
    }
    function hide() { guide.setAttribute("visibility", "hidden"); tip.hidden = true; }
    runs.forEach((r, i) => {
      const hit = svg("rect", { class: "hit", x: x(i) - step / 2, y: STRIP.top - 4, width: step, height: AXIS - STRIP.top + 4,
        tabindex: 0, role: "button", "data-run-id": r.run_id,
        "aria-label": `${brief(r.started_at)}: ${STATUS_TEXT[r.status] || r.status}, added ${num(r.added)}, updated ${num(r.updated)}, deactivated ${num(r.deactivated)}, rejected ${num(r.rejected)}` });
      hit.addEventListener("mouseenter", () => show(i));
      hit.addEventListener("focus", () => show(i));
      hit.addEventListener("mouseleave", hide);
      hit.addEventListener("blur", hide);
      hit.addEventListener("click", () => opts.onSelect && opts.onSelect(r.run_id));
      hit.addEventListener("keydown", (event) => {
        if (event.key === "Enter" || event.key === " ") { event.preventDefault(); if (opts.onSelect) opts.onSelect(r.run_id); }
      });
      root.append(hit);
    });
    return wrap;
  }

  window.OfferSync.chart = { historyChart, SERIES };
})();
