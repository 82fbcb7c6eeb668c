// qsup dashboard: polls the JSON API every 2 s. Builds the DOM with textContent only, never
// innerHTML, so every value from the database is shown as text.
"use strict";

let STATES = []; // the server's task states in lifecycle order, from /api/stats (learnStates)
const REFRESH_MS = 2000;
let filters = {};
let cursor = null;
let selected = null;

function $(id) { return document.getElementById(id); }

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

function authHeaders() {
  // Sent with every call when a token is entered: reads may be protected (QSUP_PROTECT_READS).
  const token = $("token").value;
  return token ? { Authorization: "Bearer " + token } : {};
}

async function getJSON(path) {
  const response = await fetch(path, { headers: { Accept: "application/json", ...authHeaders() } });
  const body = await response.json().catch(() => ({}));
  if (response.status === 401 || response.status === 403) {
    $("updated").textContent = "reads need the admin token: " + (body.error || response.status);
  }
  return { status: response.status, body };
}

async function post(path) {
  const response = await fetch(path, { method: "POST", headers: authHeaders() });
  const body = await response.json().catch(() => ({}));
  return { status: response.status, body };
}

function row(cells, cls) {
  const tr = el("tr", null, cls);
  for (const cell of cells) tr.appendChild(cell instanceof Node ? cell : el("td", cell));
  return tr;
}

function renderHealth(health) {
  const badge = $("health");
  badge.textContent = health.status + (health.reason ? " (" + health.reason + ")" : "")
    + (health.workers !== undefined
      ? " · " + health.workers + (health.workers === 1 ? " worker" : " workers") : "");
  badge.className = "badge " + (["healthy", "degraded", "unhealthy"].includes(health.status) ? health.status : "");
}

function learnStates(stats) {
  if (STATES.length) return;
  STATES = Object.keys(stats.states);
  const select = $("f-state");
  for (const s of STATES) { const o = el("option", s); o.value = s; select.appendChild(o); }
}

function renderStats(stats) {
  learnStates(stats);
  const cards = $("states");
  clear(cards);
  for (const state of STATES) {
    const card = el("div", null, "card state-" + state);
    card.appendChild(el("b", stats.states[state] || 0));
    card.appendChild(el("span", state));
    cards.appendChild(card);
  }
  const stuck = el("div", null, "card");
  stuck.appendChild(el("b", stats.stuck));
  stuck.appendChild(el("span", "stuck"));
  cards.appendChild(stuck);
  const head = $("queues").tHead.rows[0];
  clear(head);
  head.appendChild(el("th", "queue"));
  for (const state of STATES) head.appendChild(el("th", state));
  head.appendChild(el("th", "flow"));
  const body = $("queues").tBodies[0];
  clear(body);
  const flow = Object.fromEntries((stats.flow || []).map((f) => [f.queue, f]));
  const names = [...new Set([...Object.keys(stats.queues), ...Object.keys(flow)])].sort();
  for (const queue of names) {
    const counts = stats.queues[queue] || {};
    body.appendChild(row([queue, ...STATES.map((s) => counts[s] || 0), describeFlow(flow[queue])]));
  }
  renderSpark(stats.throughput || []);
}

function describeFlow(f) {
  // "paused; concurrency 2/5, rate 40 of 100/minute": limits in force and their use now.
  if (!f) return "";
  const parts = [];
  if (f.concurrency) parts.push(`concurrency ${f.running}/${f.concurrency}`);
  if (f.rate) parts.push(`rate ${f.started_in_window} of ${f.rate}`);
  if (f.key_concurrency) parts.push(`per key ${f.key_concurrency}`);
  return [f.paused ? "paused" : "", parts.join(", ")].filter(Boolean).join("; ");
}

const SVG = "http://www.w3.org/2000/svg";
const SPARK_MINUTES = 30;

function renderSpark(points) {
  // One stacked bar per minute of the last 30 (completed, failed), zeros included.
  const now = Math.floor(Date.now() / 60000);
  const bins = Array.from({ length: SPARK_MINUTES }, () => ({ completed: 0, failed: 0 }));
  let total = 0;
  for (const p of points) {
    const age = now - Math.floor(Date.parse(p.minute) / 60000);
    const index = SPARK_MINUTES - 1 - Math.max(0, Math.min(SPARK_MINUTES - 1, age));
    if (p.state in bins[index]) bins[index][p.state] += p.n;
    total += p.n;
  }
  const svg = $("spark");
  clear(svg);
  const max = Math.max(1, ...bins.map((b) => b.completed + b.failed));  // the top of the plot
  const width = 300 / SPARK_MINUTES;
  bins.forEach((bin, i) => {
    let top = 40;
    for (const state of ["completed", "failed"]) {
      const height = (bin[state] / max) * 38;
      if (height <= 0) continue;
      top -= height;
      const bar = document.createElementNS(SVG, "rect");
      bar.setAttribute("x", String(i * width + 0.5));
      bar.setAttribute("y", String(top));
      bar.setAttribute("width", String(width - 1));
      bar.setAttribute("height", String(height));
      bar.setAttribute("class", "bar-" + state);
      svg.appendChild(bar);
    }
  });
  const peak = Math.max(0, ...bins.map((b) => b.completed + b.failed));
  const current = bins[SPARK_MINUTES - 1];
  $("spark-max").textContent = peak + "/min";
  $("spark-now").textContent = "this minute: " + (current.completed + current.failed)
    + (current.failed ? " (" + current.failed + " failed)" : "");
  $("spark-total").textContent = total + " in 30 min";
}

function when(value) {
  // "2026-01-02T03:04:05.678+00:00" -> "2026-01-02 03:04:05" in the browser's time zone.
  if (!value) return "";
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  const pad = (n) => String(n).padStart(2, "0");
  return date.getFullYear() + "-" + pad(date.getMonth() + 1) + "-" + pad(date.getDate()) + " "
    + pad(date.getHours()) + ":" + pad(date.getMinutes()) + ":" + pad(date.getSeconds());
}

function lastLine(text) {
  // A traceback's last line names the exception: the useful part in a one-line cell.
  const lines = String(text || "").split("\n").map((l) => l.trim()).filter(Boolean);
  return lines.length ? lines[lines.length - 1] : "";
}

function renderServers(data) {
  // Live servers first; those that stopped (in the last day) apart, dimmed, with their end.
  const live = $("servers").tBodies[0];
  const stopped = $("stopped-servers").tBodies[0];
  clear(live);
  clear(stopped);
  for (const s of data.servers) {
    const where = s.hostname + " / " + s.pid;
    if (s.is_running) {
      live.appendChild(row([s.server_name, where, s.active_workers, s.idle_workers,
        s.max_workers, Number(s.heartbeat_age || 0).toFixed(1),
        (s.queues || []).join(",") || "all", when(s.date_started)]));
    } else {
      stopped.appendChild(row([s.server_name, where, when(s.date_started),
        when(s.date_stopped) || "never marked stopped"], "stopped"));
    }
  }
  $("stopped").hidden = stopped.rows.length === 0;
}

function shortId(id) {
  // A UUIDv7 begins with its timestamp, the same for every task of a millisecond's
  // neighbourhood: its last group (12 hex digits, random) tells tasks apart.
  return String(id).split("-").pop();
}

function idCell(id) {
  const td = el("td", shortId(id), "id");
  td.title = id;
  return td;
}

function progressNode(p) {
  // A bar for the fraction (when given) and the message: what the task last reported.
  const span = el("span", null, "progress");
  if (!p) return span;
  if (p.fraction !== null && p.fraction !== undefined) {
    const bar = el("progress");
    bar.max = 1;
    bar.value = p.fraction;
    bar.title = Math.round(p.fraction * 100) + "%";
    span.appendChild(bar);
  }
  const data = p.data && Object.keys(p.data).length ? " " + JSON.stringify(p.data) : "";
  span.appendChild(el("span", (p.message || "") + data));
  return span;
}

function taskRow(t) {
  const error = el("td", lastLine(t.error_message), "err");
  if (t.error_message) error.title = t.error_message;
  const progress = el("td");
  progress.appendChild(progressNode(t.progress));
  const tr = row([idCell(t.id), t.name, t.state, t.queue, t.attempts, when(t.date_enqueued),
    progress, error], t.id === selected ? "task selected" : "task");
  tr.dataset.id = t.id;
  tr.children[2].className = "state-" + t.state;
  tr.addEventListener("click", () => openTask(t.id));
  return tr;
}

async function refreshTasks(append) {
  const params = new URLSearchParams(filters);
  if (append && cursor) params.set("cursor", cursor);
  const { status, body } = await getJSON("api/tasks?" + params.toString());
  if (status !== 200) return;
  const tbody = $("tasks").tBodies[0];
  if (!append) clear(tbody);
  for (const t of body.tasks) tbody.appendChild(taskRow(t));
  cursor = body.next_cursor;
  $("more").hidden = !cursor;
}

function listItems(list, items) {
  clear(list);
  if (items.length === 0) list.appendChild(el("li", "none", "muted"));
  for (const item of items) {
    const li = el("li", shortId(item.id) + "  " + item.name + "  [" + item.state + "]");
    li.title = item.id;
    li.addEventListener("click", () => openTask(item.id));
    list.appendChild(li);
  }
}

let workflowId = null;  // of the task in the detail panel, when it is a workflow's step

function renderWorkflow(wf) {
  // The steps of the task's workflow, indented by their place in the tree, this one marked.
  $("d-workflow").hidden = !wf;
  if (workflowId !== (wf ? wf.id : null)) $("d-wf-msg").textContent = "";
  workflowId = wf ? wf.id : null;
  if (!wf) return;
  $("d-wf-title").textContent = "Workflow " + shortId(wf.id) + " [" + wf.state + "]";
  $("d-wf-title").title = wf.id;
  const list = $("d-wf-steps");
  clear(list);
  for (const s of wf.steps) {
    const undo = s.compensates ? " (undo)" : "";
    const depth = s.path.split(".").length - 1 - (undo ? 1 : 0);
    const li = el("li", "\u00a0".repeat(2 * depth) + s.path + "  " + s.name + undo + "  [" + s.state + "]",
      s.task_id === selected ? "current" : "");
    if (s.progress) li.appendChild(progressNode(s.progress));  // each step's own
    li.title = s.task_id + (s.error_message ? "\n" + lastLine(s.error_message) : "");
    li.addEventListener("click", () => openTask(s.task_id));
    list.appendChild(li);
  }
}

function markSelected() {
  for (const tr of $("tasks").tBodies[0].rows) tr.classList.toggle("selected", tr.dataset.id === selected);
}

function openTask(id) {
  // The detail opens in a panel beside the list, where the click was, not below 50 rows.
  if (selected !== id) $("d-stack").hidden = true;  // the stack shown was another task's
  selected = id;
  markSelected();
  refreshDetail().then(() => $("d-close").focus({ preventScroll: true }));
}

function closeTask() {
  selected = null;
  $("detail").hidden = true;
  document.body.classList.remove("with-panel");
  markSelected();
}

async function refreshDetail() {
  if (!selected) return;
  const [{ status, body }, logs] = await Promise.all([
    getJSON("api/tasks/" + encodeURIComponent(selected)),
    getJSON("api/tasks/" + encodeURIComponent(selected) + "/logs"),
  ]);
  if (status !== 200 || body.id !== selected) return;  // closed, or another opened, meanwhile
  // only a workflow's step has a workflow to show: a plain task asks for nothing more (before,
  // every refresh of its panel asked, and the server logged a 404 every 2 s)
  const workflow = body.workflow_id
    ? await getJSON("api/workflows/" + encodeURIComponent(body.workflow_id)) : { status: 404 };
  if (body.id !== selected) return;
  $("detail").hidden = false;
  document.body.classList.add("with-panel");
  $("d-id").textContent = body.id;
  const fields = $("d-fields");
  clear(fields);
  for (const key of ["name", "state", "queue", "priority", "attempts", "max_retries", "timeout",
    "date_enqueued", "scheduled_at", "date_started", "date_done", "parent_task", "worker_pid",
    "cpu_seconds", "peak_memory_bytes", "memory_growth_bytes", "crashes", "crash_causes"]) {
    const value = body[key] === null || body[key] === undefined ? ""
      : key.startsWith("date_") || key === "scheduled_at" ? when(body[key])
      : key.endsWith("_bytes") ? (body[key] / 1048576).toFixed(1) + " MB"
      : key === "cpu_seconds" ? body[key].toFixed(3) + " s" : body[key];
    fields.appendChild(el("dt", key));
    fields.appendChild(el("dd", value));
  }
  const now = body.running_now;  // its CPU, RSS and run time so far, from its worker
  if (now) {
    fields.appendChild(el("dt", "running for"));
    fields.appendChild(el("dd", now.running_seconds.toFixed(1) + " s, CPU " + now.cpu_seconds.toFixed(3)
      + " s, RSS " + (now.rss_bytes / 1048576).toFixed(1) + " MB"));
  }
  const progress = $("d-progress");
  progress.hidden = !body.progress;
  clear(progress);
  if (body.progress) progress.appendChild(progressNode(body.progress));
  fields.appendChild(el("dt", "args"));
  fields.appendChild(el("dd", JSON.stringify(body.args) + " " + JSON.stringify(body.kwargs)));
  listItems($("d-deps"), body.dependencies);
  listItems($("d-children"), [...body.children, ...body.dependents]);
  renderWorkflow(workflow.status === 200 ? workflow.body : null);
  $("d-result").textContent = body.error_message
    ? body.error_message : JSON.stringify(body.result, null, 2);
  $("d-context").textContent = JSON.stringify(body.context, null, 2);
  const tbody = $("d-logs").tBodies[0];
  clear(tbody);
  for (const log of (logs.body.logs || [])) {
    tbody.appendChild(row([when(log.date_created), log.type, el("td", log.message, "log")]));
  }
}

async function action(kind) {
  if (!selected) return;
  const { status, body } = await post("api/tasks/" + encodeURIComponent(selected) + "/" + kind);
  $("d-msg").textContent = status === 200 ? kind + ": done" : kind + ": " + (body.error || status);
  refreshDetail();
}

async function showStack() {
  if (!selected) return;
  const { status, body } = await getJSON("api/tasks/" + encodeURIComponent(selected) + "/stack");
  $("d-stack").hidden = false;
  $("d-stack").textContent = status === 200 ? body.stack : "stack: " + (body.error || status);
}

async function cancelWorkflow() {
  if (!workflowId) return;
  const { status, body } = await post("api/workflows/" + encodeURIComponent(workflowId) + "/cancel");
  $("d-wf-msg").textContent = status === 200 ? "cancelled" : "cancel: " + (body.error || status);
  refreshDetail();
}

async function refresh() {
  try {
    const [health, stats, servers] = await Promise.all([
      getJSON("health/queue"), getJSON("api/stats"), getJSON("api/servers")]);
    renderHealth(health.body);
    if (stats.status === 200) renderStats(stats.body);
    if (servers.status === 200) renderServers(servers.body);
    await refreshTasks(false);
    await refreshDetail();
    if (stats.status === 200) $("updated").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (err) {
    $("updated").textContent = "refresh failed: " + err;
  }
}

function init() {
  $("token").value = sessionStorage.getItem("qsup-token") || "";
  $("token").addEventListener("change", () => sessionStorage.setItem("qsup-token", $("token").value));
  $("filters").addEventListener("submit", (event) => {
    event.preventDefault();
    filters = {};
    for (const [key, id] of [["state", "f-state"], ["queue", "f-queue"], ["name", "f-name"], ["parent", "f-parent"]]) {
      if ($(id).value) filters[key] = $(id).value;
    }
    refreshTasks(false);
  });
  $("more").addEventListener("click", () => refreshTasks(true));
  $("d-retry").addEventListener("click", () => action("retry"));
  $("d-cancel").addEventListener("click", () => action("cancel"));
  $("d-stack-button").addEventListener("click", showStack);
  $("d-wf-cancel").addEventListener("click", cancelWorkflow);
  $("d-close").addEventListener("click", closeTask);
  document.addEventListener("keydown", (event) => { if (event.key === "Escape" && selected) closeTask(); });
  refresh();
  setInterval(refresh, REFRESH_MS);
}

document.addEventListener("DOMContentLoaded", init);
