"""The live dashboard served at `/` of the control address: one page, no build step, no assets to fetch.

It reads the API it is served with: devices and URLs (`/api`), tag values and trends (the `/api/events`
stream), the traffic log, the faults in force with buttons to inject and clear them, and the clock (with
a button to advance a virtual one). A token given as `/?token=...` is passed on to every call.
"""

from __future__ import annotations

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Bifrost — __SCENARIO__</title>
<style>
 body{font:14px system-ui,sans-serif;margin:1.2em;background:#fafafa;color:#222}
 h1{font-size:1.3em;margin:0 0 .4em} h2{font-size:1.05em;margin:1.2em 0 .4em}
 table{border-collapse:collapse;background:#fff} td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}
 th{background:#f0f0f0} .num{text-align:right;font-variant-numeric:tabular-nums} canvas{display:block}
 .row{display:flex;gap:2em;flex-wrap:wrap;align-items:flex-start} .bad{color:#b00} code{font-size:12px}
 button{margin:0 2px} input,select{font:inherit}
</style></head><body>
<h1>Bifrost — <span id="scenario">__SCENARIO__</span></h1>
<div id="clock">clock: <span id="clock-now">…</span> <span id="clock-mode"></span>
 <button id="advance" title="advance a virtual clock by 1 s">+1 s</button>
 <button id="reset">reset</button></div>
<div class="row">
 <div><h2>Devices</h2><table id="devices"><tr><th>device</th><th>protocol</th><th>URL</th></tr></table></div>
 <div><h2>Faults</h2><table id="faults"><tr><th>device</th><th>kind</th><th>hits</th><th></th></tr></table>
  <p><select id="fault-device"></select>
   <select id="fault-kind">
    <option>latency</option><option>stall</option><option>exception</option><option>drop</option>
    <option>close</option><option>reset</option><option>refuse</option><option>freeze</option>
    <option>bad_quality</option><option>reboot</option><option>corrupt</option><option>truncate</option>
   </select>
   <input id="fault-params" placeholder="delay=200ms code=6" size="18">
   <button id="inject">inject</button> <button id="clear-all">clear all</button></p>
  <p id="fault-error" class="bad"></p></div>
</div>
<h2>Tags</h2><table id="tags"><tr><th>tag</th><th>value</th><th>trend</th></tr></table>
<h2>Traffic</h2><table id="traffic"><tr><th>time</th><th>device</th><th>client</th><th>request</th>
 <th>answer</th></tr></table>
<script>
const token = new URLSearchParams(location.search).get("token");
const q = token ? "?token=" + encodeURIComponent(token) : "";
const headers = token ? {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
                      : {"Content-Type": "application/json"};
const trends = {}, cells = {};
async function api(path, options = {}) {
  const response = await fetch(path, {headers, ...options});
  if (!response.ok && response.status !== 204) {
    const body = await response.json().catch(() => ({}));
    throw new Error(body.error || body.detail || response.statusText);
  }
  return response.status === 204 ? null : response.json();
}
function cell(row, text, cls) {
  const td = row.insertCell(); td.textContent = text; if (cls) td.className = cls; return td;
}
function show(value) {
  return typeof value === "number" && !Number.isInteger(value) ? value.toFixed(3) : String(value);
}
function tagRow(name, value) {
  const table = document.getElementById("tags");
  const row = table.insertRow(); row.id = "tag-" + name;
  cell(row, name);
  cells[name] = cell(row, show(value), "num"); cells[name].id = "value-" + name;
  const canvas = document.createElement("canvas"); canvas.width = 240; canvas.height = 28;
  row.insertCell().appendChild(canvas);
  trends[name] = {canvas, points: []};
}
function plot(name, value) {
  const trend = trends[name]; if (!trend || typeof value !== "number" && typeof value !== "boolean") return;
  trend.points.push(Number(value)); if (trend.points.length > 120) trend.points.shift();
  const c = trend.canvas.getContext("2d"), p = trend.points, w = trend.canvas.width, h = trend.canvas.height;
  const lo = Math.min(...p), hi = Math.max(...p), span = hi - lo || 1;
  c.clearRect(0, 0, w, h); c.beginPath(); c.strokeStyle = "#2563eb";
  p.forEach((v, i) => {
    const x = i * (w - 1) / 119, y = h - 2 - (v - lo) / span * (h - 4);
    i ? c.lineTo(x, y) : c.moveTo(x, y);
  });
  c.stroke();
}
function setTags(values) {
  for (const [name, value] of Object.entries(values)) {
    if (!(name in cells)) tagRow(name, value);
    cells[name].textContent = show(value); plot(name, value);
  }
}
function addTraffic(exchange) {
  const table = document.getElementById("traffic"), row = table.insertRow(1);
  cell(row, exchange.plant_time.toFixed(2) + " s", "num"); cell(row, exchange.device); cell(row, exchange.client);
  cell(row, exchange.request); cell(row, exchange.response + (exchange.error ? " (" + exchange.error + ")" : ""),
       exchange.refused ? "bad" : "");
  while (table.rows.length > 51) table.deleteRow(table.rows.length - 1);
}
async function refreshFaults() {
  const table = document.getElementById("faults");
  const faults = await api("/api/faults");
  while (table.rows.length > 1) table.deleteRow(1);
  for (const fault of faults) {
    const row = table.insertRow(); row.className = "fault";
    cell(row, fault.device); cell(row, fault.kind); cell(row, String(fault.hits), "num hits");
    const button = document.createElement("button"); button.textContent = "clear";
    const target = fault.id ? "/api/faults/" + fault.id : "/api/faults?device=" + encodeURIComponent(fault.device);
    button.onclick = () => api(target, {method: "DELETE"}).then(refreshFaults);
    row.insertCell().appendChild(button);
  }
}
async function refreshClock() {
  const clock = await api("/api/clock");
  document.getElementById("clock-now").textContent = clock.now.toFixed(1) + " s";
  document.getElementById("clock-mode").textContent = "(" + clock.mode + ")";
  document.getElementById("advance").disabled = clock.mode !== "virtual";
}
async function start() {
  const overview = await api("/api");
  const devices = document.getElementById("devices"), select = document.getElementById("fault-device");
  for (const [name, device] of Object.entries(overview.devices)) {
    const row = devices.insertRow(); cell(row, name); cell(row, device.protocol);
    const url = cell(row, device.url); url.className = "url";
    select.add(new Option(name, name));
  }
  setTags(await api("/api/tags"));
  const events = new EventSource("/api/events" + q);
  events.addEventListener("tags", (e) => setTags(JSON.parse(e.data)));
  events.addEventListener("traffic", (e) => addTraffic(JSON.parse(e.data)));
  document.getElementById("inject").onclick = async () => {
    const body = {device: select.value, kind: document.getElementById("fault-kind").value};
    for (const pair of document.getElementById("fault-params").value.split(/\\s+/).filter(Boolean)) {
      const [key, value] = pair.split("="); body[key] = value;
    }
    try { await api("/api/faults", {method: "POST", body: JSON.stringify(body)});
          document.getElementById("fault-error").textContent = ""; }
    catch (error) { document.getElementById("fault-error").textContent = error.message; }
    refreshFaults();
  };
  document.getElementById("clear-all").onclick = () => api("/api/faults", {method: "DELETE"}).then(refreshFaults);
  document.getElementById("advance").onclick = () => api("/api/clock/advance", {method: "POST",
                                                         body: JSON.stringify({seconds: 1})}).then(refreshClock);
  document.getElementById("reset").onclick = () => api("/api/reset", {method: "POST"}).then(refreshFaults);
  refreshFaults(); refreshClock();
  setInterval(() => { refreshFaults(); refreshClock(); }, 1000);
}
start().catch((error) => { document.body.insertAdjacentHTML("beforeend", "<p class=bad>" + error.message + "</p>"); });
</script></body></html>
"""


def page(scenario: str = "plant") -> str:
    """The dashboard, titled with the scenario's name."""
    from html import escape

    return PAGE.replace("__SCENARIO__", escape(scenario))


__all__ = ["PAGE", "page"]
