// Small DOM helpers shared by the visit pages.

import { t } from "./i18n.js";

export const $ = (selector, root = document) => root.querySelector(selector);
export const $$ = (selector, root = document) => [...root.querySelectorAll(selector)];

/** Show one step of the page, hide the others, and move focus to its heading. */
export function showStep(name) {
  let shown = null;
  for (const step of $$("section[data-step]")) {
    const on = step.dataset.step === name;
    step.hidden = !on;
    if (on) shown = step;
  }
  const heading = shown && $("h1[tabindex]", shown);
  if (heading) heading.focus({ preventScroll: true });
  document.body.dataset.roomStep = name;
}

/** Say something to screen readers (the polite live region). */
export function announce(text) {
  const live = $("[data-live]");
  if (!live) return;
  live.textContent = "";
  // A new text node after a tick makes screen readers read it even if it repeats.
  setTimeout(() => { live.textContent = text; }, 50);
}

/** Set a toggle button's pressed state and its visible label. */
export function setToggle(action, pressed, labelOn, labelOff) {
  for (const button of $$(`[data-action="${action}"]`)) {
    button.setAttribute("aria-pressed", String(pressed));
    const label = $(".ctl-label", button);
    if (label) label.textContent = pressed ? labelOn : labelOff;
  }
}

/** Fill the camera / microphone / speaker pickers from the device list. */
export async function fillDevicePickers(media, root = document) {
  const devices = await media.devices();
  const counters = { videoinput: 0, audioinput: 0, audiooutput: 0 };
  const names = { videoinput: "devices.camera_n", audioinput: "devices.mic_n", audiooutput: "devices.speaker_n" };
  for (const select of $$("select[data-device]", root)) {
    const kind = select.dataset.device;
    const current = media.currentDeviceId(kind);
    select.textContent = "";
    for (const device of devices.filter((d) => d.kind === kind)) {
      counters[kind] += 1;
      const option = document.createElement("option");
      option.value = device.deviceId;
      // Labels are empty until permission is granted: then number the devices.
      option.textContent = device.label || t(names[kind], { n: counters[kind] });
      option.selected = device.deviceId === current;
      select.append(option);
    }
    select.disabled = select.options.length === 0;
  }
  const speaker = $("[data-speaker-field]", root);
  if (speaker) {
    speaker.hidden = !("setSinkId" in HTMLMediaElement.prototype) || counters.audiooutput === 0;
  }
}

export function bindDevicePickers(media, root = document) {
  for (const select of $$("select[data-device]", root)) {
    select.addEventListener("change", () => {
      media.useDevice(select.dataset.device, select.value).catch(() => {
        announce(t("devices.camera_blocked"));
      });
    });
  }
}

/** Drive a level meter from the microphone while the element is visible. */
export function runMeter(media, root = document) {
  const fills = $$(".meter-fill", root);
  if (!fills.length) return () => {};
  let reader = media.levelReader();
  let frame = 0;
  const tick = () => {
    const level = reader ? reader.read() : 0;
    for (const fill of fills) fill.style.transform = `scaleX(${media.micMuted ? 0 : level})`;
    frame = requestAnimationFrame(tick);
  };
  const restart = () => { reader?.close(); reader = media.levelReader(); };
  media.addEventListener("tracks", restart);
  tick();
  return () => {
    cancelAnimationFrame(frame);
    media.removeEventListener("tracks", restart);
    reader?.close();
  };
}
