// The clinician's "Message to the waiting room" (issue 15 item 4): a preset (sent as its id,
// so the patient's page shows it in the patient's language) or the clinician's own words,
// to one seat waiting in the lobby, over the signalling socket. The server confirms with
// "lobby_message_sent"; it refuses a patient's attempt, and limits how often we send.

import { labelOf, t } from "./i18n.js";
import { $ } from "./ui.js";

export class LobbyCompose {
  constructor(room) {
    this.room = room;
    this.section = $("[data-lobby-compose]");
    if (!this.section) return;
    this.to = $("[data-lobby-to]", this.section);
    this.toOne = $("[data-lobby-to-one]", this.section);
    this.presets = $("[data-lobby-presets]", this.section);
    this.own = $("[data-lobby-own]", this.section);
    this.text = $("[data-lobby-text]", this.section);
    this.sent = $("[data-lobby-sent]", this.section);
    this.waiting = [];
    this.presets.addEventListener("change", () => {
      this.own.hidden = this.preset !== "";
      if (!this.own.hidden) this.text.focus();
    });
    $("[data-lobby-form]", this.section).addEventListener("submit", (event) => {
      event.preventDefault();
      this.send();
    });
    room.signalling.addEventListener("message", (e) => this.onMessage(e.detail));
  }

  /** The chosen preset's id, or "" for the clinician's own words. */
  get preset() {
    return $("input[name=lobby-preset]:checked", this.presets)?.value ?? "";
  }

  /** The roster changed: offer the seats waiting now (keeping the one chosen). */
  update(roster) {
    if (!this.section) return;
    this.waiting = roster.filter((s) => s.state === "waiting" && !s.you);
    this.section.hidden = this.waiting.length === 0;
    const chosen = this.to.value;
    this.to.replaceChildren(...this.waiting.map((seat) => {
      const option = document.createElement("option");
      option.value = seat.id;
      option.textContent = labelOf(seat);
      return option;
    }));
    if (this.waiting.some((s) => s.id === chosen)) this.to.value = chosen;
    // One person waiting: say who, instead of a list of one.
    const one = this.waiting.length === 1;
    $("[data-lobby-to-field]", this.section).hidden = one;
    this.toOne.hidden = !one;
    this.toOne.textContent = one ? t("message.to_one", { who: labelOf(this.waiting[0]) }) : "";
  }

  send() {
    const to = this.to.value;
    if (!to) return;
    const message = { type: "lobby_message", to };
    if (this.preset) {
      message.preset = this.preset;
    } else {
      const text = this.text.value.trim();
      if (!text) {
        this.say(t("message.empty"), true);
        this.text.focus();
        return;
      }
      message.text = text;
    }
    this.room.signalling.send(message);
  }

  say(text, problem = false) {
    this.sent.textContent = text;
    this.sent.classList.toggle("is-problem", problem);
  }

  whoIs(id) {
    const seat = (this.room.last?.roster || []).find((s) => s.id === id);
    return seat ? labelOf(seat) : "";
  }

  onMessage(msg) {
    if (msg.type === "lobby_message_sent") {
      const text = msg.preset ? t(`lobby.preset.${msg.preset}`) : msg.text;
      this.say(t("message.sent", { who: this.whoIs(msg.to), text }));
      if (!msg.preset) this.text.value = "";
    } else if (msg.type === "error" && msg.rejected === "lobby_message") {
      if (msg.code === "rate_limited") this.say(t("message.too_many"), true);
      else if (msg.code === "not_waiting") this.say(t("message.not_waiting", { who: this.whoIs(this.to.value) }), true);
      else this.say(t("action.failed", { why: msg.message }), true);
    }
  }
}
