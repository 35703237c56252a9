// The clinic queue page: its rows come from the server (visits/_queue_rows.html) and are
// swapped in whenever the server says a visit changed (Server-Sent Events, over the bus from
// every web process), every 30 s in case a nudge was lost, and when the tab comes back.
// Whoever starts waiting is announced: chime, tab title count, desktop notification.

import { Alerts } from "./alerts.js";
import { clock, config, t } from "./i18n.js";
import { $, $$, announce } from "./ui.js";

const body = $("[data-queue-body]");
const status = $("[data-queue-status]");
const alerts = new Alerts();
let waitingSeats = null;  // seat id → row, after the first render (no alert for the page load)
let fetching = null;
let again = false;

function waitingNow() {
  const seats = new Map();
  for (const el of $$('[data-seat-state="waiting"]', body)) seats.set(el.dataset.seat, el);
  return seats;
}

function afterRender() {
  const now = waitingNow();
  if (waitingSeats !== null) {
    for (const [id, el] of now) {
      if (waitingSeats.has(id)) continue;
      const who = $(".queue-seat-name", el)?.textContent.trim() || "";
      const row = el.closest("[data-queue-row]");
      const time = $(".queue-time", row)?.textContent.trim() || "";
      alerts.arrived(`${who} (${time})`);
      announce(t("queue.arrived", { who, time }));
    }
  }
  waitingSeats = now;
  alerts.setWaiting(now.size);
  tick();
}

// "Waiting 2:13" ticks every second without asking the server.
function tick() {
  const now = Date.now();
  for (const el of $$("[data-waiting-since]", body)) {
    const since = Date.parse(el.dataset.waitingSince);
    const text = $("[data-seat-text]", el);
    if (text && since) text.textContent = t("state.waiting", { t: clock((now - since) / 1000) });
  }
}

async function refresh() {
  if (fetching) { again = true; return fetching; }
  fetching = (async () => {
    try {
      const response = await fetch(config.rowsUrl, { headers: { Accept: "text/html" }, cache: "no-store" });
      if (!response.ok) throw new Error(String(response.status));
      const html = await response.text();
      const focused = document.activeElement?.closest?.("[data-queue-row]")?.dataset.queueRow;
      body.innerHTML = html;  // our own server's template, escaped by Jinja
      if (focused) $(`[data-queue-row="${CSS.escape(focused)}"] [data-open-visit]`, body)?.focus();
      status.textContent = t("queue.updated", { t: new Date().toLocaleTimeString(config.lang, { hour: "2-digit", minute: "2-digit" }) });
      afterRender();
    } catch {
      status.textContent = t("queue.offline");
    } finally {
      fetching = null;
      if (again) { again = false; refresh(); }
    }
  })();
  return fetching;
}

function listen() {
  const events = new EventSource(config.eventsUrl);
  events.addEventListener("update", () => refresh());
  // (Re)connected: whatever happened while the stream was down is in a fresh read.
  events.addEventListener("ready", () => refresh());
  events.addEventListener("error", () => { status.textContent = t("queue.offline"); });
  window.addEventListener("pagehide", () => events.close());
}

afterRender();
setInterval(tick, 1000);
setInterval(refresh, 30_000);
document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(); });
listen();
