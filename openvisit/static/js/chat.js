// In-visit chat (issue 15 item 5): text between the people in the call, over the signalling
// socket. Messages are shown as text nodes, never as HTML; web links become links that open
// in a new tab. The server relays only between seats in the call and says "mine" on the
// copy of our own message it accepted, so what we show is what the others got.

import { config, labelOf, t } from "./i18n.js";
import { $, announce } from "./ui.js";

const LINK = /\bhttps?:\/\/[^\s<>"']+/g;

function timeOf(iso) {
  const at = new Date(iso);
  if (Number.isNaN(at.getTime())) return "";
  return new Intl.DateTimeFormat(config.lang, { hour: "numeric", minute: "2-digit" }).format(at);
}

/** `text` as nodes: plain text, with http(s) links as <a> (their text is the address). */
function withLinks(text) {
  const out = document.createDocumentFragment();
  let last = 0;
  for (const match of text.matchAll(LINK)) {
    const url = match[0].replace(/[.,;:!?)]+$/, "");
    out.append(text.slice(last, match.index));
    const a = document.createElement("a");
    a.href = url;
    a.textContent = url;
    a.target = "_blank";
    a.rel = "noopener noreferrer";
    out.append(a);
    last = match.index + url.length;
  }
  out.append(text.slice(last));
  return out;
}

export class Chat {
  constructor(room) {
    this.room = room;
    this.panel = $("[data-chat-panel]");
    this.log = $("[data-chat-log]");
    this.input = $("[data-chat-input]");
    this.error = $("[data-chat-error]");
    this.unread = 0;
    this.seen = new Set();
    if (!this.panel) return;
    room.signalling.addEventListener("message", (e) => this.onMessage(e.detail));
    room.addEventListener("action", ({ detail }) => {
      if (detail.action === "chat") this.toggle();
    });
    $("[data-chat-close]", this.panel).addEventListener("click", () => this.toggle(false));
    $("[data-chat-form]", this.panel).addEventListener("submit", (event) => {
      event.preventDefault();
      this.send();
    });
    this.panel.addEventListener("keydown", (event) => {
      if (event.key === "Escape") this.toggle(false);
    });
  }

  get open() {
    return !this.panel.hidden;
  }

  toggle(open = !this.open) {
    this.panel.hidden = !open;
    document.body.classList.toggle("chat-open", open);
    for (const button of document.querySelectorAll('[data-action="chat"]')) {
      button.setAttribute("aria-expanded", String(open));
    }
    if (open) {
      this.unread = 0;
      this.input.focus();
      this.log.scrollTop = this.log.scrollHeight;
    } else {
      document.querySelector('[data-action="chat"]')?.focus();
    }
    this.updateButton();
  }

  updateButton() {
    const label = document.querySelector("[data-chat-label]");
    if (label) label.textContent = this.unread ? t("chat.open_unread", { n: this.unread }) : t("chat.open");
    document.querySelector('[data-action="chat"]')?.classList.toggle("has-unread", this.unread > 0);
  }

  send() {
    const text = this.input.value.trim();
    if (!text) return;
    if (this.room.signalling.send({ type: "chat", text })) {
      this.input.value = "";
      this.showError("");
    }
  }

  showError(text) {
    this.error.hidden = !text;
    this.error.textContent = text;
  }

  onMessage(msg) {
    if (msg.type === "chat") this.add(msg);
    else if (msg.type === "error" && msg.rejected === "chat") {
      this.showError(msg.code === "rate_limited" ? t("message.too_many")
        : msg.code === "not_in_call" ? t("chat.not_in_call") : msg.message);
    }
  }

  add(msg) {
    if (this.seen.has(msg.id)) return;
    this.seen.add(msg.id);
    const who = msg.mine ? t("you") : labelOf(this.room.peers.get(msg.from) || { role: msg.role, n: msg.n });
    const li = document.createElement("li");
    li.className = msg.mine ? "chat-msg is-mine" : "chat-msg";
    li.dataset.from = msg.mine ? "me" : msg.from;
    const meta = document.createElement("p");
    meta.className = "chat-meta";
    const name = document.createElement("span");
    name.className = "chat-who";
    name.textContent = who;
    const when = document.createElement("time");
    when.dateTime = msg.at;
    when.textContent = timeOf(msg.at);
    meta.append(name, " ", when);
    const body = document.createElement("p");
    body.className = "chat-text";
    body.append(withLinks(String(msg.text)));
    li.append(meta, body);
    this.log.append(li);
    this.log.scrollTop = this.log.scrollHeight;
    if (!msg.mine && !this.open) {
      // The log is not on screen: the page's own live region says it, and the button counts.
      this.unread += 1;
      this.updateButton();
      announce(t("chat.from", { who, text: msg.text }));
    }
  }
}
