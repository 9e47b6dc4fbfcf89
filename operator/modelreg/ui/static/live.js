/* modelreg ui: live cells. The page works without this file; with it, every element carrying
   data-live="<key>" is refreshed from the JSON at <main data-live-url>, about once a second, so
   a promotion is seen moving Verifying -> Rolling -> Serving without a reload. Polling stops
   while the tab is hidden and when it closes, backs off on errors, and never overlaps itself. */
(function () {
  "use strict";
  var main = document.getElementById("main");
  var url = main && main.getAttribute("data-live-url");
  if (!url || !window.fetch) { return; }
  var status = document.getElementById("live-status");
  var PERIOD = 1000, MAX_BACKOFF = 30000, TIMEOUT = 5000;
  var delay = PERIOD, timer = null, inflight = null, stopped = false;

  function say(text) { if (status && status.textContent !== text) { status.textContent = text; } }

  function apply(cells) {
    var nodes = document.querySelectorAll("[data-live]");
    for (var i = 0; i < nodes.length; i++) {
      var node = nodes[i], cell = cells[node.getAttribute("data-live")];
      if (!cell) { continue; }
      var target = node.querySelector(".badge") || node;
      if (target.textContent !== cell.text) { target.textContent = cell.text; }
      if (target.classList.contains("badge")) { target.className = "badge state-" + cell.state; }
    }
  }

  function schedule() {
    if (stopped || document.hidden) { return; }
    clearTimeout(timer);
    timer = setTimeout(poll, delay);
  }

  function poll() {
    if (stopped || document.hidden || inflight) { return; }
    inflight = window.AbortController ? new AbortController() : null;
    var guard = setTimeout(function () { if (inflight) { inflight.abort(); } }, TIMEOUT);
    fetch(url, { headers: { "Accept": "application/json" }, cache: "no-store",
                 signal: inflight ? inflight.signal : undefined })
      .then(function (r) { if (!r.ok) { throw new Error("HTTP " + r.status); } return r.json(); })
      .then(function (body) {
        apply(body.cells || {});
        delay = PERIOD;
        say("Live: updated " + new Date(body.at).toLocaleTimeString());
      })
      .catch(function (e) {
        delay = Math.min(delay * 2, MAX_BACKOFF);
        say("Live updates paused (" + e.message + "); retrying.");
      })
      .then(function () { clearTimeout(guard); inflight = null; schedule(); });
  }

  document.addEventListener("visibilitychange", function () {
    if (document.hidden) { clearTimeout(timer); } else { delay = PERIOD; schedule(); }
  });
  window.addEventListener("pagehide", function () {
    stopped = true; clearTimeout(timer); if (inflight) { inflight.abort(); }
  });
  schedule();
}());
