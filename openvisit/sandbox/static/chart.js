// The chart page reloads itself when the sandbox's store changes: it polls a small
// fingerprint (GET /ehr/chart/<id>/state) and reloads only when it differs, so nothing
// flickers while nothing happens. Plain script, no CDN, no framework.
(function () {
  "use strict";
  var root = document.querySelector("[data-chart-state]");
  if (!root) { return; }
  var url = root.getAttribute("data-chart-state");
  var version = root.getAttribute("data-version");
  var every = 1000 * (parseInt(root.getAttribute("data-poll-seconds"), 10) || 5);
  var live = document.querySelector("[data-live]");

  function say(text, stale) {
    if (!live) { return; }
    live.textContent = text;
    live.classList.toggle("live-stale", Boolean(stale));
  }

  function next() { window.setTimeout(poll, every); }

  function poll() {
    if (document.hidden) { next(); return; }
    fetch(url, { cache: "no-store", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (response.status === 404) { window.location.reload(); return null; }
        return response.ok ? response.json() : Promise.reject(response.status);
      })
      .then(function (body) {
        if (body === null) { return; }
        if (body.version !== version) { window.location.reload(); return; }
        say("Live: checked " + new Date().toLocaleTimeString(), false);
        next();
      })
      .catch(function () {
        say("Not updating: the sandbox did not answer; retrying", true);
        next();
      });
  }

  next();
}());
