// The swarm dashboard: reads the server's event stream with fetch() (so the API key travels as an
// Authorization header; EventSource cannot send one), and redraws the page on each event.
// Plain JavaScript and SVG; every text goes in through textContent, never as HTML.
"use strict";

const keyed = document.body.dataset.keyed === "true";
const SVG = "http://www.w3.org/2000/svg";
let key = sessionStorage.getItem("swarm-dashboard-key") || "";
let view = null;

function el(tag, attrs = {}, ...children) {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  for (const c of children) node.append(c);
  return node;
}

function headers(json) {
  const h = {};
  if (key) h.Authorization = "Bearer " + key;
  if (json) h["Content-Type"] = "application/json";
  return h;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const clock = (t) => new Date(t * 1000).toLocaleTimeString([], { hour12: false });
const ago = (t) => (view && t ? Math.max(0, Math.round(view.now - t)) + " s ago" : "");

function setConnection(text) {
  document.getElementById("connection").textContent = text;
}

function askForKey(note) {
  document.getElementById("key-form").hidden = false;
  document.getElementById("key-note").textContent = note;
  setConnection("waiting for an API key");
}

async function stream() {
  for (;;) {
    try {
      const r = await fetch("/dashboard/api/events", { headers: headers(false), cache: "no-store" });
      if (r.status === 401) {
        key = "";
        sessionStorage.removeItem("swarm-dashboard-key");
        askForKey("that key was refused; enter a valid one");
        return;
      }
      if (!r.ok) throw new Error("HTTP " + r.status);
      document.getElementById("key-form").hidden = true;
      document.body.classList.toggle("can-act", keyed);
      setConnection("live");
      const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const event = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          for (const line of event.split("\n")) if (line.startsWith("data: ")) render(JSON.parse(line.slice(6)));
        }
      }
      setConnection("reconnecting…");
    } catch (e) {
      setConnection("disconnected (" + e.message + "); retrying");
      await sleep(2000);
    }
  }
}

function render(v) {
  view = v;
  renderGraph(v);
  renderAgents(v);
  renderList("timeline", v.timeline, (e) => [el("span", { class: "muted" }, clock(e.t) + " "), el("span", { class: "event", "data-kind": e.kind, "data-agent": e.agent }, e.text)]);
  renderList("queries", v.queries, (q) => {
    const path = q.trace.map((h) => h.agent + ": " + h.decision).join(" → ");
    const outcome = q.ok ? "answered by " + q.agent : "failed: " + q.error;
    return [el("span", { class: "muted" }, clock(q.t) + " "), el("span", { class: "path", "data-query": q.id }, path), " ", el("span", { class: q.ok ? "ok" : "bad" }, "(" + outcome + ", " + (q.seconds * 1000).toFixed(1) + " ms)")];
  });
}

function renderList(id, items, row) {
  const list = document.getElementById(id);
  list.replaceChildren(...items.map((item) => el("li", {}, ...row(item))));
}

function renderGraph(v) {
  const svg = document.getElementById("graph");
  const width = svg.clientWidth || 900;
  const n = v.agents.length;
  const step = n > 1 ? (width - 140) / (n - 1) : 0;
  const x = {};
  v.agents.forEach((a, i) => (x[a.name] = 70 + i * step));
  const y = 180;
  const top = Math.max(1, ...v.edges.map((e) => e.count));
  const edges = v.edges.filter((e) => e.from in x && e.to in x).map((e) => {
    const x1 = x[e.from], x2 = x[e.to];
    const lift = Math.min(125, 40 + Math.abs(x2 - x1) / 4);
    const mid = (x1 + x2) / 2;
    const d = `M ${x1} ${y - 28} Q ${mid} ${y - 28 - lift * 2} ${x2} ${y - 28}`;
    return el("svg:g", { class: "edge", "data-edge": e.from + "->" + e.to, "data-count": e.count },
      el("svg:path", { d, "stroke-width": (1 + 6 * e.count / top).toFixed(1), "marker-end": "url(#arrow)" }),
      el("svg:text", { x: mid, y: y - 28 - lift - 4 }, String(e.count)));
  });
  const nodes = v.agents.map((a) => el("svg:g", { class: "node " + a.state, "data-agent": a.name, "data-state": a.state },
    el("svg:rect", { x: x[a.name] - 55, y: y - 28, width: 110, height: 56, rx: 6 }),
    el("svg:text", { x: x[a.name], y: y - 10 }, a.name),
    el("svg:text", { x: x[a.name], y: y + 6 }, a.state + " · cost " + a.cost),
    el("svg:text", { x: x[a.name], y: y + 21 }, a.in_flight === undefined || a.in_flight === null ? "not reporting" : "in flight " + a.in_flight)));
  const arrow = el("svg:defs", {}, el("svg:marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 10, markerHeight: 10, markerUnits: "userSpaceOnUse", orient: "auto-start-reverse" },
    el("svg:path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#2563eb" })));
  svg.replaceChildren(arrow, ...edges, ...nodes);
}

function renderAgents(v) {
  const body = document.querySelector("#agents tbody");
  const num = (value, digits) => el("td", { class: "num" }, value === undefined || value === null ? "–" : digits === undefined ? String(value) : Number(value).toFixed(digits));
  body.replaceChildren(...v.agents.map((a) => {
    const actions = el("td", { class: "actions-col" });
    if (a.state === "alive" || a.state === "suspect") {
      actions.append(button("remove", a.name), " ", button("kill", a.name));
    }
    return el("tr", { "data-agent": a.name, "data-state": a.state },
      el("td", {}, a.name), el("td", { class: "state " + a.state }, a.state), el("td", {}, a.since ? ago(a.since) : "before the dashboard"), num(a.cost, 2),
      el("td", {}, a.backend || "–"), el("td", {}, a.model || "–"), num(a.in_flight), num(a.received),
      num(a.answer_rate, 2), num(a.p50_ms, 1), num(a.p95_ms, 1), actions);
  }));
}

function button(action, name) {
  const b = el("button", { type: "button", "data-action": action, "data-agent": name }, action);
  b.addEventListener("click", () => act("/dashboard/api/agents/" + encodeURIComponent(name) + "/" + action, {}, action + " " + name));
  return b;
}

async function act(url, body, what) {
  const out = document.getElementById("action-result");
  out.className = "muted";
  out.textContent = what + "…";
  try {
    const r = await fetch(url, { method: "POST", headers: headers(true), body: JSON.stringify(body) });
    const reply = await r.json();
    out.className = r.ok ? "ok" : "bad";
    out.textContent = r.ok ? what + ": done" : what + ": " + reply.error.message;
  } catch (e) {
    out.className = "bad";
    out.textContent = what + ": " + e.message;
  }
}

document.getElementById("add-button").addEventListener("click", () => {
  act("/dashboard/api/agents", { yaml: document.getElementById("add-yaml").value }, "add");
});

document.getElementById("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  key = document.getElementById("key").value.trim();
  document.getElementById("key").value = "";
  sessionStorage.setItem("swarm-dashboard-key", key);
  stream();
});

if (keyed && !key) askForKey("kept in this tab only, sent as an Authorization header");
else stream();
