// qsup dashboard: polls the JSON API every 2 s. Builds the DOM with textContent only, never
// innerHTML, so every value from the database is shown as text.
"use strict";

const STATES = ["waiting", "enqueued", "picked_up", "running", "completed", "failed", "cancelled"];
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

async function getJSON(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" } });
  const body = await response.json().catch(() => ({}));
  return { status: response.status, body };
}

async function post(path) {
  const token = $("token").value;
  const response = await fetch(path, { method: "POST", headers: { Authorization: "Bearer " + token } });
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
    + (health.workers !== undefined ? " · " + health.workers + " workers" : "");
  badge.className = "badge " + (["healthy", "degraded", "unhealthy"].includes(health.status) ? health.status : "");
}

function renderStats(stats) {
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
  const body = $("queues").tBodies[0];
  clear(body);
  for (const [queue, counts] of Object.entries(stats.queues)) {
    body.appendChild(row([queue, ...STATES.map((s) => counts[s] || 0)]));
  }
  renderSpark(stats.throughput || []);
}

function renderSpark(points) {
  const perMinute = new Map();
  for (const p of points) perMinute.set(p.minute, (perMinute.get(p.minute) || 0) + p.n);
  const values = [...perMinute.values()];
  const svg = $("spark");
  clear(svg);
  if (values.length === 0) return;
  const max = Math.max(...values, 1);
  const step = values.length > 1 ? 300 / (values.length - 1) : 0;
  const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  line.setAttribute("points", values.map((v, i) => (i * step) + "," + (38 - (v / max) * 36)).join(" "));
  svg.appendChild(line);
}

function renderServers(data) {
  const body = $("servers").tBodies[0];
  clear(body);
  for (const s of data.servers) {
    body.appendChild(row([s.server_name, s.is_running ? "yes" : "no", s.active_workers,
      s.idle_workers, s.max_workers, Number(s.heartbeat_age || 0).toFixed(1),
      (s.queues || []).join(",") || "all"]));
  }
}

function taskRow(t) {
  const tr = row([t.id.slice(0, 8), t.name, t.state, t.queue, t.attempts, t.date_enqueued,
    el("td", t.error_message || "", "err")], "task");
  tr.children[2].className = "state-" + t.state;
  tr.addEventListener("click", () => { selected = t.id; refreshDetail(); });
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
  for (const item of items) {
    const li = el("li", item.id + "  " + item.name + "  [" + item.state + "]");
    li.addEventListener("click", () => { selected = item.id; refreshDetail(); });
    list.appendChild(li);
  }
}

async function refreshDetail() {
  if (!selected) return;
  const [{ status, body }, logs] = await Promise.all([
    getJSON("api/tasks/" + encodeURIComponent(selected)),
    getJSON("api/tasks/" + encodeURIComponent(selected) + "/logs"),
  ]);
  if (status !== 200) return;
  $("detail").hidden = false;
  $("d-id").textContent = body.id;
  const fields = $("d-fields");
  clear(fields);
  for (const key of ["name", "state", "queue", "priority", "attempts", "max_retries", "timeout",
    "date_enqueued", "scheduled_at", "date_started", "date_done", "parent_task", "worker_pid"]) {
    fields.appendChild(el("dt", key));
    fields.appendChild(el("dd", body[key] === null ? "" : body[key]));
  }
  fields.appendChild(el("dt", "args"));
  fields.appendChild(el("dd", JSON.stringify(body.args) + " " + JSON.stringify(body.kwargs)));
  listItems($("d-deps"), body.dependencies);
  listItems($("d-children"), [...body.children, ...body.dependents]);
  $("d-result").textContent = body.error_message
    ? body.error_message : JSON.stringify(body.result, null, 2);
  $("d-context").textContent = JSON.stringify(body.context, null, 2);
  const tbody = $("d-logs").tBodies[0];
  clear(tbody);
  for (const log of (logs.body.logs || [])) tbody.appendChild(row([log.date_created, log.type, log.message]));
}

async function action(kind) {
  if (!selected) return;
  const { status, body } = await post("api/tasks/" + encodeURIComponent(selected) + "/" + kind);
  $("d-msg").textContent = status === 200 ? kind + ": done" : kind + ": " + (body.error || status);
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
    $("updated").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (err) {
    $("updated").textContent = "refresh failed: " + err;
  }
}

function init() {
  const select = $("f-state");
  for (const s of STATES) { const o = el("option", s); o.value = s; select.appendChild(o); }
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
  refresh();
  setInterval(refresh, REFRESH_MS);
}

document.addEventListener("DOMContentLoaded", init);
