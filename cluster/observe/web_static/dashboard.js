// sluice dashboard: polls /api/state once a second and draws up to the last 15 minutes on
// canvases; the time axis spans the history it has (at least a minute), so a cluster that
// started three minutes ago fills the plot instead of its right edge.
// No libraries and no network beyond the supervisor that served this page.
//
// Every plot canvas carries data-points (points drawn, all series) and data-series (series with
// at least one point), so a headless browser's --dump-dom shows whether live data arrived.
"use strict";

const HISTORY_S = 15 * 60;
const POLL_MS = 1000;
const COLORS = ["#5ab0ff", "#ff9f43", "#62d48c", "#ff6b9a", "#b48cff", "#f5e663", "#4fd1c5",
                "#ff6b6b", "#a3be8c", "#d08770", "#88c0d0", "#e5a0ff"];

const state = { seq: 0, points: [], latest: null, lastOk: 0, historyS: HISTORY_S };

// --- formatting ------------------------------------------------------------------------------

function si(value, digits = 1) {
  if (value === null || value === undefined) return "–";
  const abs = Math.abs(value);
  const units = [[1e9, "G"], [1e6, "M"], [1e3, "k"]];
  for (const [scale, suffix] of units) {
    if (abs >= scale) return (value / scale).toFixed(digits) + suffix;
  }
  if (Number.isInteger(value)) return String(value);
  return abs < 10 ? String(Number(value.toFixed(2))) : value.toFixed(digits);
}

function bytes(value) {
  if (value === null || value === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = value;
  while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
  return (i === 0 ? String(Math.round(v)) : v.toFixed(1)) + " " + units[i];
}

function seconds(value) {
  if (value === null || value === undefined) return "–";
  if (value >= 86400) return (value / 86400).toFixed(1) + " d";
  if (value >= 3600) return (value / 3600).toFixed(1) + " h";
  if (value >= 60) return (value / 60).toFixed(1) + " min";
  return value.toFixed(0) + " s";
}

function plain(value) {
  return value === null || value === undefined ? "–" : String(value);
}

// --- plots -------------------------------------------------------------------------------------

// series: Map name -> [[time, value|null], ...]; opts: {format, min}
function drawPlot(id, series, opts) {
  const canvas = document.getElementById("plot-" + id);
  const legend = document.getElementById("legend-" + id);
  const dpr = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 400;
  const height = canvas.clientHeight || 170;
  if (canvas.width !== Math.round(width * dpr) || canvas.height !== Math.round(height * dpr)) {
    canvas.width = Math.round(width * dpr);
    canvas.height = Math.round(height * dpr);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, width, height);

  const end = state.points.length ? state.points[state.points.length - 1].time : Date.now() / 1000;
  const first = state.points.length ? state.points[0].time : end;
  const axis = axisOf(first, end, state.historyS);
  const start = end - axis.span;
  let max = 0;
  let total = 0;
  let drawn = 0;
  for (const values of series.values()) {
    for (const [, v] of values) if (v !== null && v > max) max = v;
  }
  const top = niceCeiling(max);
  const left = 52, right = 8, upper = 6, lower = 18;
  const plotW = width - left - right, plotH = height - upper - lower;
  const x = (t) => left + ((t - start) / (end - start)) * plotW;
  const y = (v) => upper + plotH - (v / top) * plotH;

  // grid and axes
  ctx.font = "10px system-ui, sans-serif";
  ctx.fillStyle = "#8b95a3";
  ctx.strokeStyle = "#2a313b";
  ctx.lineWidth = 1;
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (let i = 0; i <= 4; i += 1) {
    const v = (top * i) / 4;
    const yy = Math.round(y(v)) + 0.5;
    ctx.beginPath(); ctx.moveTo(left, yy); ctx.lineTo(left + plotW, yy); ctx.stroke();
    ctx.fillText(opts.format(v), left - 4, yy);
  }
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  for (let ago = Math.floor(axis.span / axis.step) * axis.step; ago >= 0; ago -= axis.step) {
    const xx = Math.round(x(end - ago)) + 0.5;
    ctx.beginPath(); ctx.moveTo(xx, upper); ctx.lineTo(xx, upper + plotH); ctx.stroke();
    ctx.fillText(tickLabel(ago), Math.min(Math.max(xx, left + 14), left + plotW - 10),
                 upper + plotH + 4);
  }

  // lines
  legend.textContent = "";
  let index = 0;
  for (const [name, values] of series) {
    const color = COLORS[index % COLORS.length];
    index += 1;
    ctx.strokeStyle = color;
    ctx.lineWidth = 1.6;
    ctx.beginPath();
    let pen = false;
    let count = 0;
    for (const [t, v] of values) {
      if (v === null || t < start) { pen = false; continue; }
      const px = x(t), py = y(v);
      if (pen) ctx.lineTo(px, py); else ctx.moveTo(px, py);
      pen = true;
      count += 1;
    }
    if (count === 1) {  // a lone point: show it as a dot
      const [t, v] = values.filter(([tt, vv]) => vv !== null && tt >= start)[0];
      ctx.fillStyle = color;
      ctx.fillRect(x(t) - 1.5, y(v) - 1.5, 3, 3);
    }
    ctx.stroke();
    total += count;
    if (count > 0) drawn += 1;
    const last = values.length ? values[values.length - 1][1] : null;
    const item = document.createElement("span");
    item.style.setProperty("--c", color);
    item.textContent = name + " " + opts.format(last);
    legend.appendChild(item);
  }
  canvas.dataset.points = String(total);
  canvas.dataset.series = String(drawn);
}

// The time axis for points from `first` to `end` (seconds): its span, at least a minute and at
// most the history kept, and where its labels go, a step of 10 s .. 5 min giving 3 to 6 of them.
// axisOf(0, 200, 900) -> {span: 200, step: 60}; axisOf(0, 30, 900) -> {span: 60, step: 10}
function axisOf(first, end, historyS) {
  const span = Math.min(historyS, Math.max(60, end - first));
  const step = [10, 15, 30, 60, 120, 300, 600].find((s) => span / s <= 6) || 600;
  return { span, step };
}

function tickLabel(ago) {
  if (ago === 0) return "now";
  return ago % 60 === 0 ? "-" + ago / 60 + " min" : "-" + ago + " s";
}

function niceCeiling(max) {
  if (!(max > 0)) return 1;
  const exp = Math.pow(10, Math.floor(Math.log10(max)));
  for (const step of [1, 2, 2.5, 5, 10]) if (step * exp >= max) return step * exp;
  return 10 * exp;
}

// name -> [[time, value]] over the history for one key of the points ("cpu", "lag", ...)
function seriesOf(key, transform = (v) => v) {
  const series = new Map();
  for (const point of state.points) {
    const values = point[key] || {};
    for (const name of Object.keys(values)) {
      if (!series.has(name)) series.set(name, []);
    }
    for (const [name, list] of series) {
      const v = values[name];
      list.push([point.time, v === undefined || v === null ? null : transform(v)]);
    }
  }
  return new Map([...series.entries()].sort(([a], [b]) => a.localeCompare(b, undefined, { numeric: true })));
}

function sumOf(key) {
  return state.points.map((p) => {
    const values = Object.values(p[key] || {}).filter((v) => v !== null);
    return [p.time, values.length ? values.reduce((a, b) => a + b, 0) : null];
  });
}

function drawPlots() {
  const byBroker = new Map();
  for (const [name, values] of seriesOf("msgs_in")) byBroker.set("broker " + name, values);
  drawPlot("msgs-in", byBroker, { format: (v) => si(v) });
  // out first, so the smoother "in" line stays visible on top of fetch bursts
  drawPlot("bytes", new Map([["out", sumOf("bytes_out")], ["in", sumOf("bytes_in")]]),
           { format: (v) => (v === null ? "–" : bytes(v)) });
  drawPlot("consume", seriesOf("consume"), { format: (v) => si(v) });
  drawPlot("lag", seriesOf("lag"), { format: (v) => si(v) });
  drawPlot("cpu", seriesOf("cpu"), { format: (v) => (v === null ? "–" : v.toFixed(0) + "%") });
  drawPlot("rss", seriesOf("rss"), { format: (v) => (v === null ? "–" : bytes(v)) });
}

// --- tables ------------------------------------------------------------------------------------

// columns: [[title, cell(row) -> text | {text, cls}, "text"?], ...]
function fillTable(id, columns, rows) {
  const table = document.getElementById("table-" + id);
  const head = document.createElement("tr");
  for (const [title, , kind] of columns) {
    const th = document.createElement("th");
    th.textContent = title;
    if (kind === "text") th.className = "text";
    head.appendChild(th);
  }
  table.tHead.replaceChildren(head);
  const body = [];
  for (const row of rows) {
    const tr = document.createElement("tr");
    for (const [, cell, kind] of columns) {
      const td = document.createElement("td");
      const value = cell(row);
      if (value !== null && typeof value === "object") {
        td.textContent = value.text;
        td.className = [value.cls || "", kind === "text" ? "text" : ""].join(" ").trim();
      } else {
        td.textContent = value;
        if (kind === "text") td.className = "text";
      }
      tr.appendChild(td);
    }
    body.push(tr);
  }
  table.tBodies[0].replaceChildren(...body);
}

// cluster/observe/lag.py's state(): a partition nobody owns is not stuck
function partitionState(row) {
  if (row.error) return { text: "error: " + row.error, cls: "bad" };
  if (row.data_loss) return { text: "DATA LOSS " + bytes(row.data_loss.lost_bytes), cls: "bad" };
  if (row.backlog && row.backlog.at_risk) {
    const b = row.backlog;
    return { text: "BACKLOG AT RISK (" + b.policy + (b.refusing ? ", refusing produce" : "") + ")", cls: "bad" };
  }
  if (row.stuck) return { text: "STUCK", cls: "bad" };
  if (!row.owner) return row.members ? { text: "unowned", cls: "warn" } : { text: "idle (no members)", cls: "" };
  return { text: "ok", cls: "good" };
}

function drawTables() {
  const latest = state.latest;
  if (!latest) return;
  fillTable("processes", [
    ["process", (p) => p.role + " " + p.id, "text"],
    ["pid", (p) => plain(p.pid)],
    ["up", (p) => (p.alive ? { text: "yes", cls: "good" } : { text: "no", cls: "bad" })],
    ["CPU", (p) => (p.cpu_percent === null || p.cpu_percent === undefined ? "–" : p.cpu_percent.toFixed(1) + "%")],
    ["RSS", (p) => bytes(p.rss_bytes)],
    ["threads", (p) => plain(p.threads)],
    ["fds", (p) => plain(p.open_files)],
    ["disk read/s", (p) => bytes(p.read_bytes_per_s)],
    ["disk write/s", (p) => bytes(p.write_bytes_per_s)],
    ["ctx sw/s", (p) => si(p.ctx_switches_per_s)],
    ["restarts", (p) => plain(p.restarts)],
  ], latest.processes);
  fillTable("groups", [
    ["group", (g) => g.group, "text"],
    ["members", (g) => String(g.members.length)],
    ["state", (g) => ({ text: g.state, cls: g.state === "settled" ? "good" : "warn" })],
    ["rebalances", (g) => String(g.rebalances)],
    ["last rebalance", (g) => (g.last_rebalance_s === null ? "–" : g.last_rebalance_s.toFixed(1) + " s")],
    ["lag msgs", (g) => si(g.partitions.reduce((a, r) => a + (r.lag_messages || 0), 0))],
    ["stuck", (g) => {
      const n = g.partitions.filter((r) => r.stuck).length;
      return n ? { text: String(n), cls: "bad" } : "0";
    }],
  ], latest.groups);
  const lagRows = [];
  for (const g of latest.groups) for (const r of g.partitions) lagRows.push({ group: g.group, members: g.members.length, ...r });
  fillTable("lag", [
    ["group", (r) => r.group, "text"],
    ["topic/partition", (r) => r.topic + "/" + r.partition, "text"],
    ["owner", (r) => r.owner || "–", "text"],
    ["committed", (r) => plain(r.committed)],
    ["log end", (r) => plain(r.log_end)],
    ["lag bytes", (r) => bytes(r.lag_bytes)],
    ["lag msgs", (r) => si(r.lag_messages)],
    ["msgs/s", (r) => si(r.consume_msgs_per_s)],
    ["retention left", (r) => {
      const left = r.retention_seconds_left;
      if (left === null || left === undefined) return "–";
      return { text: seconds(left), cls: left < 3600 ? "bad" : "warn" };
    }],
    ["state", partitionState],
  ], lagRows);
  fillTable("partitions", [
    ["broker", (p) => String(p.broker)],
    ["topic/partition", (p) => p.topic + "/" + p.partition, "text"],
    ["start", (p) => plain(p.start_offset)],
    ["end", (p) => plain(p.end_offset)],
    ["size", (p) => bytes(p.size_bytes)],
    ["segments", (p) => plain(p.segments)],
    ["msgs in/s", (p) => si(p.messages_in_per_s)],
    ["bytes in/s", (p) => bytes(p.bytes_in_per_s)],
    ["bytes out/s", (p) => bytes(p.bytes_out_per_s)],
    ["messages in", (p) => si(p.messages_in)],
    ["fetches", (p) => si(p.fetches)],
    ["flushes", (p) => plain(p.flushes)],
    ["flush time", (p) => (p.flush_seconds === undefined ? "–" : p.flush_seconds.toFixed(2) + " s")],
  ], latest.partitions);
  const audit = latest.audit;
  const auditRows = [];
  if (audit) {
    for (const r of audit.produced) auditRows.push({ topic: r.topic, who: "audited producers", acked: r.acknowledged, unacked: r.unacknowledged, consumed: null });
    for (const r of audit.consumed) auditRows.push({ topic: r.topic, who: "group " + r.group, acked: null, unacked: null, consumed: r.consumed });
  }
  document.getElementById("audit-box").hidden = auditRows.length === 0;
  fillTable("audit", [
    ["topic", (r) => r.topic, "text"],
    ["counted by", (r) => r.who, "text"],
    ["acknowledged", (r) => plain(r.acked)],
    ["sent without ack", (r) => plain(r.unacked)],
    ["consumed", (r) => plain(r.consumed)],
  ], auditRows);
  const errors = [...latest.errors];
  for (const b of latest.brokers) {
    if (b.error) errors.push("broker " + b.broker + ": " + b.error);
    for (const [name, count] of Object.entries(b.errors || {})) {
      errors.push("broker " + b.broker + " answered " + count + " request(s) with " + name);
    }
  }
  const box = document.getElementById("errors-box");
  box.hidden = errors.length === 0;
  document.getElementById("errors").replaceChildren(...errors.map((e) => {
    const li = document.createElement("li");
    li.textContent = e;
    return li;
  }));
  const up = latest.brokers.filter((b) => b.up).length;
  const msgs = latest.brokers.reduce((a, b) => a + (b.messages_in_per_s || 0), 0);
  const sampler = latest.sampler || {};
  document.getElementById("summary").textContent =
    "ZooKeeper " + latest.zookeeper + " · brokers " + up + "/" + latest.brokers.length + " up · " +
    si(msgs) + " msgs/s in · groups " + latest.groups.length + " · sample took " +
    (sampler.tick_ms === undefined ? "–" : sampler.tick_ms.toFixed(1)) + " ms · " +
    new Date(latest.time * 1000).toLocaleTimeString();
}

// --- polling -----------------------------------------------------------------------------------

function setStatus(text, kind) {
  const el = document.getElementById("status");
  el.textContent = text;
  el.dataset.state = kind;
}

async function poll() {
  try {
    const response = await fetch("/api/state?since=" + state.seq, { cache: "no-store" });
    if (!response.ok) throw new Error("HTTP " + response.status);
    const data = await response.json();
    if (data.seq < state.seq) state.points = [];  // the supervisor restarted
    state.seq = data.seq;
    state.historyS = data.history_s || HISTORY_S;
    state.latest = data.latest;
    state.points.push(...data.points);
    const end = state.points.length ? state.points[state.points.length - 1].time : 0;
    while (state.points.length && state.points[0].time < end - state.historyS) state.points.shift();
    state.lastOk = Date.now();
    setStatus("live", "live");
    drawPlots();
    drawTables();
  } catch (err) {
    setStatus("no answer: " + err.message, "stale");
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

if (typeof window !== "undefined") {
  window.addEventListener("resize", () => drawPlots());
  poll();
} else if (typeof module !== "undefined") {
  module.exports = { axisOf, tickLabel };   // node, for tests/cluster/observe/test_web_dashboard.py
}
