// The live dashboard of /status: reads /api/status/stream (server-sent events) and draws,
// per ratings instance, sparklines of requests per second, error ratio and latency (p50,
// p99) over the kept minutes; a breaker timeline (closed / open / retest bands, with the
// OPEN, RETEST and CLOSE moments marked); the last events; the ratings' sources. Plain DOM
// and SVG, no libraries. Without JavaScript the page is the server-rendered table, which
// refreshes itself.
(function () {
  "use strict";
  var NS = "http://www.w3.org/2000/svg";
  var WINDOW_MS = 300000; // what the market keeps
  var MIN_WINDOW_MS = 60000; // the shortest span drawn, while the history is younger
  var COLOURS = { closed: "#2da44e", open: "#cf222e", retest: "#d4a72c" };
  var MARKS = { opened: "OPEN", retest: "RETEST", closed: "CLOSE" };
  var data = null; // the HistoryReport, kept up to date
  var received = 0; // performance.now() when data.now_ms was current
  var dashboard = document.getElementById("dashboard");
  if (!dashboard || !window.EventSource) return;

  function el(name, attrs, parent) {
    var node = document.createElementNS(NS, name);
    for (var key in attrs) node.setAttribute(key, attrs[key]);
    if (parent) parent.appendChild(node);
    return node;
  }
  function html(tag, text, attrs) {
    var node = document.createElement(tag);
    if (text !== undefined) node.textContent = text;
    for (var key in attrs || {}) node.setAttribute(key, attrs[key]);
    return node;
  }
  function byId(id) {
    for (var i = 0; i < data.instances.length; i++)
      if (data.instances[i].id === id) return data.instances[i];
    return null;
  }
  function clock(t) {
    return new Date(data.started_at_ms + t).toLocaleTimeString();
  }
  function now() {
    return data.now_ms + (performance.now() - received);
  }
  // The time drawn at the left edge: as far back as the oldest sample, within the kept
  // five minutes, but at least a minute back, so a young history is not a thin sliver.
  function windowStart(end) {
    var oldest = end;
    data.instances.forEach(function (i) {
      if (i.samples.length && i.samples[0].t_ms < oldest) oldest = i.samples[0].t_ms;
    });
    return Math.max(end - WINDOW_MS, Math.min(oldest, end - MIN_WINDOW_MS));
  }
  // The instance's state now: its last sample, or a later breaker event.
  function stateOf(instance) {
    var last = instance.samples[instance.samples.length - 1];
    var state = last ? last.state : "closed";
    var since = last ? last.t_ms : -1;
    data.events.forEach(function (e) {
      if (e.instance === instance.id && MARKS[e.kind] && e.t_ms >= since) {
        state = e.kind === "opened" ? "open" : e.kind;
        since = e.t_ms;
      }
    });
    return state;
  }

  function sparkline(title, series, unit) {
    var box = html("figure", undefined, { class: "spark" });
    var width = 240, height = 40, end = now(), start = windowStart(end);
    var svg = el("svg", { viewBox: "0 0 " + width + " " + height, width: width, height: height }, box);
    var max = 0;
    series.forEach(function (s) {
      s.points.forEach(function (p) { if (p[1] !== null && p[1] > max) max = p[1]; });
    });
    var latest = [];
    series.forEach(function (s) {
      var d = "";
      s.points.forEach(function (p) {
        if (p[1] === null) return;
        var x = ((p[0] - start) / (end - start)) * width;
        var y = height - 2 - (max > 0 ? (p[1] / max) * (height - 4) : 0);
        d += (d ? "L" : "M") + x.toFixed(1) + " " + y.toFixed(1);
      });
      el("path", { d: d, fill: "none", stroke: s.colour, "stroke-width": 1.5 }, svg);
      var last = s.points.length ? s.points[s.points.length - 1][1] : null;
      latest.push(s.name + " " + (last === null ? "—" : +last.toFixed(2)) + unit);
    });
    box.appendChild(html("figcaption", title + ": " + latest.join(", ")));
    return box;
  }

  function drawInstances() {
    var holder = document.getElementById("live-instances");
    holder.textContent = "";
    data.instances.forEach(function (instance) {
      var card = html("section", undefined, { class: "card", id: "live-" + instance.id });
      var state = stateOf(instance);
      var head = html("h3", "Instance " + instance.id + " ");
      head.appendChild(html("span", state, { class: "breaker " + state }));
      card.appendChild(head);
      card.appendChild(html("p", instance.address, { class: "note" }));
      var pick = function (field) {
        return instance.samples.map(function (s) { return [s.t_ms, s[field]]; });
      };
      card.appendChild(sparkline("requests/s", [{ name: "", colour: "#0969da", points: pick("requests_per_s") }], ""));
      card.appendChild(sparkline("error ratio", [{ name: "", colour: "#cf222e", points: pick("error_ratio") }], ""));
      card.appendChild(sparkline("latency", [
        { name: "p50", colour: "#0969da", points: pick("p50_ms") },
        { name: "p99", colour: "#8250df", points: pick("p99_ms") }], " ms"));
      holder.appendChild(card);
    });
  }

  function drawTimeline() {
    var holder = document.getElementById("timeline");
    holder.textContent = "";
    var lane = 26, label = 40, width = 900, end = now(), start = windowStart(end);
    var height = Math.max(1, data.instances.length) * lane + 18;
    var svg = el("svg", { viewBox: "0 0 " + width + " " + height, width: "100%", role: "img",
      "aria-label": "breaker states over the last five minutes" }, holder);
    var x = function (t) { return label + ((t - start) / (end - start)) * (width - label - 50); };
    data.instances.forEach(function (instance, row) {
      var state = stateOf(instance);
      var g = el("g", { id: "timeline-" + instance.id, class: "lane", "data-state": state }, svg);
      var y = row * lane + 4;
      var text = el("text", { x: 0, y: y + 15, class: "lane-label" }, g);
      text.textContent = instance.id;
      var samples = instance.samples;
      samples.forEach(function (s, i) {
        var next = i + 1 < samples.length ? samples[i + 1].t_ms : end;
        if (next < start) return;
        var band = el("rect", { x: x(Math.max(s.t_ms, start)), y: y, height: 18,
          width: Math.max(1, x(next) - x(Math.max(s.t_ms, start))), fill: COLOURS[s.state] || "#999",
          class: "band " + s.state }, g);
        el("title", {}, band).textContent = s.state + " at " + clock(s.t_ms);
      });
      // A breaker event newer than the last sample: draw its state up to now at once.
      var last = samples[samples.length - 1];
      if (last && state !== last.state) {
        data.events.forEach(function (e) {
          if (e.instance === instance.id && MARKS[e.kind] && e.t_ms >= last.t_ms) {
            el("rect", { x: x(e.t_ms), y: y, height: 18, width: Math.max(1, x(end) - x(e.t_ms)),
              fill: COLOURS[state], class: "band " + state }, g);
          }
        });
      }
      data.events.forEach(function (e) {
        if (e.instance !== instance.id || !MARKS[e.kind] || e.t_ms < start) return;
        var mx = x(e.t_ms);
        el("line", { x1: mx, x2: mx, y1: y - 2, y2: y + 20, class: "mark " + e.kind }, g);
        var t = el("text", { x: mx + 2, y: y + 13, class: "mark-label " + e.kind }, g);
        t.textContent = MARKS[e.kind];
        el("title", {}, t).textContent = MARKS[e.kind] + " at " + clock(e.t_ms);
      });
    });
    var axis = el("text", { x: label, y: height - 2, class: "axis" }, svg);
    axis.textContent = "−" + Math.round((end - start) / 1000) + " s";
    var nowText = el("text", { x: width - 74, y: height - 2, class: "axis" }, svg);
    nowText.textContent = "now";
  }

  function drawEvents() {
    var list = document.getElementById("events");
    list.textContent = "";
    data.events.slice(-15).reverse().forEach(function (e) {
      var item = html("li", undefined, { "data-kind": e.kind });
      item.appendChild(html("time", clock(e.t_ms)));
      item.appendChild(html("strong", " " + e.kind));
      var who = e.instance ? " instance " + e.instance : "";
      item.appendChild(document.createTextNode(who + (e.detail ? " · " + e.detail : "")));
      list.appendChild(item);
    });
    if (!data.events.length) list.appendChild(html("li", "nothing yet"));
  }

  function drawSources() {
    var r = data.ratings, total = r.live + r.cache + r.stale + r.none;
    var bar = document.getElementById("sources-bar");
    bar.textContent = "";
    ["live", "cache", "stale", "none"].forEach(function (source) {
      var part = html("span", source + " " + r[source], { class: "source " + source });
      part.style.flexGrow = total ? r[source] : 1;
      if (total && !r[source]) part.style.display = "none";
      bar.appendChild(part);
    });
  }

  // Keeps the server-rendered table's breaker cells live too.
  function updateTable() {
    data.instances.forEach(function (instance) {
      var row = document.getElementById("instance-" + instance.id);
      if (!row) return;
      var state = stateOf(instance);
      row.setAttribute("data-state", state);
      var cell = row.querySelector(".breaker");
      if (cell) { cell.textContent = state; cell.className = "breaker " + state; }
    });
  }

  function draw() {
    if (!data) return;
    drawInstances();
    drawTimeline();
    drawEvents();
    drawSources();
    updateTable();
  }

  var source = new EventSource("/api/status/stream");
  source.addEventListener("history", function (message) {
    data = JSON.parse(message.data);
    received = performance.now();
    dashboard.hidden = false;
    document.getElementById("connection").textContent = "· live";
    draw();
  });
  source.addEventListener("sample", function (message) {
    if (!data) return;
    var update = JSON.parse(message.data);
    data.now_ms = update.t_ms;
    received = performance.now();
    data.ratings = update.ratings;
    update.instances.forEach(function (fresh) {
      var instance = byId(fresh.id);
      if (!instance) {
        instance = { id: fresh.id, address: fresh.address, samples: [] };
        data.instances.push(instance);
        data.instances.sort(function (a, b) { return a.id.localeCompare(b.id, undefined, { numeric: true }); });
      }
      instance.samples.push(fresh.sample);
      while (instance.samples.length && instance.samples[0].t_ms < update.t_ms - WINDOW_MS)
        instance.samples.shift();
    });
    draw();
  });
  source.addEventListener("event", function (message) {
    if (!data) return;
    var event = JSON.parse(message.data);
    data.events.push(event);
    if (data.events.length > 50) data.events.shift();
    if (event.t_ms > data.now_ms) { data.now_ms = event.t_ms; received = performance.now(); }
    draw();
  });
  source.onerror = function () {
    document.getElementById("connection").textContent = "reconnecting…";
  };
})();
