// Waiting-room alerts for clinicians (issue 15 item 3), on the visit page and the queue page:
// the waiting count in the tab title ("(1) …"), a soft chime made with WebAudio (no sound
// file; can be muted, remembered in this browser), and a desktop notification once the
// clinician allowed them (asked only when they click the button).

import { t } from "./i18n.js";
import { $ } from "./ui.js";

const MUTED_KEY = "openvisit.alerts.muted";

function storedMuted() {
  try { return localStorage.getItem(MUTED_KEY) === "1"; } catch { return false; }
}

export class Alerts {
  constructor({ root = document } = {}) {
    this.baseTitle = document.title;
    this.muted = storedMuted();
    this.audio = null;
    // What the alerts did, for the people supporting a clinic and for the tests.
    this.log = { chimes: 0, notifications: 0, shown: 0, lastChime: null, lastNotification: null };
    this.soundButton = $("[data-alert-sound]", root);
    this.notifyButton = $("[data-alert-notify]", root);
    this.notifyState = $("[data-alert-notify-state]", root);
    this.soundButton?.addEventListener("click", () => this.setMuted(!this.muted));
    this.notifyButton?.addEventListener("click", () => this.askNotifications());
    // Browsers start audio only after a gesture on the page: the first click or key
    // unlocks the chime for the rest of the day.
    const unlock = () => this.context()?.resume?.().catch(() => {});
    document.addEventListener("pointerdown", unlock, { once: true, capture: true });
    document.addEventListener("keydown", unlock, { once: true, capture: true });
    this.render();
    window.__openvisitAlerts = this;
  }

  context() {
    if (!this.audio) {
      const Ctx = window.AudioContext || window.webkitAudioContext;
      if (!Ctx) return null;
      this.audio = new Ctx();
    }
    return this.audio;
  }

  setMuted(muted) {
    this.muted = muted;
    try { localStorage.setItem(MUTED_KEY, muted ? "1" : "0"); } catch { /* private mode */ }
    this.render();
  }

  render() {
    if (this.soundButton) {
      this.soundButton.dataset.on = String(!this.muted);
      $("[data-alert-sound-label]", this.soundButton).textContent =
        this.muted ? t("alerts.chime_off") : t("alerts.chime_on");
    }
    const supported = "Notification" in window;
    const permission = supported ? Notification.permission : "unsupported";
    if (this.notifyButton) this.notifyButton.hidden = permission !== "default";
    if (this.notifyState) {
      this.notifyState.hidden = permission === "default";
      this.notifyState.textContent = {
        granted: t("alerts.notify_on"), denied: t("alerts.notify_blocked"),
        unsupported: t("alerts.notify_unsupported"),
      }[permission] || "";
    }
  }

  async askNotifications() {
    if (!("Notification" in window)) return;
    try { await Notification.requestPermission(); } catch { /* an old callback-only API */ }
    this.render();
  }

  /** The number of people waiting, in the tab title: "(2) Clinic queue · OpenVisit". */
  setWaiting(count) {
    document.title = count > 0 ? `(${count}) ${this.baseTitle}` : this.baseTitle;
  }

  /** Someone started waiting: chime (unless muted) and notify (if allowed). */
  arrived(who, { url = null } = {}) {
    this.chime();
    this.notify(t("alerts.waiting_title"), t("alerts.waiting_body", { who }), url);
  }

  chime() {
    if (this.muted) return;
    const ctx = this.context();
    if (!ctx) return;
    // Two soft sine notes (E5 then A5) with a gentle attack and decay: heard, not alarming.
    const start = ctx.currentTime + 0.02;
    for (const [offset, freq] of [[0, 659.25], [0.18, 880]]) {
      const osc = ctx.createOscillator();
      const gain = ctx.createGain();
      osc.type = "sine";
      osc.frequency.value = freq;
      gain.gain.setValueAtTime(0.0001, start + offset);
      gain.gain.exponentialRampToValueAtTime(0.12, start + offset + 0.03);
      gain.gain.exponentialRampToValueAtTime(0.0001, start + offset + 0.6);
      osc.connect(gain).connect(ctx.destination);
      osc.start(start + offset);
      osc.stop(start + offset + 0.65);
    }
    this.log.chimes += 1;
    this.log.lastChime = { at: Date.now(), audio: ctx.state };
  }

  notify(title, body, url) {
    if (!("Notification" in window) || Notification.permission !== "granted") return;
    try {
      const note = new Notification(title, { body, tag: "openvisit-waiting", renotify: true });
      note.addEventListener("show", () => { this.log.shown += 1; });
      this.log.lastNotification = { title, body };
      note.addEventListener("click", () => {
        window.focus();
        if (url) location.assign(url);
        note.close();
      });
      this.log.notifications += 1;
    } catch { /* some browsers only notify from a service worker */ }
  }
}
