"""The dashboard's page, script and style, shipped as module text (no CDN, no build step).

The script reads ``api/state`` once, then follows ``events`` (server-sent events).
Numbers go into elements by id (``events-total``, ``meters-sent``, ``ch-collided``,
``gw-accepted`` ...) with ``textContent`` only, so names from the bus never become
markup. Rates per second are plotted as inline SVG polylines over the last 60 updates.
"""

from __future__ import annotations

INDEX_HTML = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>smtestbed telemetry</title>
<link rel="stylesheet" href="static/app.css">
</head>
<body>
<header>
  <h1>smtestbed</h1>
  <span id="status" class="status">connecting</span>
  <span>updates: <b id="updates">0</b></span>
  <span>events: <b id="events-total">-</b></span>
  <span>services alive: <b id="services-alive">-</b></span>
</header>
<main>
<section>
  <h2>Meters</h2>
  <dl>
    <dt>meters</dt><dd id="meters-count">-</dd>
    <dt>telegrams sent</dt><dd id="meters-sent">-</dd>
    <dt>skipped (duty cycle)</dt><dd id="meters-skipped">-</dd>
    <dt>corrupted</dt><dd id="meters-corrupted">-</dd>
  </dl>
</section>
<section>
  <h2>Radio channel</h2>
  <dl>
    <dt>offered</dt><dd id="ch-offered">-</dd>
    <dt>delivered</dt><dd id="ch-delivered">-</dd>
    <dt>collided</dt><dd id="ch-collided">-</dd>
    <dt>corrupted</dt><dd id="ch-corrupted">-</dd>
    <dt>lost to noise</dt><dd id="ch-lost">-</dd>
  </dl>
  <table><thead><tr><th>receiver</th><th>delivered</th><th>collided</th><th>corrupted</th>
  <th>lost</th></tr></thead><tbody id="receivers-body"></tbody></table>
</section>
<section>
  <h2>Gateways</h2>
  <dl>
    <dt>accepted</dt><dd id="gw-accepted">-</dd>
    <dt>rejected</dt><dd id="gw-rejected">-</dd>
  </dl>
  <table><thead><tr><th>reason</th><th>frames</th></tr></thead>
  <tbody id="reasons-body"></tbody></table>
</section>
<section>
  <h2>Certificates</h2>
  <dl>
    <dt>issued</dt><dd id="ca-issued">-</dd>
    <dt>revoked</dt><dd id="ca-revoked">-</dd>
    <dt>CRLs</dt><dd id="ca-crls">-</dd>
    <dt>refused</dt><dd id="ca-refused">-</dd>
  </dl>
  <table><thead><tr><th>CA</th><th>event</th><th>subject</th></tr></thead>
  <tbody id="certs-body"></tbody></table>
</section>
<section class="wide">
  <h2>Rates per second</h2>
  <svg id="plot" viewBox="0 0 600 160" preserveAspectRatio="none"></svg>
  <p class="legend"><span class="s0">events</span> <span class="s1">telegrams</span>
  <span class="s2">collided</span> <span class="s3">accepted</span>
  <span class="s4">rejected</span> (max <b id="plot-max">0</b>/s)</p>
</section>
<section class="wide">
  <h2>Services</h2>
  <table><thead><tr><th>name</th><th>service</th><th>state</th><th>restarts</th>
  <th>events</th></tr></thead><tbody id="services-body"></tbody></table>
</section>
</main>
<script src="static/app.js"></script>
</body>
</html>
"""

APP_CSS = """
body { font-family: system-ui, sans-serif; margin: 0; background: #f4f5f7; color: #222; }
header { display: flex; gap: 1.5em; align-items: baseline; padding: .6em 1em;
  background: #1f3a5f; color: #fff; }
header h1 { font-size: 1.2em; margin: 0; }
.status { padding: 0 .5em; border-radius: 3px; background: #a33; }
.status.live { background: #2a7a3a; }
main { display: grid; grid-template-columns: repeat(auto-fill, minmax(280px, 1fr));
  gap: 1em; padding: 1em; }
section { background: #fff; border-radius: 4px; padding: .5em 1em;
  box-shadow: 0 1px 2px rgba(0,0,0,.15); }
section.wide { grid-column: 1 / -1; }
h2 { font-size: 1em; margin: .3em 0; color: #1f3a5f; }
dl { display: grid; grid-template-columns: auto auto; margin: 0; }
dd { margin: 0; text-align: right; font-variant-numeric: tabular-nums; font-weight: bold; }
table { border-collapse: collapse; width: 100%; margin-top: .5em; font-size: .9em; }
th, td { text-align: left; padding: .1em .4em; border-bottom: 1px solid #eee; }
td.alive { color: #2a7a3a; } td.dead { color: #a33; } td.stopped { color: #a70; }
svg { width: 100%; height: 160px; background: #fafafa; }
polyline { fill: none; stroke-width: 1.5; }
.s0 { color: #1f3a5f; stroke: #1f3a5f; } .s1 { color: #2a7a3a; stroke: #2a7a3a; }
.s2 { color: #c33; stroke: #c33; } .s3 { color: #37a; stroke: #37a; }
.s4 { color: #a70; stroke: #a70; }
.legend span { font-weight: bold; }
"""

APP_JS = r"""
"use strict";
const HISTORY = 60;
const SERIES = [
  (s) => s.events.total,
  (s) => s.meters.sent,
  (s) => s.channel.collided,
  (s) => s.gateway.accepted,
  (s) => s.gateway.rejected,
];
const rates = SERIES.map(() => []);
let previous = null;
let updates = 0;

function put(id, value) {
  const el = document.getElementById(id);
  if (el) { el.textContent = String(value); }
}

function fillRows(id, rows, classes) {
  const body = document.getElementById(id);
  const fresh = document.createElement("tbody");
  fresh.id = id;
  for (const row of rows) {
    const tr = document.createElement("tr");
    row.forEach((cell, i) => {
      const td = document.createElement("td");
      td.textContent = String(cell);
      if (classes && classes[i]) { td.className = classes[i](cell); }
      tr.appendChild(td);
    });
    fresh.appendChild(tr);
  }
  body.replaceWith(fresh);
}

function track(state) {
  if (previous !== null && state.t > previous.t) {
    const dt = state.t - previous.t;
    SERIES.forEach((get, i) => {
      rates[i].push(Math.max(0, (get(state) - get(previous)) / dt));
      if (rates[i].length > HISTORY) { rates[i].shift(); }
    });
  }
  previous = state;
}

function plot() {
  const svg = document.getElementById("plot");
  const top = Math.max(1, ...rates.flat());
  const lines = rates.map((values, i) => {
    const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
    const points = values.map((v, x) => `${x * 600 / (HISTORY - 1)},${160 - v * 150 / top}`);
    line.setAttribute("points", points.join(" "));
    line.setAttribute("class", `s${i}`);
    return line;
  });
  svg.replaceChildren(...lines);
  put("plot-max", Math.round(top * 10) / 10);
}

function render(s) {
  updates += 1;
  put("updates", updates);
  put("events-total", s.events.total);
  put("services-alive", s.services.filter((m) => m.state === "alive").length);
  put("meters-count", s.meters.meters);
  put("meters-sent", s.meters.sent);
  put("meters-skipped", s.meters.skipped);
  put("meters-corrupted", s.meters.corrupted);
  for (const k of ["offered", "delivered", "collided", "corrupted"]) {
    put(`ch-${k}`, s.channel[k]);
  }
  put("ch-lost", s.channel.lost_to_noise);
  fillRows("receivers-body", Object.entries(s.channel.receivers).map(([rx, r]) =>
    [rx, r.delivered || 0, r.collided || 0, r.corrupted || 0, r.lost_to_noise || 0]));
  put("gw-accepted", s.gateway.accepted);
  put("gw-rejected", s.gateway.rejected);
  fillRows("reasons-body", Object.entries(s.gateway.by_reason));
  const c = s.certificates;
  put("ca-issued", c.issued); put("ca-revoked", c.revoked);
  put("ca-crls", c.crls); put("ca-refused", c.refused);
  fillRows("certs-body", c.recent.map((e) => [e.ca, e.what, e.subject]));
  fillRows("services-body", s.services.map((m) =>
    [m.name, m.service, m.state, m.restarts, m.events]), {2: (state) => state});
  track(s);
  plot();
}

function follow() {
  const source = new EventSource("events");
  const status = document.getElementById("status");
  source.onopen = () => { status.textContent = "live"; status.className = "status live"; };
  source.onerror = () => { status.textContent = "reconnecting"; status.className = "status"; };
  source.onmessage = (msg) => {
    const state = JSON.parse(msg.data);
    if (state.events) { render(state); }
  };
}

fetch("api/state").then((r) => r.json()).then((s) => { if (s.events) { render(s); } })
  .catch(() => {}).finally(follow);
"""
