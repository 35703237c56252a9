// The clinician's page: the call plus the participants panel (admit, back to lobby, remove,
// invite, end). Actions go to the JSON API with the clinician's join token as a bearer; the
// server's answer arrives as a new roster over the socket.

import { Alerts } from "./alerts.js";
import { clock, config, labelOf, t } from "./i18n.js";
import { Chat } from "./chat.js";
import { LobbyCompose } from "./lobby-compose.js";
import { Room } from "./room.js";
import { $, $$, announce } from "./ui.js";

const room = new Room();
const alerts = new Alerts();
room.chat = new Chat(room);
const compose = new LobbyCompose(room);
const rosterEl = $("[data-roster]");
const errorEl = $("[data-action-error]");
let roster = [];
let known = new Map();

async function api(path, { method = "POST", body } = {}) {
  const response = await fetch(`${config.apiBase}${path}`, {
    method,
    headers: {
      Authorization: `Bearer ${config.token}`,
      "Content-Type": "application/json",
      Accept: "application/json",
      "X-OpenVisit-Lang": config.lang,
    },
    body: body ? JSON.stringify(body) : undefined,
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data?.error?.message || response.statusText);
  return data;
}

function showError(err) {
  errorEl.hidden = !err;
  errorEl.textContent = err ? t("action.failed", { why: err.message || err }) : "";
}

async function act(path, options) {
  try {
    showError(null);
    return await api(path, options);
  } catch (err) {
    showError(err);
    return null;
  }
}

function stateText(seat, now) {
  if (seat.state === "waiting") {
    const since = Date.parse(seat.waiting_since || "") || now;
    const text = t("state.waiting", { t: clock((now - since) / 1000) });
    return seat.connected ? text : `${text} · ${t("state.disconnected")}`;
  }
  if (seat.state === "admitted") return seat.connected ? t("state.admitted") : t("state.admitted_away");
  return t(`state.${seat.state}`);
}

function button(label, kind, handler) {
  const el = document.createElement("button");
  el.type = "button";
  el.className = `btn btn-small ${kind}`;
  el.textContent = label;
  el.addEventListener("click", handler);
  return el;
}

// Set when an invite link was just shown: the roster update that follows (the new seat)
// keeps it in view instead of restoring the old scroll position.
let revealInvite = false;

function renderRoster() {
  const now = Date.now();
  const focused = document.activeElement?.dataset?.key;
  const panel = rosterEl.closest(".side-panel");
  const scrolled = panel ? panel.scrollTop : 0;  // a re-render must not jump the panel
  const items = document.createDocumentFragment();
  for (const seat of roster) {
    const li = document.createElement("li");
    li.className = `roster-item state-${seat.state}${seat.connected ? " is-connected" : ""}`;
    li.dataset.participant = seat.id;
    const who = seat.you ? `${labelOf(seat)} (${t("you")})` : labelOf(seat);
    const head = document.createElement("div");
    head.className = "roster-head";
    const name = document.createElement("span");
    name.className = "roster-name";
    name.textContent = who;
    const dot = document.createElement("span");
    dot.className = "dot";
    dot.setAttribute("aria-hidden", "true");
    const state = document.createElement("span");
    state.className = "roster-state";
    state.dataset.waitingSince = seat.state === "waiting" ? seat.waiting_since || "" : "";
    state.textContent = stateText(seat, now);
    head.append(dot, name);
    li.append(head);
    if (seat.by_patient) {  // a family member or caregiver the patient invited
      const by = document.createElement("span");
      by.className = "roster-by";
      by.textContent = t("roster.by_patient");
      li.append(by);
    }
    li.append(state);
    if (!seat.you && !["removed", "left"].includes(seat.state)) {
      const actions = document.createElement("div");
      actions.className = "roster-actions";
      if (seat.state === "waiting") {
        actions.append(button(t("action.admit"), "btn-primary", () => act(`/participants/${seat.id}/admit`)));
      }
      if (seat.state === "admitted" && seat.role !== "provider") {
        actions.append(button(t("action.lobby"), "btn-secondary", () => act(`/participants/${seat.id}/lobby`)));
      }
      if (seat.state !== "invited" || seat.role !== "provider") {
        actions.append(button(t("action.remove"), "btn-secondary btn-quiet", () => confirmRemove(seat)));
      }
      for (const b of $$("button", actions)) b.dataset.key = `${seat.id}:${b.textContent}`;
      li.append(actions);
    }
    items.append(li);
  }
  rosterEl.replaceChildren(items);
  if (panel) panel.scrollTop = revealInvite ? panel.scrollHeight : scrolled;
  revealInvite = false;
  if (focused) $(`[data-key="${CSS.escape(focused)}"]`)?.focus({ preventScroll: true });
  const waiting = roster.filter((s) => s.state === "waiting").length;
  const badge = $("[data-waiting-count]");
  badge.hidden = waiting === 0;
  badge.textContent = t("roster.count", { n: waiting });
  alerts.setWaiting(waiting);
}

function confirmRemove(seat) {
  const dialog = $("#remove-dialog");
  $("[data-remove-text]", dialog).textContent = t("confirm.remove", { who: labelOf(seat) });
  dialog.addEventListener("close", () => {
    if (dialog.returnValue === "remove") act(`/participants/${seat.id}/remove`);
  }, { once: true });
  dialog.returnValue = "";
  dialog.showModal();
}

function announceChanges(next) {
  for (const seat of next) {
    const before = known.get(seat.id);
    if (seat.you || (before && before.state === seat.state)) continue;
    const who = labelOf(seat);
    if (seat.state === "waiting" && before?.state !== "waiting") {
      announce(t("roster.arrived", { who }));
      alerts.arrived(who);
    }
    else if (seat.state === "admitted" && before) announce(t("roster.joined", { who }));
    else if (seat.state === "left" && before) announce(t("roster.left", { who }));
  }
  known = new Map(next.map((s) => [s.id, s]));
}

room.addEventListener("state", ({ detail }) => {
  roster = detail.roster || [];
  announceChanges(roster);
  renderRoster();
  compose.update(roster);
});

// "Waiting 2:13" ticks every second without a server round trip.
setInterval(() => {
  const now = Date.now();
  for (const el of $$("[data-waiting-since]", rosterEl)) {
    const seat = roster.find((s) => s.id === el.closest("[data-participant]")?.dataset.participant);
    if (seat) el.textContent = stateText(seat, now);
  }
}, 1000);

for (const inviteButton of $$("[data-invite]")) {
  inviteButton.addEventListener("click", async () => {
    const role = inviteButton.dataset.invite;
    const data = await act("/invites", { body: { role } });
    if (!data) return;
    const result = $("[data-invite-result]");
    result.hidden = false;
    const who = labelOf({ role, n: data.participant.n });
    invited = data.participant.id;
    const sent = $("[data-invite-sent]");
    if (sent) { sent.textContent = ""; sent.classList.remove("error"); }
    $("[data-invite-label]").textContent = t("invite.created", { who });
    const input = $("[data-invite-link]");
    input.value = data.url;
    input.focus({ preventScroll: true });
    input.select();
    // The link sits just above the panel's sticky "End visit" bar: bring it into view.
    const panel = result.closest(".side-panel");
    if (panel) panel.scrollTop = panel.scrollHeight;
    revealInvite = true;
  });
}

// Send the invite link just created by SMS or e-mail (the server picks by what was typed).
let invited = null;
const sendForm = $("[data-invite-send]");
sendForm?.addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = $("[data-invite-to]", sendForm);
  const status = $("[data-invite-sent]");
  const to = input.value.trim();
  status.classList.remove("error");
  if (!to || !invited) {
    status.classList.add("error");
    status.textContent = t("invite.send_empty");
    input.focus();
    return;
  }
  const submit = $("button[type=submit]", sendForm);
  submit.disabled = true;
  status.textContent = t("invite.sending");
  try {
    const data = await api(`/invites/${invited}/send`, { body: { to } });
    status.textContent = t(data.new ? "invite.sent" : "invite.sent_already", { to: data.to });
    input.value = "";
  } catch (err) {
    status.classList.add("error");
    status.textContent = t("action.failed", { why: err.message || err });
    input.focus();
  } finally {
    submit.disabled = false;
  }
});

room.addEventListener("action", async ({ detail }) => {
  if (detail.action === "copy-invite") {
    const input = $("[data-invite-link]");
    try {
      await navigator.clipboard.writeText(input.value);
      announce(t("invite.copied"));
    } catch {
      input.select();
      announce(t("invite.copy_failed"));
    }
  } else if (detail.action === "end") {
    const dialog = $("#end-dialog");
    dialog.returnValue = "";
    dialog.addEventListener("close", () => {
      if (dialog.returnValue === "end") act("/end");
    }, { once: true });
    dialog.showModal();
  }
});

room.addEventListener("socket", ({ detail }) => {
  if (room.ended) return;  // the socket closing after "End visit" is not "Connected"
  $("[data-visit-status]").textContent = detail.text || t("conn.connected");
});

room.addEventListener("ended", ({ detail }) => {
  $("[data-visit-status]").textContent = t("conn.ended");
  alerts.setWaiting(0);
  // Ended by mistake: the clinician may reopen it for config.reopenMinutes (the server
  // decides; the button only goes away when that time is surely over).
  const reopen = $("[data-reopen-form]");
  if (reopen && detail.reason === "ended" && config.reopenMinutes > 0) {
    reopen.hidden = false;
    setTimeout(() => { reopen.hidden = true; }, config.reopenMinutes * 60_000);
  }
});

async function start() {
  await room.media.start();
  room.attachPreview();
  room.join();
}

start();
