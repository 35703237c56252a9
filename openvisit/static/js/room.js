// The visit room shared by the patient and clinician pages: socket, media, mesh, tiles and
// controls. The server decides who is in the lobby and who is in the call; this only shows it.

import { config, t, labelOf } from "./i18n.js";
import { LocalMedia } from "./media.js";
import { Mesh } from "./mesh.js";
import { Signalling } from "./signalling.js";
import { QualitySampler, inboundVideo } from "./stats.js";
import { $, $$, announce, bindDevicePickers, fillDevicePickers, setToggle, showStep } from "./ui.js";

const ENDINGS = new Set(["left", "ended", "removed", "replaced"]);

export class Room extends EventTarget {
  constructor() {
    super();
    this.isStaff = config.role === "provider";
    this.media = new LocalMedia();
    this.signalling = new Signalling({ path: config.wsPath, token: config.token, lang: config.lang });
    this.mesh = new Mesh({ selfId: config.participantId, signalling: this.signalling, media: this.media });
    this.sampler = new QualitySampler({ mesh: this.mesh, signalling: this.signalling, intervalMs: config.qualityIntervalMs });
    this.last = null;
    this.youState = null;
    this.peers = new Map();
    this.tiles = new Map();
    this.welcomed = 0;
    this.ended = false;
    this.bind();
    // A handle for people debugging a visit in the browser console, and for the tests.
    window.__openvisit = this;
  }

  bind() {
    this.signalling.addEventListener("message", (e) => this.onMessage(e.detail));
    this.signalling.addEventListener("status", (e) => this.onSocketStatus(e.detail));
    this.signalling.addEventListener("bye", (e) => this.end(e.detail.reason));
    this.signalling.addEventListener("fatal", (e) => this.end("fatal", e.detail));
    this.mesh.addEventListener("track", (e) => this.onTrack(e.detail));
    this.mesh.addEventListener("state", (e) => this.onLinkState(e.detail));
    this.mesh.addEventListener("closed", (e) => this.removeTile(e.detail.id));
    this.media.addEventListener("tracks", () => this.mesh.replaceTracks());
    this.media.addEventListener("preview", () => this.attachPreview());
    this.media.addEventListener("speaker", (e) => this.applySpeaker(e.detail.deviceId));
    this.media.addEventListener("share-ended", () => setToggle("share", false, t("call.share_stop"), t("call.share")));
    this.media.addEventListener("devices", () => fillDevicePickers(this.media));
    for (const button of $$("[data-action]")) {
      button.addEventListener("click", () => this.onAction(button.dataset.action, button));
    }
    bindDevicePickers(this.media);
    for (const button of $$('[data-action="share"]')) button.hidden = !this.media.canShare;
    window.addEventListener("pagehide", () => this.signalling.close());
  }

  attachPreview() {
    for (const video of $$("video[data-preview], video[data-lobby-preview], video[data-self-video]")) {
      if (video.srcObject !== this.media.preview) video.srcObject = this.media.preview;
      video.classList.toggle("is-off", this.media.preview.getVideoTracks().length === 0);
      video.play().catch(() => {});
    }
  }

  join() {
    // The pre-join device check's outcome ("ready" / "failed"), for the drop-off report.
    if (this.devices) this.signalling.devices = this.devices;
    this.signalling.connect();
  }

  // ------------------------------------------------------------------ server messages

  onMessage(msg) {
    switch (msg.type) {
      case "welcome":
        this.welcomed += 1;
        this.mesh.setIce(msg.ice);
        if (this.welcomed > 1) this.mesh.afterReconnect();
        break;
      case "state":
        this.onState(msg);
        break;
      case "offer":
      case "answer":
      case "candidate":
      case "restart":
        this.mesh.onSignal(msg);
        break;
      case "error":
        if (msg.code === "not_admitted") this.mesh.closeAll();
        break;
      default:
        break;
    }
  }

  onState(msg) {
    this.last = msg;
    if (msg.visit.status === "ended") {
      this.end("ended");
      return;
    }
    const previous = this.youState;
    this.youState = msg.you.state;
    if (ENDINGS.has(msg.you.state)) {
      this.end(msg.you.state);
      return;
    }
    if (msg.you.state === "admitted") {
      if (previous !== "admitted") this.enterCall();
      this.mesh.sync(msg.peers);
      this.syncTiles(msg.peers);
    } else {
      if (previous === "admitted") announce(t("call.sent_back"));
      this.mesh.closeAll();
      this.syncTiles([]);
      this.enterLobby(previous === "admitted");
    }
    this.dispatchEvent(new CustomEvent("state", { detail: msg }));
  }

  enterCall() {
    showStep("call");
    this.attachPreview();
    this.sampler.start();
    announce(t("call.joined"));
  }

  enterLobby(sentBack) {
    this.sampler.stop();
    this.dispatchEvent(new CustomEvent("lobby", { detail: { sentBack } }));
  }

  onSocketStatus({ state, inMs }) {
    const banner = $("[data-conn-banner]");
    const text = state === "open" ? "" : state === "retry"
      ? t("conn.retry_in", { s: Math.max(1, Math.round(inMs / 1000)) })
      : (this.welcomed ? t("conn.reconnecting") : t("conn.connecting"));
    if (banner) {
      banner.hidden = !text;
      banner.textContent = text;
    }
    if (state === "open" && this.welcomed) announce(t("conn.connected"));
    this.dispatchEvent(new CustomEvent("socket", { detail: { state, text } }));
  }

  // ------------------------------------------------------------------ tiles

  syncTiles(peers) {
    const ids = new Set(peers.map((p) => p.id));
    for (const id of [...this.tiles.keys()]) if (!ids.has(id)) this.removeTile(id);
    for (const peer of peers) {
      this.peers.set(peer.id, peer);
      const tile = this.tiles.get(peer.id) || this.addTile(peer);
      $(".tile-name", tile).textContent = labelOf(peer);
    }
    const empty = $("[data-stage-empty]");
    if (empty) empty.hidden = peers.length > 0;
    const stage = $("[data-tiles]");
    if (stage) stage.dataset.count = String(peers.length);
  }

  addTile(peer) {
    const tile = $("#tile-template").content.firstElementChild.cloneNode(true);
    tile.dataset.peer = peer.id;
    const video = $("video", tile);
    video.addEventListener("resize", () => this.updatePlaceholder(peer.id));
    $(".tile-state", tile).textContent = t("peer.connecting", { who: labelOf(peer) });
    tile.classList.add("no-video");
    $("[data-tiles]").append(tile);
    this.tiles.set(peer.id, tile);
    this.applySpeaker(this.media.speakerId, video);
    return tile;
  }

  removeTile(id) {
    const tile = this.tiles.get(id);
    if (tile) {
      tile.remove();
      // Screen readers heard "… is connected"; the page tells them the peer went, too.
      const peer = this.peers.get(id);
      if (peer && !this.ended) this.dispatchEvent(new CustomEvent("peer-left", { detail: { peer } }));
    }
    this.tiles.delete(id);
  }

  onTrack({ id, stream, track }) {
    const tile = this.tiles.get(id) || (this.peers.get(id) && this.addTile(this.peers.get(id)));
    if (!tile) return;
    const video = $("video", tile);
    if (video.srcObject !== stream) video.srcObject = stream;
    video.play().catch(() => {
      // Autoplay with sound refused: play muted and let a tap bring the sound.
      video.muted = true;
      video.play().catch(() => {});
      document.addEventListener("click", () => { video.muted = false; }, { once: true });
    });
    if (track.kind === "video") {
      for (const type of ["mute", "unmute"]) track.addEventListener(type, () => this.updatePlaceholder(id));
    }
    this.updatePlaceholder(id);
  }

  updatePlaceholder(id) {
    const tile = this.tiles.get(id);
    if (!tile) return;
    const video = $("video", tile);
    const track = video.srcObject?.getVideoTracks?.()[0];
    const showing = Boolean(track && !track.muted && video.videoWidth > 0);
    tile.classList.toggle("no-video", !showing);
  }

  onLinkState({ id, state }) {
    const tile = this.tiles.get(id);
    const peer = this.peers.get(id);
    if (!tile || !peer) return;
    const who = labelOf(peer);
    const text = { connecting: t("peer.connecting", { who }), reconnecting: t("peer.reconnecting", { who }),
      failed: t("peer.failed", { who }), connected: "" }[state] ?? "";
    $(".tile-state", tile).textContent = text;
    tile.dataset.state = state;
    if (state === "connected") announce(t("peer.connected", { who }));
    else if (state === "reconnecting") announce(text);
    this.updatePlaceholder(id);
  }

  applySpeaker(deviceId, only = null) {
    if (!deviceId) return;
    const videos = only ? [only] : $$("[data-tiles] video");
    for (const video of videos) if (video.setSinkId) video.setSinkId(deviceId).catch(() => {});
  }

  // ------------------------------------------------------------------ controls

  async onAction(action, button) {
    const m = this.media;
    try {
      if (action === "mic") {
        m.setMicMuted(!m.micMuted);
        setToggle("mic", m.micMuted, t("call.mic_off"), t("call.mic_on"));
        if (m.micMuted) announce(t("call.muted_notice"));
      } else if (action === "camera") {
        await m.setCameraOff(!m.cameraOff);
        setToggle("camera", m.cameraOff, t("call.cam_off"), t("call.cam_on"));
      } else if (action === "audio-only") {
        await m.setAudioOnly(!m.audioOnly);
        setToggle("audio-only", m.audioOnly, t("call.audio_only_off"), t("call.audio_only"));
        setToggle("camera", m.cameraOff, t("call.cam_off"), t("call.cam_on"));
      } else if (action === "share") {
        if (m.screenTrack) await m.stopShare(); else await m.startShare();
        setToggle("share", Boolean(m.screenTrack), t("call.share_stop"), t("call.share"));
      } else if (action === "devices") {
        this.openDevices(button);
      } else if (action === "leave") {
        this.signalling.leave();
        this.end("left");
      } else if (action === "rejoin") {
        location.reload();
      } else {
        this.dispatchEvent(new CustomEvent("action", { detail: { action, button } }));
      }
    } catch (err) {
      console.warn("openvisit: action failed", action, err?.name || err);
    }
  }

  openDevices(opener) {
    const dialog = $("#device-dialog");
    const slot = $("[data-dialog-devices]", dialog);
    const pickers = $(".device-pickers") || $("#devices-template")?.content.firstElementChild.cloneNode(true);
    if (!pickers) return;
    const home = pickers.parentElement;
    slot.append(pickers);
    if (!home) bindDevicePickers(this.media, slot);
    fillDevicePickers(this.media, slot);
    dialog.addEventListener("close", () => {
      if (home) home.append(pickers);
      opener?.focus();
    }, { once: true });
    dialog.showModal();
  }

  end(reason, detail = {}) {
    if (this.ended) return;
    this.ended = true;
    this.sampler.stop();
    this.mesh.closeAll();
    this.media.stopAll();
    this.signalling.close();
    const key = ENDINGS.has(reason) ? reason : null;
    $("[data-end-title]").textContent = key ? t(`end.${key}.title`) : (detail.title || detail.message || "");
    $("[data-end-text]").textContent = key ? t(`end.${key}.text`) : (detail.title ? detail.message : "");
    const rejoin = $('[data-action="rejoin"]');
    if (rejoin) rejoin.hidden = reason !== "left";
    document.body.classList.add("room-ended");
    showStep("end");
    announce($("[data-end-title]").textContent);
    this.dispatchEvent(new CustomEvent("ended", { detail: { reason } }));
  }

  // ------------------------------------------------------------------ for tests and support

  /** Per remote peer: frames decoded so far, picture size, and the link state. */
  async inbound() {
    const out = {};
    for (const [id, link] of this.mesh.links) {
      const video = this.tiles.get(id) && $("video", this.tiles.get(id));
      out[id] = { ...(await inboundVideo(link.pc)), videoWidth: video ? video.videoWidth : 0,
        state: link.state, ice: link.pc.iceConnectionState };
    }
    return out;
  }
}
