// meshwa's dashboard: a page of the admin listener that reads the same JSON API as the CLI
// (docs/openapi.json) with the token the user logs in with. No framework, no CDN: the server
// embeds this file. Everything a function or tenant chose (names, routes, errors) is put in the
// page as text, never as markup, and the server's Content-Security-Policy allows no other script.
"use strict";

const REFRESH_MS = 5000;
const SVG = "http://www.w3.org/2000/svg";

const state = { token: null, who: null, apps: [], selected: null, trace: null, timer: null };

function $(id) { return document.getElementById(id); }

/** An element with attributes and children (strings become text nodes). */
function el(tag, attrs = {}, ...children) {
  const node = tag.startsWith("svg:")
    ? document.createElementNS(SVG, tag.slice(4))
    : document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  for (const child of children) node.append(child);
  return node;
}

async function api(path) {
  const answer = await fetch(path, { headers: { authorization: "Bearer " + state.token } });
  if (answer.status === 401) { logout("The token was refused."); throw new Error("unauthorized"); }
  const body = await answer.json().catch(() => ({}));
  if (!answer.ok) throw new Error(body.message || ("HTTP " + answer.status));
  return body;
}

// ---- logging in and out --------------------------------------------------------------------

async function login(token) {
  state.token = token;
  try {
    state.who = await api("/v1/whoami");
  } catch (error) {
    state.token = null;
    $("login-error").textContent = error.message === "unauthorized"
      ? "The token was refused." : error.message;
    return;
  }
  sessionStorage.setItem("meshwa-token", token);
  $("who").textContent = state.who.role === "operator"
    ? "operator" : "tenant " + state.who.tenant;
  $("login").hidden = true;
  $("board").hidden = false;
  $("logout").hidden = false;
  $("pool").hidden = state.who.role !== "operator";
  await refresh();
  state.timer = setInterval(() => refresh().catch(() => {}), REFRESH_MS);
}

function logout(message = "") {
  clearInterval(state.timer);
  sessionStorage.removeItem("meshwa-token");
  Object.assign(state, { token: null, who: null, apps: [], selected: null, trace: null });
  $("board").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  $("who").textContent = "";
  $("token").value = "";
  $("login-error").textContent = message;
}

// ---- the app list and the pool -------------------------------------------------------------

async function refresh() {
  const [apps, pool] = await Promise.all([
    api("/v1/apps"),
    state.who.role === "operator" ? api("/v1/pool") : null,
  ]);
  state.apps = apps.apps;
  if (pool) drawPool(pool);
  drawAppList();
  const still = state.apps.find((a) => key(a) === state.selected);
  if (!still && state.apps.length) state.selected = key(state.apps[0]);
  if (state.selected) await drawApp();
}

function key(app) { return app.tenant + "/" + app.app; }

function drawPool(pool) {
  const share = pool.instance_slots ? pool.live_instances / pool.instance_slots : 0;
  $("pool-used").style.width = (100 * share).toFixed(1) + "%";
  $("pool-text").textContent = `${pool.live_instances} of ${pool.instance_slots} instances live`
    + (pool.pooling ? ", pooling allocator" : "") + (pool.mpk ? ", protection keys" : "");
}

function drawAppList() {
  const list = $("apps");
  list.replaceChildren(...state.apps.map((app) => {
    const item = el("li", { "data-app": key(app) }, el("span", { class: "tenant" }, app.tenant + "/"), app.app);
    if (key(app) === state.selected) item.classList.add("selected");
    item.addEventListener("click", () => {
      state.selected = key(app);
      state.trace = null;
      drawAppList();
      drawApp().catch(() => {});
    });
    return item;
  }));
  if (!state.apps.length) list.replaceChildren(el("li", { class: "quiet" }, "No apps yet."));
}

// ---- one app -------------------------------------------------------------------------------

async function drawApp() {
  const base = "/v1/tenants/" + state.selected.split("/").map(encodeURIComponent).join("/apps/");
  const [detail, traffic, traces] = await Promise.all([
    api(base), api(base + "/traffic"), api(base + "/traces?limit=20"),
  ]);
  $("app").hidden = false;
  $("app-name").textContent = detail.tenant + "/" + detail.app;
  $("app-source").textContent = detail.source.kind === "deployed"
    ? `deployed, version ${detail.source.version}` : "served from the command line";
  drawFunctions(detail.functions);
  drawPlots(traffic);
  drawInvocations(traces.traces);
  const shown = traces.traces.find((t) => t.invocation === state.trace);
  $("waterfall-box").hidden = !shown;
  if (shown) drawWaterfall(shown);
}

function grants(g) {
  const parts = [];
  if (g.key_value.length) parts.push("key-value: " + g.key_value.map((s) => s || "(default)").join(", "));
  if (g.config.length) parts.push("config: " + g.config.join(", "));
  if (g.outbound.length) parts.push("outbound: " + g.outbound.join(", "));
  if (g.logging) parts.push("logging");
  return parts.join("; ") || "none";
}

function drawFunctions(functions) {
  $("functions").tBodies[0].replaceChildren(...functions.map((f) => el("tr", {},
    el("td", {}, f.name), el("td", {}, f.route || "(in-process only)"),
    el("td", {}, grants(f.grants)), el("td", {}, String(f.live_instances)))));
}

function drawInvocations(traces) {
  const rows = traces.slice().reverse().map((t) => {
    const root = t.spans.find((s) => s.parent === undefined) || t.spans[0];
    const status = root ? (root.error || String(root.status)) : "";
    const row = el("tr", { "data-invocation": t.invocation },
      el("td", {}, new Date(t.at_ms).toLocaleTimeString()), el("td", {}, t.function),
      el("td", {}, el("code", {}, t.invocation)), el("td", {}, String(t.spans.length)),
      el("td", {}, root ? micros(root.duration_us) : ""),
      el("td", { class: root && (root.error || root.status >= 500) ? "status-bad" : "" }, status));
    if (t.invocation === state.trace) row.classList.add("selected");
    row.addEventListener("click", () => {
      state.trace = t.invocation;
      for (const r of $("invocations").tBodies[0].rows) r.classList.toggle("selected", r === row);
      $("waterfall-box").hidden = false;
      drawWaterfall(t);
    });
    return row;
  });
  $("invocations").tBodies[0].replaceChildren(...rows);
  if (!rows.length) {
    $("invocations").tBodies[0].replaceChildren(
      el("tr", {}, el("td", { colspan: "6", class: "quiet" }, "No invocations in the last minutes.")));
  }
}

function micros(us) {
  return us >= 1e6 ? (us / 1e6).toFixed(2) + " s" : us >= 1e3 ? (us / 1e3).toFixed(2) + " ms" : us + " µs";
}

// ---- plots ---------------------------------------------------------------------------------

/** Sums the functions' traffic per interval: requests/s, errors/s, and the slowest function's percentiles. */
function combine(traffic) {
  const points = [];
  for (const f of traffic.functions) {
    f.points.forEach((p, i) => {
      const into = points[i] || (points[i] = { t: p.start_ms, requests: 0, errors: 0, p50: null, p90: null, p99: null });
      into.requests += p.requests / traffic.interval_s;
      into.errors += p.errors / traffic.interval_s;
      for (const q of ["p50", "p90", "p99"]) {
        const v = p[q + "_us"];
        if (v !== undefined) into[q] = Math.max(into[q] || 0, v / 1000);
      }
    });
  }
  return points;
}

function drawPlots(traffic) {
  const points = combine(traffic);
  plot($("plot-requests"), points, [["requests", "s-requests"], ["errors", "s-errors"]], "/s");
  plot($("plot-latency"), points, [["p50", "s-p50"], ["p90", "s-p90"], ["p99", "s-p99"]], " ms");
}

/** Draws `series` ([field, class]) of `points` as lines, with a y axis from 0 to the maximum. */
function plot(svg, points, series, unit) {
  const [w, h, left, bottom] = [600, 180, 48, 20];
  const values = points.flatMap((p) => series.map(([f]) => p[f]).filter((v) => v !== null));
  const top = niceCeiling(Math.max(0, ...values));
  const x = (i) => left + (i * (w - left - 8)) / Math.max(1, points.length - 1);
  const y = (v) => h - bottom - (v / top) * (h - bottom - 10);
  const parts = [];
  for (const frac of [0, 0.5, 1]) {
    parts.push(el("svg:line", { class: "grid", x1: left, x2: w - 8, y1: y(top * frac), y2: y(top * frac) }));
    parts.push(el("svg:text", { x: left - 4, y: y(top * frac) + 4, "text-anchor": "end" }, format(top * frac) + unit));
  }
  parts.push(el("svg:line", { class: "axis", x1: left, x2: left, y1: 10, y2: h - bottom }));
  parts.push(el("svg:text", { x: left, y: h - 4 }, "-10 min"));
  parts.push(el("svg:text", { x: w - 8, y: h - 4, "text-anchor": "end" }, "now"));
  for (const [field, cls] of series) {
    // A line per run of intervals that have a value (percentiles are absent without requests).
    let run = [];
    const flush = () => {
      if (run.length) parts.push(el("svg:polyline", { class: "series " + cls, "data-series": field, points: run.join(" ") }));
      run = [];
    };
    points.forEach((p, i) => {
      if (p[field] === null) return flush();
      run.push(`${x(i).toFixed(1)},${y(p[field]).toFixed(1)}`);
      // A marker on every interval with traffic, so that a lone interval shows as well.
      if (p.requests > 0) {
        parts.push(el("svg:circle", { class: cls, "data-series": field, cx: x(i).toFixed(1), cy: y(p[field]).toFixed(1), r: 2.5 }));
      }
    });
    flush();
    parts.push(el("svg:text", { x: w - 8 - 40 * (series.length - series.findIndex(([f]) => f === field) - 1), y: 12, "text-anchor": "end", class: cls }, field));
  }
  svg.replaceChildren(...parts);
}

function niceCeiling(v) {
  if (v <= 0) return 1;
  const power = 10 ** Math.floor(Math.log10(v));
  return [1, 2, 5, 10].map((m) => m * power).find((c) => c >= v);
}

function format(v) { return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2); }

// ---- a trace as a waterfall ----------------------------------------------------------------

function drawWaterfall(trace) {
  $("waterfall-id").textContent = trace.invocation;
  const spans = trace.spans;
  const depth = new Map();
  for (const s of spans) depth.set(s.span, s.parent === undefined ? 0 : (depth.get(s.parent) ?? 0) + 1);
  const end = Math.max(1, ...spans.map((s) => s.start_us + s.duration_us));
  const [w, row, label] = [760, 22, 230];
  const scale = (us) => (us * (w - label - 70)) / end;
  const svg = $("waterfall");
  svg.setAttribute("viewBox", `0 0 ${w} ${row * spans.length + 6}`);
  svg.replaceChildren(...spans.flatMap((s, i) => {
    const top = 3 + i * row;
    const name = "  ".repeat(depth.get(s.span)) + s.app + "/" + s.function;
    const failed = s.error !== undefined || s.status >= 500;
    return [
      el("svg:text", { class: "name", x: 4 + 10 * depth.get(s.span), y: top + 14 }, name.trim()),
      el("svg:rect", { class: failed ? "failed" : "ok", x: label + scale(s.start_us), y: top + 3, height: row - 8,
        width: Math.max(1, scale(s.duration_us)), "data-span": s.span }),
      el("svg:text", { x: label + scale(s.start_us + s.duration_us) + 4, y: top + 14 },
        micros(s.duration_us) + (failed ? " " + (s.error || s.status) : "")),
    ];
  }));
}

// ---- start ---------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    $("login-error").textContent = "";
    login($("token").value.trim());
  });
  $("logout").addEventListener("click", () => logout());
  const saved = sessionStorage.getItem("meshwa-token");
  if (saved) login(saved);
});
