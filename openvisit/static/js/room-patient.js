// The patient, interpreter and guest page: check camera → Join → lobby → call.

import { clock, config, labelOf, t } from "./i18n.js";
import { Chat } from "./chat.js";
import { Room } from "./room.js";
import { $, announce, runMeter, setToggle, showStep } from "./ui.js";

const room = new Room();
room.chat = new Chat(room);
const status = $("[data-device-status]");
let stopMeter = () => {};
let waitTimer = null;

room.media.addEventListener("error", ({ detail }) => {
  status.textContent = detail.kind === "blocked" ? t("devices.camera_blocked") : t("devices.none");
  status.classList.add("is-problem");
});

async function start() {
  showStep("prejoin");
  status.textContent = t("devices.starting");
  const ok = await room.media.start();
  room.devices = ok ? "ready" : "failed";  // the page's device check, told in the hello
  room.attachPreview();
  if (ok) {
    status.textContent = t("devices.ready");
    stopMeter = runMeter(room.media);
  }
}

// The clinician's page has its roster's own announcements; this page has only the tiles.
room.addEventListener("peer-left", ({ detail }) => {
  announce(t("peer.left", { who: labelOf(detail.peer) }));
});

$('[data-action="join"]').addEventListener("click", (event) => {
  const button = event.currentTarget;
  button.disabled = true;
  button.textContent = t("conn.connecting");
  room.join();
});

room.addEventListener("lobby", ({ detail }) => {
  showStep("lobby");
  // The caregiver panel (pre-join page and lobby alike) moves along, with what it shows.
  const panel = $("[data-caregiver]");
  const home = $('[data-caregiver-home="lobby"]');
  if (panel && home && panel.parentElement !== home) home.append(panel);
  room.attachPreview();
  const notice = $("[data-lobby-notice]");
  notice.hidden = !detail.sentBack;
  notice.textContent = detail.sentBack ? t("call.sent_back") : "";
  const since = Date.parse(room.last?.you?.waiting_since || "") || Date.now();
  clearInterval(waitTimer);
  const waited = $("[data-waited]");
  const tick = () => { waited.textContent = t("lobby.waiting_for", { t: clock((Date.now() - since) / 1000) }); };
  tick();
  waitTimer = setInterval(tick, 1000);
});

room.addEventListener("state", ({ detail }) => {
  if (detail.you.state === "admitted") {
    clearInterval(waitTimer);
    stopMeter();
    // Once in, "running late" is old news: a later wait in the lobby starts without it.
    $("[data-lobby-message]")?.replaceChildren();
    $("[data-lobby-message]")?.classList.remove("has-message");
  }
});

room.addEventListener("socket", ({ detail }) => {
  const notice = $("[data-lobby-notice]");
  if (room.youState === "waiting" && detail.text) {
    notice.hidden = false;
    notice.textContent = detail.text;
  } else if (room.youState === "waiting" && detail.state === "open") {
    notice.hidden = true;
  }
});

// A message from the clinic while waiting: a preset in this page's language, or the words
// the clinician typed, shown as text. The region is polite: it waits for the screen reader.
function showLobbyMessage(msg) {
  const box = $("[data-lobby-message]");
  const text = msg.preset ? t(`lobby.preset.${msg.preset}`) : String(msg.text || "");
  if (!box || !text) return;
  const label = document.createElement("p");
  label.className = "lobby-message-label";
  label.textContent = t("lobby.message_from");
  const body = document.createElement("p");
  body.className = "lobby-message-text";
  body.dataset.preset = msg.preset || "";
  body.textContent = text;
  box.replaceChildren(label, body);
  box.classList.add("has-message");
}

room.signalling.addEventListener("message", ({ detail }) => {
  if (detail.type === "lobby_message") showLobbyMessage(detail);
});

room.addEventListener("ended", () => {
  clearInterval(waitTimer);
  stopMeter();
});

setToggle("mic", false, t("call.mic_off"), t("call.mic_on"));
setToggle("camera", false, t("call.cam_off"), t("call.cam_on"));
start().catch(() => announce(t("devices.none")));

// A family member or caregiver: their own guest link, waiting for the clinician like any guest.
const caregiver = $("[data-caregiver]");
if (caregiver) {
  const caregiverStatus = $("[data-caregiver-status]", caregiver);
  let caregiverId = null;

  async function patientApi(path, body) {
    const response = await fetch(`${config.apiBase}${path}`, {
      method: "POST",
      headers: {
        Authorization: `Bearer ${config.token}`, "Content-Type": "application/json",
        Accept: "application/json", "X-OpenVisit-Lang": config.lang,
      },
      body: JSON.stringify(body || {}),
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(data?.error?.message || response.statusText);
    return data;
  }

  function say(text, problem = false) {
    caregiverStatus.textContent = text;
    caregiverStatus.classList.toggle("error", problem);
  }

  $("[data-caregiver-make]", caregiver).addEventListener("click", async (event) => {
    const button = event.currentTarget;
    button.disabled = true;
    try {
      const data = await patientApi("/caregivers");
      caregiverId = data.participant.id;
      const input = $("[data-caregiver-link]", caregiver);
      input.value = data.url;
      $("[data-caregiver-result]", caregiver).hidden = false;
      $("[data-caregiver-share]", caregiver).hidden = !navigator.share;
      say(t("caregiver.created"));
      input.focus();
      input.select();
    } catch (err) {
      say(t("action.failed", { why: err.message || err }), true);
    } finally {
      button.disabled = false;
    }
  });

  $("[data-caregiver-copy]", caregiver).addEventListener("click", async () => {
    const input = $("[data-caregiver-link]", caregiver);
    try {
      await navigator.clipboard.writeText(input.value);
      say(t("invite.copied"));
    } catch {
      input.select();
      say(t("invite.copy_failed"));
    }
  });

  $("[data-caregiver-share]", caregiver).addEventListener("click", async () => {
    try {
      await navigator.share({ title: t("caregiver.share_title"), url: $("[data-caregiver-link]", caregiver).value });
    } catch { /* the person closed the share sheet */ }
  });

  $("[data-caregiver-send]", caregiver)?.addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = $("[data-caregiver-to]", caregiver);
    const to = input.value.trim();
    if (!to || !caregiverId) {
      say(t("invite.send_empty"), true);
      input.focus();
      return;
    }
    say(t("invite.sending"));
    try {
      const data = await patientApi(`/caregivers/${caregiverId}/send`, { to });
      say(t(data.new ? "invite.sent" : "invite.sent_already", { to: data.to }));
      input.value = "";
    } catch (err) {
      say(t("action.failed", { why: err.message || err }), true);
      input.focus();
    }
  });
}
