// The device test: camera, microphone, speaker, then a real call to a server-side peer that
// sends the patient's own audio and video back. Each check ends "passed", "failed" or
// "skipped"; the outcome (no media, no names) is sent to the clinic.

import { config, t } from "./i18n.js";
import { LocalMedia } from "./media.js";

const $ = (sel, root = document) => root.querySelector(sel);
const live = $("[data-live]");
const results = {};
let media = null;
let running = false;

function setCheck(name, state, help = "") {
  const item = $(`[data-check="${name}"]`);
  item.dataset.result = state;
  $("[data-state]", item).textContent = t(`status.${state}`);
  $("[data-help]", item).textContent = help;
  if (state !== "checking") {
    results[name] = state;
    live.textContent = `${$("h2", item).textContent}: ${t(`status.${state}`)}`;
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(test, ms, step = 100) {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    if (await test()) return true;
    await sleep(step);
  }
  return false;
}

async function checkCamera() {
  setCheck("camera", "checking");
  let error = null;
  media.addEventListener("error", (e) => { error = e.detail.kind; }, { once: true });
  const started = await media.start();
  const video = $("[data-preview]");
  video.srcObject = media.preview;
  if (!started) {
    setCheck("camera", "failed", t(error === "blocked" ? "camera.blocked" : "camera.none"));
    setCheck("microphone", "failed", t(error === "blocked" ? "camera.blocked" : "camera.none"));
    $('[data-action="retry"]').hidden = false;  // once allowed (or plugged in), one press
    return false;
  }
  if (!media.cameraTrack) {
    setCheck("camera", "failed", t("camera.none"));
    return true;
  }
  const shown = await until(() => video.videoWidth > 0, 5000);
  setCheck("camera", shown ? "passed" : "failed", shown ? t("camera.ok") : t("camera.none"));
  return true;
}

async function checkMicrophone() {
  setCheck("microphone", "checking", t("mic.speak"));
  const reader = media.levelReader();
  if (!reader) {
    setCheck("microphone", media.audioTrack ? "skipped" : "failed", media.audioTrack ? "" : t("mic.silent"));
    return;
  }
  const meter = $("[data-meter]");
  let heard = false;
  await until(() => {
    const level = reader.read();
    meter.style.transform = `scaleX(${level})`;
    heard = heard || level > 0.08;
    return heard;
  }, 10000, 50);
  reader.close();
  setCheck("microphone", heard ? "passed" : "failed", t(heard ? "mic.ok" : "mic.silent"));
}

function speakerStep() {
  setCheck("speaker", "checking", t("speaker.question"));
  const play = $('[data-action="play"]');
  const buttons = ["heard", "not-heard"].map((a) => $(`[data-action="${a}"]`));
  play.disabled = false;
  return new Promise((resolve) => {
    play.onclick = () => {
      playTone();
      for (const b of buttons) b.disabled = false;
    };
    buttons[0].onclick = () => { setCheck("speaker", "passed", t("speaker.ok")); done(); };
    buttons[1].onclick = () => { setCheck("speaker", "failed", t("speaker.failed")); done(); };
    function done() {
      play.disabled = true;
      for (const b of buttons) b.disabled = true;
      resolve();
    }
  });
}

function playTone() {
  if (!window.AudioContext) return;
  const context = new AudioContext();
  const tone = context.createOscillator();
  const gain = context.createGain();
  tone.frequency.value = 660;
  gain.gain.setValueAtTime(0.0001, context.currentTime);
  gain.gain.exponentialRampToValueAtTime(0.4, context.currentTime + 0.05);
  gain.gain.exponentialRampToValueAtTime(0.0001, context.currentTime + 1.2);
  tone.connect(gain).connect(context.destination);
  tone.start();
  tone.stop(context.currentTime + 1.3);
  tone.onended = () => context.close().catch(() => {});
}

async function callStats(pc) {
  const out = { frames_decoded: 0, audio_packets: 0 };
  const stats = await pc.getStats();
  let localId = null;
  stats.forEach((r) => {
    if (r.type === "candidate-pair" && r.nominated && r.state === "succeeded") {
      if (r.currentRoundTripTime != null) out.rtt_ms = Math.round(r.currentRoundTripTime * 1000);
      localId = r.localCandidateId;
    }
    if (r.type === "inbound-rtp" && r.kind === "video") {
      out.frames_decoded = r.framesDecoded || 0;
      if (r.frameWidth) Object.assign(out, { frame_width: r.frameWidth, frame_height: r.frameHeight });
      if (r.jitter != null) out.jitter_ms = Math.round(r.jitter * 10000) / 10;
      const total = (r.packetsLost || 0) + (r.packetsReceived || 0);
      if (total) out.packet_loss_pct = Math.round((1000 * Math.max(0, r.packetsLost || 0)) / total) / 10;
    }
    if (r.type === "inbound-rtp" && r.kind === "audio") out.audio_packets = r.packetsReceived || 0;
  });
  const local = localId && stats.get(localId);
  if (local && local.candidateType) out.candidate_type = local.candidateType;
  return out;
}

async function testCall() {
  setCheck("call", "checking", t("call.connecting"));
  const ice = config.ice || {};
  const pc = new RTCPeerConnection({
    iceServers: ice.iceServers || [],
    iceTransportPolicy: ice.iceTransportPolicy || "all",
  });
  const begun = performance.now();
  const report = { status: "failed" };
  try {
    for (const track of [media.audioTrack, media.cameraTrack]) {
      if (track) pc.addTrack(track, media.preview);
    }
    pc.ontrack = (event) => {
      if (event.track.kind !== "video") return;
      $("[data-echo-box]").hidden = false;
      $("[data-echo]").srcObject = event.streams[0] || new MediaStream([event.track]);
    };
    await pc.setLocalDescription(await pc.createOffer());
    await until(() => pc.iceGatheringState === "complete", 5000);
    const response = await fetch(config.callPath, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ ctx: config.ctx, type: "offer", sdp: pc.localDescription.sdp }),
    });
    if (!response.ok) {
      setCheck("call", "failed", t(response.status === 503 ? "call.busy" : "call.failed"));
      return report;
    }
    await pc.setRemoteDescription(await response.json());
    const connected = await until(() => pc.connectionState === "connected", 15000);
    if (!connected) {
      setCheck("call", "failed", t("call.failed"));
      return report;
    }
    report.connect_ms = Math.round(performance.now() - begun);
    await sleep((config.callSeconds || 6) * 1000);
    const measured = await callStats(pc);
    const gotBack = media.cameraTrack ? measured.frames_decoded > 0 : measured.audio_packets > 0;
    delete measured.audio_packets;
    Object.assign(report, measured, { status: gotBack ? "passed" : "failed" });
    setCheck("call", report.status, t(gotBack ? "call.ok" : "call.failed"));
    return report;
  } catch {
    setCheck("call", "failed", t("call.failed"));
    return report;
  } finally {
    window.__ovCall = report;
    pc.close();
  }
}

async function run() {
  if (running) return;
  running = true;
  const start = $('[data-action="start"]');
  start.disabled = true;
  $('[data-action="retry"]').hidden = true;
  $("[data-summary]").hidden = true;
  $("[data-echo-box]").hidden = true;
  media?.stopAll();
  media = new LocalMedia();
  const haveMedia = await checkCamera();
  let call = { status: "skipped" };
  let speaker = Promise.resolve();
  if (haveMedia) {
    await checkMicrophone();
    speaker = speakerStep();
    call = await testCall();
  } else {
    setCheck("speaker", "skipped");
    setCheck("call", "skipped");
  }
  await speaker;
  const passed = ["camera", "microphone", "call"].every((k) => results[k] === "passed")
    && results.speaker !== "failed";
  $("[data-echo-box]").hidden = true; // the call is over: its picture would stay black
  const summary = $("[data-summary]");
  $("[data-summary-text]").textContent = t(passed ? "summary.passed" : "summary.failed");
  summary.dataset.result = passed ? "passed" : "failed";
  summary.hidden = false;
  summary.scrollIntoView({ block: "center", behavior: "smooth" });
  summary.focus({ preventScroll: true });
  await save(call);
  start.textContent = t("start.again");
  start.disabled = false;
  running = false;
  const retry = $('[data-action="retry"]');
  if (!retry.hidden) retry.focus({ preventScroll: true });
}

async function save(call) {
  const saved = $("[data-saved]");
  try {
    const response = await fetch(config.resultPath, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({
        ctx: config.ctx, camera: results.camera, microphone: results.microphone,
        speaker: results.speaker, call, language: config.lang,
      }),
    });
    let text = t(response.ok ? "summary.saved" : "summary.not_saved");
    if (response.status === 429) {
      // The server's message says how long to wait, in the page's language.
      const body = await response.json().catch(() => ({}));
      text = (body.error && body.error.message) || text;
    }
    saved.textContent = text;
    saved.dataset.saved = String(response.ok);
  } catch {
    saved.textContent = t("summary.not_saved");
    saved.dataset.saved = "false";
  }
}

$('[data-action="start"]').addEventListener("click", run);
$('[data-action="retry"]').addEventListener("click", run);
