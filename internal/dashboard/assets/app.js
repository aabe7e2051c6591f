// statebus dashboard: renders the snapshots and tail batches the service
// pushes on /dashboard/events. Every string from the bus (ids, event
// names, process names, states) is set as text, never as HTML.
"use strict";

const HISTORY = 60;      // sparkline points (one per snapshot)
const TAIL_ROWS = 200;   // rows kept in the event tail

const $ = (id) => document.getElementById(id);
const history = new Map(); // connection id -> {in: [], out: []}
let source = null;
let paused = false;

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function num(v) {
  if (v >= 100) return Math.round(v).toLocaleString();
  if (v >= 10) return v.toFixed(1);
  return v.toFixed(2).replace(/\.?0+$/, "") || "0";
}

function bytes(n) {
  if (n >= 1 << 20) return (n / (1 << 20)).toFixed(1) + " MiB";
  if (n >= 1 << 10) return (n / (1 << 10)).toFixed(1) + " KiB";
  return n + " B";
}

function ago(ms) {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 90) return s + "s ago";
  if (s < 5400) return Math.round(s / 60) + "m ago";
  if (s < 129600) return Math.round(s / 3600) + "h ago";
  return Math.round(s / 86400) + "d ago";
}

function spark(values) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("viewBox", "0 0 " + (HISTORY - 1) + " 20");
  svg.setAttribute("preserveAspectRatio", "none");
  const top = Math.max(1, ...values);
  const pts = values.map((v, i) => (i + HISTORY - values.length) + "," + (19 - (v / top) * 18).toFixed(1));
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", pts.join(" "));
  svg.appendChild(line);
  return svg;
}

function cell(tr, text, cls) { const td = el("td", text, cls); tr.appendChild(td); return td; }

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

function renderMachines(v) {
  const seen = new Set();
  const rows = (v.machines || []).map((m) => {
    seen.add(m.conn);
    let h = history.get(m.conn);
    if (!h || h.at !== v.at) {
      if (!h) { h = { in: [], out: [] }; history.set(m.conn, h); }
      if (h.at !== v.at) {
        h.in.push(m.in); h.out.push(m.out); h.at = v.at;
        if (h.in.length > HISTORY) { h.in.shift(); h.out.shift(); }
      }
    }
    const tr = el("tr");
    tr.dataset.id = m.id;
    cell(tr, m.id);
    cell(tr, m.state || "", "state");
    let proc = m.process || "";
    if (m.processId) proc += " (" + m.processId + ")";
    if (m.daemon) proc += " @" + m.daemon + (m.host ? " on " + m.host : "");
    if (m.cert) proc += " " + m.cert;
    if (m.addr) proc += " " + m.addr;
    cell(tr, proc);
    cell(tr, m.daemon ? "" : m.pid + "/" + m.uid, "num");
    const since = cell(tr, m.since > 0 ? ago(m.since) : "");
    since.title = m.since > 0 ? new Date(m.since).toISOString() : "";
    const tin = cell(tr, num(m.in) + " ", "num"); tin.appendChild(spark(h.in));
    const tout = cell(tr, num(m.out) + " ", "num"); tout.appendChild(spark(h.out));
    cell(tr, bytes(m.queued), "num");
    cell(tr, m.slow === "stuck" ? "stuck " + m.blockedMs + " ms" : m.slow || "ok", m.slow || "");
    return tr;
  });
  for (const k of history.keys()) if (!seen.has(k)) history.delete(k);
  fill($("machines").tBodies[0], rows);
  $("machine-count").textContent = (v.machines || []).length + " ids, " + v.totals.Connections + " connections";
}

function renderTraffic(v) {
  const traffic = v.traffic || [];
  const top = Math.max(1, ...traffic.map((p) => p.rate));
  fill($("traffic").tBodies[0], traffic.map((p) => {
    const tr = el("tr");
    cell(tr, p.from); cell(tr, p.to); cell(tr, num(p.rate), "num");
    const bar = el("div", null, "bar");
    bar.style.width = Math.round((p.rate / top) * 120) + "px";
    cell(tr).appendChild(bar);
    return tr;
  }));
  $("sample").textContent = v.totals.SampleEvery > 1 ? "estimated from 1 event in " + v.totals.SampleEvery : "every event counted";
}

function renderOverload(v) {
  const reasons = Object.keys(v.refusals || {}).sort();
  fill($("refusals").tBodies[0], reasons.filter((r) => v.refusals[r] > 0).map((r) => {
    const tr = el("tr"); cell(tr, r); cell(tr, num(v.refusals[r]), "num"); return tr;
  }));
  $("overload-totals").textContent = "refused " + num(v.totals.Refused) + "/s · slow consumers closed " +
    v.totals.SlowConsumersClosed + " · watch copies dropped " + v.totals.WatchDropped +
    " · pending requests " + v.totals.PendingRequests;
  fill($("stuck"), (v.stuck || []).map((id) => el("li", id, "stuck")));
  fill($("slowest").tBodies[0], (v.slowest || []).map((m) => {
    const tr = el("tr"); cell(tr, m.id); cell(tr, bytes(m.queued), "num"); cell(tr, m.blockedMs + " ms", "num"); return tr;
  }));
}

function onSnapshot(v) {
  $("summary").textContent = num(v.totals.In) + " events/s in · " + num(v.totals.Out) + " out · " +
    v.totals.Connections + " connections · " + bytes(v.totals.QueuedBytes) + " queued · " + v.totals.Version;
  $("hidden").hidden = v.visible;
  for (const id of ["machines-section", "tail-section", "traffic-section"]) $(id).hidden = !v.visible;
  if (v.visible) { renderMachines(v); renderTraffic(v); }
  renderOverload(v);
  document.body.dataset.snapshots = String(Number(document.body.dataset.snapshots || 0) + 1);
}

function onTail(t) {
  const events = t.events || [];
  $("filter-shown").textContent = "showing " + events.length + " of " + t.matched + " matching in the last " +
    "quarter second" + (paused ? " (paused)" : "");
  if (paused) return;
  const body = $("tail").tBodies[0];
  for (const e of events) {
    const tr = el("tr");
    const at = new Date(e.at);
    cell(tr, at.toLocaleTimeString() + "." + String(at.getMilliseconds()).padStart(3, "0"));
    cell(tr, e.name); cell(tr, e.source); cell(tr, e.target); cell(tr, e.size, "num");
    body.insertBefore(tr, body.firstChild);
  }
  while (body.rows.length > TAIL_ROWS) body.deleteRow(body.rows.length - 1);
}

function connect() {
  if (source) source.close();
  const f = new FormData($("filter"));
  const q = new URLSearchParams();
  for (const k of ["name", "source", "target"]) { const v = String(f.get(k) || "").trim(); if (v) q.set(k, v); }
  source = new EventSource("events?" + q.toString());
  const pill = $("conn");
  source.onopen = () => { pill.textContent = "live"; pill.className = "pill live"; };
  source.onerror = () => { pill.textContent = "reconnecting…"; pill.className = "pill down"; };
  source.addEventListener("snapshot", (e) => onSnapshot(JSON.parse(e.data)));
  source.addEventListener("tail", (e) => onTail(JSON.parse(e.data)));
}

document.addEventListener("DOMContentLoaded", () => {
  $("filter").addEventListener("submit", (e) => {
    e.preventDefault();
    $("tail").tBodies[0].replaceChildren();
    connect();
  });
  $("pause").addEventListener("click", () => {
    paused = !paused;
    $("pause").textContent = paused ? "Resume" : "Pause";
  });
  connect();
});
