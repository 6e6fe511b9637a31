"use strict";
// The logdist dashboard: polls /status, drives the admin API, follows /ws/logs.
const TOKEN_KEY = "logdist-token";
const HISTORY = 120;          // seconds of throughput kept for the chart
const SHARE_WINDOW = 10;      // seconds behind the "actual (10 s)" column
const COLORS = ["#58a6ff", "#3fb950", "#d29922", "#f778ba", "#a371f7", "#79c0ff", "#ffa657", "#56d4dd"];

const $ = (sel) => document.querySelector(sel);
let token = localStorage.getItem(TOKEN_KEY) || "";
let history = [];             // [{t, total, per: {aid: delivered_messages}}]
let socket = null;

function showError(message) {
  const box = $("#errors");
  box.textContent = message;
  box.hidden = false;
  clearTimeout(showError.timer);
  showError.timer = setTimeout(() => { box.hidden = true; }, 8000);
}

async function api(method, path, body) {
  const headers = {};
  if (token) headers.Authorization = "Bearer " + token;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let resp;
  try {
    resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (err) {
    throw new Error("cannot reach the distributor: " + err.message);
  }
  let data = null;
  try { data = await resp.json(); } catch (err) { data = null; }
  if (resp.status === 401) {
    $("#token-form").hidden = false;
    throw new Error("unauthorized: enter the admin token (or the read token, to watch)");
  }
  if (!resp.ok) {
    const why = data && data.error ? data.error : resp.statusText;
    throw new Error(`${method} ${path}: ${resp.status} ${why}`);
  }
  return data;
}

async function act(method, path, body) {
  // True once done; an error is shown and false returned (a form keeps what was typed).
  try {
    await api(method, path, body);
    await refresh();
    return true;
  } catch (err) {
    showError(err.message);
    return false;
  }
}

function pct(x) { return (100 * x).toFixed(1) + "%"; }
function fmt(x) { return x >= 1000 ? (x / 1000).toFixed(1) + "k" : x.toFixed(x < 10 ? 1 : 0); }

function rates(now) {
  // msgs/s over the last sample, and shares over the last SHARE_WINDOW seconds.
  const out = { perSecond: {}, recent: {}, total: 0 };
  if (history.length < 2) return out;
  const last = history[history.length - 1];
  const prev = history[history.length - 2];
  const dt = Math.max(0.001, last.t - prev.t);
  let base = history[0];
  for (const h of history) { if (last.t - h.t <= SHARE_WINDOW) { base = h; break; } }
  let windowTotal = 0;
  for (const aid of Object.keys(last.per)) {
    out.perSecond[aid] = ((last.per[aid] || 0) - (prev.per[aid] || 0)) / dt;
    out.total += out.perSecond[aid];
    windowTotal += (last.per[aid] || 0) - (base.per[aid] || 0);
  }
  for (const aid of Object.keys(last.per)) {
    out.recent[aid] = windowTotal ? ((last.per[aid] || 0) - (base.per[aid] || 0)) / windowTotal : 0;
  }
  return out;
}

function button(label, onclick) {
  const b = document.createElement("button");
  b.textContent = label;
  b.type = "button";
  b.addEventListener("click", onclick);
  return b;
}

function keyedRow(tbody, id, build) {
  let row = tbody.querySelector(`tr[data-id="${CSS.escape(id)}"]`);
  if (!row) {
    row = document.createElement("tr");
    row.dataset.id = id;
    build(row);
    tbody.appendChild(row);
  }
  return row;
}

function prune(tbody, ids) {
  for (const row of [...tbody.querySelectorAll("tr")]) if (!ids.has(row.dataset.id)) row.remove();
}

function renderAnalyzers(analyzers, r) {
  const tbody = $("#analyzers tbody");
  for (const a of analyzers) {
    const row = keyedRow(tbody, a.id, (row) => {
      for (let i = 0; i < 10; i++) row.appendChild(document.createElement("td"));
      const weight = document.createElement("input");
      weight.size = 4;
      weight.className = "weight";
      weight.value = a.weight;
      row.cells[4].appendChild(weight);
      row.cells[4].appendChild(button("set", () => act("POST", `/analyzer/${a.id}/weight`, { weight: Number(weight.value) })));
      const actions = document.createElement("td");
      actions.appendChild(button("enable", () => act("POST", `/analyzer/${a.id}/enable`)));
      actions.appendChild(button("disable", () => act("POST", `/analyzer/${a.id}/disable`)));
      actions.appendChild(button("drain", () => act("POST", `/analyzer/${a.id}/drain`)));
      actions.appendChild(button("remove", () => act("DELETE", `/registry/${a.id}`)));
      row.appendChild(actions);
    });
    const c = row.cells;
    c[0].textContent = a.id;
    c[0].title = a.url;
    const passive = a.health_check === "passive" ? " · passive" : "";
    c[1].textContent = a.health + passive + (a.last_error ? " (" + a.last_error + ")" : "");
    c[1].className = a.health;
    c[2].textContent = a.state;
    c[3].textContent = formatCell(a);
    c[3].title = describeDelivery(a);
    const w = c[4].querySelector("input");
    if (document.activeElement !== w) w.value = a.weight;
    c[5].textContent = pct(a.target_share); c[5].className = "num";
    c[6].textContent = pct(r.recent[a.id] || 0); c[6].className = "num";
    c[7].textContent = pct(a.actual_share); c[7].className = "num";
    c[8].textContent = fmt(r.perSecond[a.id] || 0); c[8].className = "num";
    c[9].textContent = a.pending; c[9].className = "num";
  }
  prune(tbody, new Set(analyzers.map((a) => a.id)));
}

function formatCell(a) {
  const f = a.format === "auto" ? (a.batch ? "auto:ndjson" : "auto:json") : a.format;
  return a.compression === "gzip" ? f + " · gzip" : f;
}

function describeDelivery(a) {
  // Header values never reach the page: the distributor sends them as ***.
  const headers = Object.entries(a.headers || {}).map(([k, v]) => `${k}: ${v}`).join(", ");
  const options = Object.entries(a.options || {}).map(([k, v]) => `${k}=${v}`).join(", ");
  return [
    ...(options ? [`options ${options}`] : []),
    `health ${a.health_check}` + (a.health_url ? ` at ${a.health_url}` : ""),
    `compression ${a.compression}`,
    `headers ${headers || "none"}`,
  ].join("\n");
}

function renderCluster(c) {
  const card = $("#cluster");
  card.hidden = !c;
  if (!c) return;
  const st = c.stream_state || {};
  let line = `stream ${c.stream} · this page is served by ${c.replica}`;
  if (!c.ready) line += " · NOT READY: waiting for the NATS servers";
  if (st.error) line += ` · stream: ${st.error}`;
  else if (st.messages !== undefined) {
    line += ` · ${st.messages} msgs, ${(st.bytes / 1e6).toFixed(1)} of ${(st.max_bytes / 1e6).toFixed(0)} MB` +
      ` · unfetched ${st.consumer_pending} · in flight ${st.consumer_ack_pending}` +
      ` · redelivered ${st.redelivered}`;
  }
  $("#cluster-summary").textContent = line;
  const tbody = $("#replica-table tbody");
  for (const r of c.replicas) {
    const row = keyedRow(tbody, r.id, (row) => {
      for (let i = 0; i < 7; i++) row.appendChild(document.createElement("td"));
    });
    const cells = row.cells;
    cells[0].textContent = r.id === c.replica ? `${r.id} (this)` : r.id;
    cells[1].textContent = r.url || "";
    cells[2].textContent = r.up ? "up" : "gone";
    cells[2].className = r.up ? "up" : "down";
    cells[3].textContent = `${Math.round(r.last_seen)}s ago`;
    cells[4].textContent = r.in_flight; cells[4].className = "num";
    cells[5].textContent = r.fetched; cells[5].className = "num";
    cells[6].textContent = r.acked; cells[6].className = "num";
  }
  prune(tbody, new Set(c.replicas.map((r) => r.id)));
}

async function renderDeadLetters(store) {
  const card = $("#dead-letters");
  card.hidden = !store || (store.count === 0 && store.total === 0);
  if (card.hidden) return;
  $("#dead-summary").textContent =
    `${store.count} kept, ${store.bytes} of ${store.max_bytes} bytes` +
    (store.full ? " — FULL: ingest answers 503 until they are replayed or purged" : "") +
    (store.path ? ` · ${store.path}` : " · in memory only");
  const tbody = $("#dead-table tbody");
  if (store.count === 0) { tbody.textContent = ""; return; }
  const list = await api("GET", "/dead-letters?limit=50");
  for (const d of list.letters) {
    const row = keyedRow(tbody, d.id, (row) => {
      for (let i = 0; i < 7; i++) row.appendChild(document.createElement("td"));
    });
    const c = row.cells;
    c[0].textContent = d.id;
    c[1].textContent = d.emitter || "-";
    c[2].textContent = d.messages; c[2].className = "num";
    c[3].textContent = d.time;
    c[4].textContent = d.analyzers.join(", ");
    c[5].textContent = d.last_status; c[5].className = "dead";
    c[6].textContent = d.last_answer || ""; c[6].className = "answer";
  }
  prune(tbody, new Set(list.letters.map((d) => d.id)));
}

function renderEmitters(emitters) {
  const tbody = $("#emitters tbody");
  for (const e of emitters) {
    const row = keyedRow(tbody, e.id, (row) => {
      for (let i = 0; i < 7; i++) row.appendChild(document.createElement("td"));
      const rate = document.createElement("input");
      rate.size = 4;
      rate.className = "rate";
      row.cells[1].appendChild(rate);
      row.cells[1].appendChild(button("set", () => act("POST", `/emitter/${e.id}/rate`, { rps: Number(rate.value) })));
      const actions = document.createElement("td");
      actions.appendChild(button("pause", () => act("POST", `/emitter/${e.id}/pause`)));
      actions.appendChild(button("resume", () => act("POST", `/emitter/${e.id}/resume`)));
      row.appendChild(actions);
    });
    const m = e.metrics || {};
    const c = row.cells;
    c[0].textContent = e.id;
    const rate = c[1].querySelector("input");
    if (document.activeElement !== rate) rate.value = m.rps ?? "";
    c[2].textContent = m.buffer_len ?? "?"; c[2].className = "num";
    c[3].textContent = e.received_packets ?? "?"; c[3].className = "num";
    const state = e.state || (m.paused ? "paused" : "active");
    c[4].textContent = state; c[4].className = "state-" + state;
    c[5].textContent = `${((e.share || 0) * 100).toFixed(1)}%`; c[5].className = "num";
    c[6].textContent = e.throttled ?? 0; c[6].className = e.throttled ? "num dead" : "num";
  }
  prune(tbody, new Set(emitters.map((e) => e.id)));
  // Rows in the page's order (most refused first, say), moved only when it changed.
  const order = emitters.map((e) => e.id);
  if ([...tbody.rows].some((row, i) => row.dataset.id !== order[i])) {
    for (const id of order) tbody.appendChild(tbody.querySelector(`tr[data-id="${CSS.escape(id)}"]`));
  }
}

// The emitter table shows one page of GET /emitters (a fleet may hold tens of thousands):
// found by id with the search box, filtered by state, paged with the cursors it hands out.
const EMITTER_PAGE = 25;
const emitterView = { q: "", state: "", sort: "id", cursors: [null], page: 0 };

async function loadEmitters() {
  const params = new URLSearchParams({ limit: String(EMITTER_PAGE) });
  if (emitterView.q) params.set("q", emitterView.q);
  if (emitterView.state) params.set("state", emitterView.state);
  if (emitterView.sort !== "id") params.set("sort", emitterView.sort);
  const cursor = emitterView.cursors[emitterView.page];
  if (cursor) params.set("cursor", cursor);
  const page = await api("GET", "/emitters?" + params);
  emitterView.cursors[emitterView.page + 1] = page.next;
  renderEmitters(page.emitters);
  const first = emitterView.page * EMITTER_PAGE;
  $("#emitter-page").textContent = page.emitters.length
    ? `${first + 1}–${first + page.emitters.length} of ${page.total} registered`
    : `none found of ${page.total} registered`;
  $("#emitter-prev").disabled = emitterView.page === 0;
  $("#emitter-next").disabled = !page.next;
}

function renderEmitterSummary(s) {
  if (!s) return;
  $("#emitter-summary").textContent =
    `${s.total} · ${s.active} active · ${s.paused} paused · ${s.gone} gone` +
    (s.forgotten ? ` · ${s.forgotten} forgotten` : "") + ` · ${fmt(s.rps)} pkt/s set`;
}

function emittersFrom(page) {
  emitterView.page = page;
  loadEmitters().catch((err) => showError(err.message));
}

$("#emitter-q").addEventListener("input", (ev) => {
  emitterView.q = ev.target.value.trim();
  emitterView.cursors = [null];
  emittersFrom(0);
});
$("#emitter-state").addEventListener("change", (ev) => {
  emitterView.state = ev.target.value;
  emitterView.cursors = [null];
  emittersFrom(0);
});
$("#emitter-sort").addEventListener("change", (ev) => {
  emitterView.sort = ev.target.value;
  emitterView.cursors = [null];
  emittersFrom(0);
});
$("#emitter-prev").addEventListener("click", () => emittersFrom(Math.max(0, emitterView.page - 1)));
$("#emitter-next").addEventListener("click", () => {
  if (emitterView.cursors[emitterView.page + 1]) emittersFrom(emitterView.page + 1);
});

function drawChart() {
  const canvas = $("#chart");
  const ctx = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height, pad = 30;
  ctx.clearRect(0, 0, W, H);
  if (history.length < 2) return;
  const ids = Object.keys(history[history.length - 1].per);
  const series = { total: [] };
  for (const id of ids) series[id] = [];
  for (let i = 1; i < history.length; i++) {
    const dt = Math.max(0.001, history[i].t - history[i - 1].t);
    let total = 0;
    for (const id of ids) {
      const v = ((history[i].per[id] || 0) - (history[i - 1].per[id] || 0)) / dt;
      series[id].push(v);
      total += v;
    }
    series.total.push(total);
  }
  const max = Math.max(1, ...series.total);
  ctx.strokeStyle = "#26303b";
  ctx.fillStyle = "#7d8896";
  ctx.font = "11px sans-serif";
  for (let k = 0; k <= 4; k++) {
    const y = H - pad / 2 - (k / 4) * (H - pad);
    ctx.beginPath(); ctx.moveTo(pad, y); ctx.lineTo(W, y); ctx.stroke();
    ctx.fillText(fmt((k / 4) * max), 2, y + 4);
  }
  const names = ["total", ...ids];
  const legend = $("#legend");
  legend.textContent = "";
  names.forEach((name, idx) => {
    const color = name === "total" ? "#d6dde6" : COLORS[(idx - 1) % COLORS.length];
    const data = series[name];
    ctx.strokeStyle = color;
    ctx.lineWidth = name === "total" ? 2 : 1.5;
    ctx.beginPath();
    data.forEach((v, i) => {
      const x = pad + (i / Math.max(1, HISTORY - 1)) * (W - pad);
      const y = H - pad / 2 - (v / max) * (H - pad);
      if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    });
    ctx.stroke();
    const span = document.createElement("span");
    span.style.color = color;
    span.textContent = `${name} ${fmt(data[data.length - 1] || 0)}/s`;
    legend.appendChild(span);
  });
}

// What the token may do (GET /access): "admin", "read" (read-only controls) or "open".
let role = null;

async function refresh() {
  if (role === null) {
    role = (await api("GET", "/access")).role;
    document.body.classList.toggle("read-only", role === "read");
  }
  const status = await api("GET", "/status");
  const per = {};
  for (const a of status.analyzers) per[a.id] = a.delivered_messages;
  history.push({ t: status.time, per });
  if (history.length > HISTORY + 1) history.shift();
  const r = rates();
  const q = status.queue, c = status.counters;
  $("#summary").innerHTML =
    `queue <b>${q.depth}</b>/${q.capacity} · unacked <b>${q.unacked}</b> · ` +
    `delivered <b>${c.delivered_messages}</b> msgs · <b>${fmt(r.total)}</b> msg/s · ` +
    `retries <b>${c.retries}</b> · rejected <b>${Object.values(c.rejected).reduce((x, y) => x + y, 0)}</b>` +
    (status.dead_letters && status.dead_letters.count
      ? ` · <span class="dead">dead letters <b>${status.dead_letters.count}</b></span>` : "");
  renderAnalyzers(status.analyzers, r);
  const as = status.analyzer_summary;
  $("#analyzer-summary").textContent = as && as.shown !== "all"
    ? `${as.total} · ${as.health.up} up · ${as.health.down} down · ${as.health.unknown} unknown` +
      ` · shown: ${as.shown}` : "";
  renderCluster(status.cluster);
  renderEmitterSummary(status.emitter_summary);
  await loadEmitters();
  await renderDeadLetters(status.dead_letters);
  drawChart();
}

function followLogs() {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const query = "n=50" + (token ? "&token=" + encodeURIComponent(token) : "");
  socket = new WebSocket(`${proto}//${location.host}/ws/logs?${query}`);
  socket.binaryType = "arraybuffer";
  const list = $("#logs");
  socket.onmessage = (ev) => {
    const text = typeof ev.data === "string" ? ev.data : new TextDecoder().decode(ev.data);
    const m = JSON.parse(text);
    const li = document.createElement("li");
    li.className = "lvl-" + (m.level || "");
    li.textContent = `${m.ts || ""} ${m.analyzer} ← ${m.emitter || "-"} ${m.level || ""} ${m.message || JSON.stringify(m)}`;
    const atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 4;
    list.appendChild(li);
    while (list.children.length > 200) list.firstChild.remove();
    if (atBottom) list.scrollTop = list.scrollHeight;
  };
  socket.onclose = () => { setTimeout(followLogs, 2000); };
}

$("#add-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const f = new FormData(ev.target);
  const headers = {};
  for (const line of String(f.get("headers") || "").split("\n")) {
    if (!line.trim()) continue;
    const at = line.indexOf(":");
    if (at < 0) { showError(`a header is 'Name: value', got '${line}' (no colon)`); return; }
    headers[line.slice(0, at).trim()] = line.slice(at + 1).trim();
  }
  const body = {
    id: f.get("id"), url: f.get("url"), weight: Number(f.get("weight") || 1),
    format: f.get("format"), compression: f.get("compression"), headers,
  };
  for (const pair of String(f.get("options") || "").split(";")) {
    if (!pair.trim()) continue;
    const at = pair.indexOf("=");
    if (at < 0) { showError(`an option is KEY=VALUE, got '${pair.trim()}'`); return; }
    body[pair.slice(0, at).trim()] = pair.slice(at + 1).trim();
  }
  if (f.get("health")) body.health = f.get("health");
  if (f.get("health_url")) body.health_url = f.get("health_url");
  act("POST", "/registry/add", body).then((ok) => { if (ok) ev.target.reset(); });
});

$("#dead-replay").addEventListener("click", () => act("POST", "/dead-letters/replay", {}));
$("#dead-purge").addEventListener("click", () => {
  if (confirm("Delete every dead letter for good?")) act("POST", "/dead-letters/purge", {});
});

$("#token-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  token = $("#token").value.trim();
  localStorage.setItem(TOKEN_KEY, token);
  $("#token-form").hidden = true;
  $("#errors").hidden = true;  // the refusal that asked for it is answered
  role = null;  // a new token: ask again what it may do
  if (socket) socket.close();
  tick();
});

async function tick() {
  try {
    await refresh();
  } catch (err) {
    showError(err.message);
  }
}

tick();
setInterval(tick, 1000);
followLogs();
