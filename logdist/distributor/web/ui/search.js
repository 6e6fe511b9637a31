"use strict";
// The Search view: /logs/search, /logs/histogram and /logs/context across the analyzers' stores.
// Uses api(), showError() and $() from app.js.
const LEVELS = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"];
const LEVEL_COLORS = { TRACE: "#6e7681", DEBUG: "#8b949e", INFO: "#3fb950", WARN: "#d29922", ERROR: "#f85149", FATAL: "#ff7b72" };
let searchCursor = null;      // the next page's cursor, null when there is none
let searchParams = null;      // the filters of the results shown
let histogramBars = [];       // [{start, end, x0, x1}] for zooming by click

function showView() {
  const search = location.hash === "#search";
  $("#live-view").hidden = search;
  $("#search-view").hidden = !search;
  $("#tab-live").classList.toggle("active", !search);
  $("#tab-search").classList.toggle("active", search);
  if (search && searchParams === null) runSearch();
}

function utcInput(iso) { return iso.replace("Z", "").slice(0, 19); }

function filters() {
  const p = new URLSearchParams();
  const q = $("#search-q").value.trim();
  if (q) p.set("q", q);
  const levels = [...document.querySelectorAll("#levels input:checked")].map((i) => i.value);
  if (levels.length) p.set("level", levels.join(","));
  for (const name of ["emitter", "service", "host"]) {
    const v = $("#search-" + name).value.trim();
    if (v) p.set(name, v);
  }
  const range = $("#search-range").value;
  if (range === "custom") {
    if ($("#search-since").value) p.set("since", $("#search-since").value + "Z");
    if ($("#search-until").value) p.set("until", $("#search-until").value + "Z");
  } else if (range !== "all") {
    p.set("since", range);
  }
  return p;
}

function partialText(partial) {
  return partial && partial.length
    ? " · partial: " + partial.map((p) => `${p.analyzer} (${p.error})`).join(", ") : "";
}

async function runSearch() {
  searchParams = filters();
  searchCursor = null;
  $("#results tbody").textContent = "";
  try {
    const [page, hist] = await Promise.all([
      api("GET", "/logs/search?" + searchParams + "&limit=100"),
      api("GET", "/logs/histogram?" + searchParams + "&buckets=60"),
    ]);
    drawHistogram(hist);
    addRows(page);
    summarize(hist, page);
  } catch (err) {
    showError(err.message);
  }
}

async function loadMore() {
  if (!searchCursor) return;
  try {
    const page = await api("GET", `/logs/search?${searchParams}&limit=100&cursor=${encodeURIComponent(searchCursor)}`);
    addRows(page);
    summarize(null, page);
  } catch (err) {
    showError(err.message);
  }
}

function summarize(hist, page) {
  const shown = $("#results tbody").querySelectorAll("tr.hit").length;
  if (hist) summarize.total = hist.total;
  $("#search-summary").textContent =
    `${summarize.total ?? "?"} stored messages in range · showing ${shown}` +
    (searchCursor ? "" : " (all)") + partialText(page.partial);
}

function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text ?? "-";
  if (cls) td.className = cls;
  return td;
}

function addRows(page) {
  const body = $("#results tbody");
  for (const item of page.items) {
    const tr = document.createElement("tr");
    tr.className = "hit lvl-" + item.level;
    tr.dataset.packet = item.packetId;
    tr.dataset.index = item.index;
    tr.append(
      cell(item.ts.replace("T", " ").replace("Z", "")), cell(item.level), cell(item.analyzer),
      cell(item.emitter), cell(item.service), cell(item.host), cell(item.message, "msg"));
    tr.addEventListener("click", () => toggleDetail(tr, item));
    body.appendChild(tr);
  }
  searchCursor = page.cursor;
  $("#load-more").hidden = !searchCursor;
}

async function toggleDetail(tr, item) {
  const next = tr.nextElementSibling;
  if (next && next.classList.contains("detail")) { next.remove(); return; }
  const detail = document.createElement("tr");
  detail.className = "detail";
  const td = document.createElement("td");
  td.colSpan = 7;
  const all = { ...item };
  const fields = document.createElement("pre");
  fields.className = "fields";
  fields.textContent = JSON.stringify(all, null, 2);
  const ctx = document.createElement("ol");
  ctx.className = "context";
  td.append(fields, ctx);
  detail.appendChild(td);
  tr.after(detail);
  try {
    const around = await api("GET", `/logs/context?packetId=${encodeURIComponent(item.packetId)}&index=${item.index}&before=10&after=10`);
    around.items.forEach((m, i) => {
      const li = document.createElement("li");
      li.className = "lvl-" + m.level + (i === around.anchor ? " anchor" : "");
      li.textContent = `${m.ts} ${m.level} ${m.emitter || "-"} ${m.message}`;
      ctx.appendChild(li);
    });
    if (around.partial.length) ctx.insertAdjacentText("beforebegin", partialText(around.partial));
  } catch (err) {
    ctx.textContent = err.message;
  }
}

function drawHistogram(hist) {
  const canvas = $("#histogram");
  const ctx = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height, pad = 4;
  ctx.clearRect(0, 0, W, H);
  histogramBars = [];
  const buckets = hist.buckets;
  const legend = $("#histogram-legend");
  legend.textContent = "";
  if (!buckets.length) return;
  const totals = buckets.map((b) => Object.values(b.counts).reduce((x, y) => x + y, 0));
  const max = Math.max(1, ...totals);
  const w = W / buckets.length;
  buckets.forEach((b, i) => {
    let y = H - pad;
    for (const level of LEVELS) {
      const n = b.counts[level] || 0;
      if (!n) continue;
      const h = (n / max) * (H - 2 * pad);
      ctx.fillStyle = LEVEL_COLORS[level];
      ctx.fillRect(i * w + 1, y - h, Math.max(1, w - 2), h);
      y -= h;
    }
    histogramBars.push({ start: b.start, end: b.end, x0: i * w, x1: (i + 1) * w });
  });
  for (const level of LEVELS) {
    const n = buckets.reduce((sum, b) => sum + (b.counts[level] || 0), 0);
    if (!n) continue;
    const span = document.createElement("span");
    span.style.color = LEVEL_COLORS[level];
    span.textContent = `${level} ${n}`;
    legend.appendChild(span);
  }
  const first = document.createElement("span");
  first.className = "muted";
  first.textContent = `${buckets[0].start} … ${buckets[buckets.length - 1].end} · click a bar to zoom`;
  legend.appendChild(first);
}

$("#histogram").addEventListener("click", (ev) => {
  const canvas = ev.currentTarget;
  const x = (ev.offsetX / canvas.clientWidth) * canvas.width;
  const bar = histogramBars.find((b) => x >= b.x0 && x < b.x1);
  if (!bar) return;
  $("#search-range").value = "custom";
  $("#custom-range").hidden = false;
  $("#search-since").value = utcInput(bar.start);
  $("#search-until").value = utcInput(bar.end);
  runSearch();
});

$("#search-range").addEventListener("change", () => {
  $("#custom-range").hidden = $("#search-range").value !== "custom";
});
$("#search-form").addEventListener("submit", (ev) => { ev.preventDefault(); runSearch(); });
$("#load-more").addEventListener("click", loadMore);
window.addEventListener("hashchange", showView);
showView();
