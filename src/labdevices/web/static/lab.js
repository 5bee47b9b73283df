// Live parts of the lab page: values, states, sparklines and alarms, fed by /events (SSE).
const HISTORY_S = 300;       // sparkline span: the last five minutes
const STALE_S = 10;          // a value older than this is shown as stale
const rows = new Map();      // "device/signal" -> {row, value, quality, points: [[t, v]], dirty}
for (const row of document.querySelectorAll("tr[data-signal]")) {
  rows.set(row.dataset.signal, {
    row,
    value: row.querySelector(".value"),
    quality: row.querySelector(".quality"),
    line: row.querySelector("polyline"),
    points: [],
    dirty: false,
  });
}
// device -> state badge
const states = new Map();
for (const card of document.querySelectorAll(".card[data-device]")) {
  states.set(card.dataset.device, card.querySelector("[data-state]"));
}
const live = document.getElementById("live-status");
const banner = document.getElementById("alarm-banner");
// For measurements (benchmarks, tests): sample time -> DOM update delays, seconds.
window.labdevicesLatency = [];

function shown(value) {
  if (value === null || value === undefined) return "—";
  if (typeof value === "boolean") return value ? "on" : "off";
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : value.toFixed(2);
  return String(value);
}

function onSample(e) {
  const entry = rows.get(`${e.device}/${e.signal}`);
  if (!entry) return;
  entry.value.textContent = shown(e.value);
  entry.row.dataset.t = String(e.t);
  entry.row.className = `q-${e.quality}`;
  entry.quality.textContent = e.quality === "good" ? "" : e.quality;
  if (typeof e.value === "number") {
    entry.points.push([e.t, e.value]);
    entry.dirty = true;
  }
  window.labdevicesLatency.push(Date.now() / 1000 - e.t);
  if (window.labdevicesLatency.length > 100000) window.labdevicesLatency.splice(0, 50000);
}

function drawSparklines() {
  const now = Date.now() / 1000;
  for (const entry of rows.values()) {
    if (!entry.dirty) continue;
    entry.dirty = false;
    while (entry.points.length && entry.points[0][0] < now - HISTORY_S) entry.points.shift();
    const pts = entry.points;
    if (pts.length < 2) continue;
    // a fresh page spans what it has seen, up to the whole window
    const start = Math.max(now - HISTORY_S, pts[0][0]), span_t = Math.max(now - start, 1);
    let lo = Infinity, hi = -Infinity;
    for (const [, v] of pts) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    const span = hi - lo || 1;
    entry.line.setAttribute("points", pts.map(([t, v]) =>
      `${(100 * (t - start) / span_t).toFixed(1)},${(22 - 20 * (v - lo) / span).toFixed(1)}`
    ).join(" "));
  }
}

function markStale() {
  const now = Date.now() / 1000;
  for (const entry of rows.values()) {
    const t = parseFloat(entry.row.dataset.t);
    if (Number.isFinite(t) && now - t > STALE_S) {
      entry.row.classList.add("stale");
      entry.quality.textContent = "stale";
    }
  }
}

// The printer page's charts: the last minutes from the store (in the page), then live samples.
const chartData = document.getElementById("chart-data");
const charts = [];           // {range, series: Map("device/signal" -> {line, legend, points})}
const chartSeries = new Map();
let chartWindow = 300;
if (chartData) {
  const data = JSON.parse(chartData.textContent);
  chartWindow = data.window_s;
  data.charts.forEach((c, i) => {
    const figure = document.querySelector(`[data-chart="${i}"]`);
    const chart = { range: figure.querySelector(".range"), unit: c.unit, series: [] };
    c.series.forEach(({ signal, points }, k) => {
      const key = `${data.device}/${signal}`;
      const entry = {
        line: figure.querySelector(`polyline.series-${k}`),
        legend: figure.querySelector(`[data-legend="${key}"]`),
        points,
      };
      if (points.length) entry.legend.textContent = shown(points[points.length - 1][1]);
      chart.series.push(entry);
      chartSeries.set(key, entry);
    });
    charts.push(chart);
  });
}

function onChartSample(e) {
  const entry = chartSeries.get(`${e.device}/${e.signal}`);
  if (!entry || typeof e.value !== "number") return;
  entry.points.push([e.t, e.value]);
  entry.legend.textContent = shown(e.value);
}

function drawCharts() {
  const now = Date.now() / 1000;
  for (const chart of charts) {
    let lo = Infinity, hi = -Infinity, first = now;
    for (const s of chart.series) {
      while (s.points.length && s.points[0][0] < now - chartWindow) s.points.shift();
      for (const [, v] of s.points) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
      if (s.points.length) first = Math.min(first, s.points[0][0]);
    }
    if (lo > hi) continue;
    // a fresh lab spans what it has, up to the whole window
    const start = Math.max(now - chartWindow, first), span_t = Math.max(now - start, 1);
    const pad = (hi - lo) * 0.05 || 1;
    lo -= pad; hi += pad;
    chart.range.textContent = `${shown(lo)} – ${shown(hi)}`;
    for (const s of chart.series) {
      s.line.setAttribute("points", s.points.map(([t, v]) =>
        `${(300 * (t - start) / span_t).toFixed(1)},${(78 - 76 * (v - lo) / (hi - lo)).toFixed(1)}`
      ).join(" "));
    }
  }
}

let alarmsPending = false;
async function refreshAlarms() {
  if (alarmsPending || !banner) return;
  alarmsPending = true;
  try {
    const reply = await fetch("/fragments/alarms", { headers: { Accept: "application/json" } });
    if (!reply.ok) return;
    const body = await reply.json();
    banner.innerHTML = body.banner;
    for (const [device, state] of Object.entries(body.states || {})) {
      const badge = states.get(device);
      if (badge) { badge.textContent = state; badge.className = `state state-${state}`; }
    }
    for (const list of document.querySelectorAll("[data-alarms-for]")) {
      list.replaceChildren(...body.alarms.filter((a) => a.device === list.dataset.alarmsFor).map((a) => {
        const li = document.createElement("li");
        li.className = `sev-${a.severity}`;
        li.textContent = a.name + (a.acknowledged_by ? " (acknowledged)" : "");
        return li;
      }));
    }
  } finally {
    alarmsPending = false;
  }
}

// The printer page's job list: fetched again on job events, at most every half second.
const queue = document.getElementById("queue");
let queueTimer = null;
function refreshQueue() {
  if (!queue || queueTimer !== null) return;
  queueTimer = setTimeout(async () => {
    try {
      // never replace a signature form someone is filling in
      if (queue.contains(document.activeElement) && document.activeElement.tagName === "INPUT") return;
      const reply = await fetch(`/fragments/queue/${queue.dataset.device}`, { headers: { Accept: "application/json" } });
      if (reply.ok) queue.innerHTML = (await reply.json()).html;
    } finally {
      queueTimer = null;
    }
  }, 500);
}

function connect() {
  const source = new EventSource("/events");
  source.onopen = () => {
    live.textContent = "live";
    live.className = "live ok";
    // what changed between the page's rendering and this stream (or while it was away)
    refreshAlarms();
    refreshQueue();
  };
  source.onerror = () => { live.textContent = "reconnecting…"; live.className = "live bad"; };
  source.onmessage = (message) => {
    let alarms = false;
    let jobs = false;
    for (const e of JSON.parse(message.data)) {
      if (e.type === "sample") { onSample(e); onChartSample(e); }
      else if (e.type === "state") {
        const badge = states.get(e.device);
        if (badge) { badge.textContent = e.state; badge.className = `state state-${e.state}`; }
      } else if (e.type === "alarm") alarms = true;
      else if (e.type === "job") jobs = true;
    }
    if (alarms) refreshAlarms();
    if (jobs) refreshQueue();
  };
}

connect();
setInterval(drawSparklines, 500);
setInterval(markStale, 1000);
if (charts.length) { drawCharts(); setInterval(drawCharts, 1000); }
