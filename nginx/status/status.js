// ocpm status page: polls the JSON API every 2 s and renders it. Every value from the server is
// inserted as text (textContent / createTextNode), never as HTML.
"use strict";
const POLL_MS = 2000;
const BAD = new Set(["failed", "timeout", "interrupted"]);
const $ = (id) => document.getElementById(id);

function text(id, value) { $(id).textContent = value === null || value === undefined ? "–" : String(value); }

function ago(seconds) {
  if (seconds < 90) return Math.round(seconds) + " s";
  if (seconds < 5400) return Math.round(seconds / 60) + " min";
  return (seconds / 3600).toFixed(1) + " h";
}

async function getJSON(path) {
  const r = await fetch(path, { cache: "no-store" });
  if (!r.ok) throw new Error(path + " answered " + r.status);
  return r.json();
}

function renderStatus(s) {
  const pm = s.processManager;
  $("draining").hidden = !(s.ocpm && s.ocpm.draining);
  text("node", s.ocpm && s.ocpm.node ? "node " + s.ocpm.node : "");
  text("mode", pm.mode);
  text("mode-sub", pm.description);
  text("running", s.runningProcesses);
  text("queued", pm.pendingRequests);
  text("streams", s.activeStreams + " active streams");
  text("sessions", pm.activeSessions);
  text("spawned", (s.ocpm ? s.ocpm.processesSpawned : 0) + " processes spawned");
  text("uptime", s.ocpm ? "up " + ago(s.ocpm.uptimeSeconds) : "");
  const db = s.ocpm && s.ocpm.database, pool = s.ocpm && s.ocpm.responders;
  const dbCard = $("db-card");
  dbCard.classList.remove("healthy", "unhealthy");
  if (db && pool) {
    text("db", db.ok ? "ok" : db.pendingWrites + " records waiting");
    dbCard.classList.add(db.ok ? "healthy" : "unhealthy");
    text("db-sub", (db.ok || !db.lastError ? "" : db.lastError + "; ") + "pool " + pool.inFlight + "/" +
      pool.capacity + " busy, " + pool.refused + " refused");
  }
  const card = $("server-card");
  card.classList.remove("healthy", "unhealthy");
  const servers = s.servers || [];
  if (servers.length) {
    const healthy = servers.filter((v) => v.healthy).length;
    // FATAL: restarted too often and left down until an operator restarts it; it must stand out.
    const fatal = servers.filter((v) => v.state === "fatal").length;
    text("server", fatal ? fatal + (servers.length > 1 ? "/" + servers.length : "") + " FATAL" :
      servers.length === 1 ? (healthy ? "healthy" : servers[0].state) : healthy + "/" + servers.length + " healthy");
    card.classList.add(healthy === servers.length ? "healthy" : "unhealthy");
    // One line per server: its number, state, pid, restarts, age, memory and messages in flight.
    const lines = servers.map((v) => {
      const up = v.startedAt ? ago(Date.now() / 1000 - v.startedAt / 1000) : "–";
      return (servers.length > 1 ? "#" + v.index + " " + (v.healthy ? "" : v.state + ", ") : "") +
        (v.state === "fatal" ? "FATAL: fix the cause, then ocpmctl server restart; " : "") +
        "pid " + (v.pid || "–") + ", restarts " + v.restarts + ", up " + up + ", " +
        Math.round((v.rssBytes || 0) / 1048576) + " MB" + (servers.length > 1 ? ", " + v.inFlight + " in flight" : "");
    });
    const sub = $("server-sub");
    sub.replaceChildren(...lines.flatMap((l, i) => (i ? [document.createElement("br"), document.createTextNode(l)] : [document.createTextNode(l)])));
  } else {
    text("server", "none");
    text("server-sub", s.available ? "opencode " + s.version : "opencode unavailable");
    if (!s.available) card.classList.add("unhealthy");
  }
}

function cell(tr, value, cls) {
  const td = document.createElement("td");
  td.appendChild(document.createTextNode(value === null || value === undefined ? "–" : String(value)));
  if (cls) td.className = cls;
  tr.appendChild(td);
}

function renderRows(list) {
  const body = $("rows");
  const rows = list.map((e) => {
    const tr = document.createElement("tr");
    if (BAD.has(e.status)) tr.className = "bad";
    cell(tr, e.id);
    cell(tr, new Date(e.queued_at * 1000).toLocaleTimeString());
    cell(tr, e.status, "status");
    cell(tr, e.session_id);
    cell(tr, e.mode);
    cell(tr, e.duration_ms === null ? null : Math.round(e.duration_ms) + " ms");
    cell(tr, e.peak_rss_kb ? Math.round(e.peak_rss_kb / 1024) + " MB" : null);
    cell(tr, e.tokens_in === null ? null : e.tokens_in + " / " + e.tokens_out);
    cell(tr, e.error, "err");
    return tr;
  });
  body.replaceChildren(...rows);
}

function pct(sorted, p) {
  if (!sorted.length) return null;
  return sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)];
}

function svg(tag, attrs) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const k in attrs) el.setAttribute(k, attrs[k]);
  return el;
}

function renderChart(list) {
  const now = Date.now() / 1000, W = 720, H = 200, pad = 30, n = 12;
  const buckets = Array.from({ length: n }, () => ({ d: [], ok: 0, bad: 0 }));
  for (const e of list) {
    const i = Math.floor((e.queued_at - (now - 3600)) / 300);
    if (i < 0 || i >= n) continue;
    if (e.duration_ms !== null && e.status === "succeeded") buckets[i].d.push(e.duration_ms);
    if (e.status === "succeeded") buckets[i].ok++;
    else if (BAD.has(e.status)) buckets[i].bad++;
  }
  buckets.forEach((b) => b.d.sort((a, c) => a - c));
  const maxD = Math.max(1, ...buckets.map((b) => pct(b.d, 0.95) || 0));
  const maxN = Math.max(1, ...buckets.map((b) => b.ok + b.bad));
  const chart = $("chart");
  const parts = [];
  const bw = (W - 2 * pad) / n;
  buckets.forEach((b, i) => {
    const x = pad + i * bw;
    const hOk = (b.ok / maxN) * (H / 3), hBad = (b.bad / maxN) * (H / 3);
    parts.push(svg("rect", { x: x + 2, y: H - pad - hOk, width: bw - 4, height: hOk, fill: "#94d3a2" }));
    parts.push(svg("rect", { x: x + 2, y: H - pad - hOk - hBad, width: bw - 4, height: hBad, fill: "#e5534b" }));
  });
  for (const [p, color] of [[0.5, "#2f6feb"], [0.95, "#d97706"]]) {
    const pts = buckets.map((b, i) => [pad + i * bw + bw / 2, pct(b.d, p)]).filter((q) => q[1] !== null)
      .map((q) => q[0].toFixed(1) + "," + (H - pad - (q[1] / maxD) * (H - 2 * pad)).toFixed(1));
    if (pts.length) parts.push(svg("polyline", { points: pts.join(" "), fill: "none", stroke: color, "stroke-width": 2 }));
    for (const pt of pts) {
      const [cx, cy] = pt.split(",");
      parts.push(svg("circle", { cx, cy, r: 3, fill: color }));
    }
  }
  parts.push(svg("line", { x1: pad, y1: H - pad, x2: W - pad, y2: H - pad, stroke: "#aab" }));
  const label = svg("text", { x: pad, y: 14, "font-size": 11, fill: "#687083" });
  label.textContent = "max p95 " + Math.round(maxD) + " ms; bars: outcomes per 5 min (max " + maxN + ")";
  parts.push(label);
  chart.replaceChildren(...parts);
}

async function tick() {
  const status = $("f-status").value, session = $("f-session").value.trim();
  const q = new URLSearchParams({ limit: "50" });
  if (status) q.set("status", status);
  if (/^[A-Za-z0-9_-]{1,64}$/.test(session)) q.set("session", session);
  const since = Math.floor(Date.now() / 1000 - 3600);
  try {
    const [s, stats, recent, hour] = await Promise.all([
      getJSON("../api/opencode/status"),
      getJSON("../api/stats?since=" + since),
      getJSON("../api/admin/executions?" + q),
      getJSON("../api/admin/executions?limit=1000&since=" + since),
    ]);
    $("down").hidden = true;
    renderStatus(s);
    text("hour-total", stats.total);
    const d = stats.duration_ms;
    text("hour-sub", "p50 " + (d.p50 === null ? "–" : Math.round(d.p50)) + " ms, p95 " +
      (d.p95 === null ? "–" : Math.round(d.p95)) + " ms");
    renderRows(recent.executions);
    renderChart(hour.executions);
    text("updated", "updated " + new Date().toLocaleTimeString());
  } catch (err) {
    $("down").hidden = false;
    text("down-why", err.message);
    text("updated", "last attempt " + new Date().toLocaleTimeString());
  }
}

$("filters").addEventListener("submit", (ev) => ev.preventDefault());
$("f-status").addEventListener("change", tick);
$("f-session").addEventListener("input", tick);
tick();
setInterval(tick, POLL_MS);
