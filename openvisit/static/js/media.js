// The local camera and microphone: preview, device choice, mute, camera off, screen share.
//
// Events: "tracks" (the audio or video track to send changed), "devices" (the list of
// devices changed), "error" {kind: "blocked"|"none"}.

const PREFS = { videoinput: "ov.camera", audioinput: "ov.mic", audiooutput: "ov.speaker" };
const VIDEO = { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 24 } };

function pref(kind) {
  try { return localStorage.getItem(PREFS[kind]) || ""; } catch { return ""; }
}

function savePref(kind, id) {
  try { localStorage.setItem(PREFS[kind], id); } catch { /* private mode: fine */ }
}

export class LocalMedia extends EventTarget {
  constructor() {
    super();
    this.audioTrack = null;
    this.cameraTrack = null;
    this.screenTrack = null;
    this.micMuted = false;
    this.cameraOff = false;
    this.audioOnly = false;
    this.preview = new MediaStream();
    this.speakerId = pref("audiooutput");
    navigator.mediaDevices?.addEventListener?.("devicechange", () => this.emit("devices"));
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  /** The video track to send: the shared screen, else the camera (null when off). */
  get videoTrack() {
    if (this.audioOnly) return null;
    return this.screenTrack || (this.cameraOff ? null : this.cameraTrack);
  }

  async start() {
    if (!navigator.mediaDevices?.getUserMedia) {
      this.emit("error", { kind: "none" });
      return false;
    }
    const audio = pref("audioinput") ? { deviceId: { ideal: pref("audioinput") } } : true;
    const video = { ...VIDEO, ...(pref("videoinput") ? { deviceId: { ideal: pref("videoinput") } } : {}) };
    let stream = null;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio, video });
    } catch (err) {
      // No camera (or it is busy): try the microphone alone before giving up.
      try {
        stream = await navigator.mediaDevices.getUserMedia({ audio });
      } catch {
        this.emit("error", { kind: err && err.name === "NotAllowedError" ? "blocked" : "none" });
        return false;
      }
    }
    this.audioTrack = stream.getAudioTracks()[0] || null;
    this.cameraTrack = stream.getVideoTracks()[0] || null;
    if (this.audioTrack) this.audioTrack.enabled = !this.micMuted;
    this.refreshPreview();
    this.emit("devices");
    return true;
  }

  refreshPreview() {
    for (const track of this.preview.getTracks()) this.preview.removeTrack(track);
    const video = this.screenTrack || (this.cameraOff || this.audioOnly ? null : this.cameraTrack);
    if (video) this.preview.addTrack(video);
    this.emit("preview");
  }

  async devices() {
    if (!navigator.mediaDevices?.enumerateDevices) return [];
    return navigator.mediaDevices.enumerateDevices();
  }

  currentDeviceId(kind) {
    if (kind === "audiooutput") return this.speakerId;
    const track = kind === "videoinput" ? this.cameraTrack : this.audioTrack;
    return track?.getSettings?.().deviceId || pref(kind);
  }

  async useDevice(kind, deviceId) {
    savePref(kind, deviceId);
    if (kind === "audiooutput") {
      this.speakerId = deviceId;
      this.emit("speaker", { deviceId });
      return;
    }
    const constraints = kind === "videoinput"
      ? { video: { ...VIDEO, deviceId: { exact: deviceId } } }
      : { audio: { deviceId: { exact: deviceId } } };
    const stream = await navigator.mediaDevices.getUserMedia(constraints);
    const track = stream.getTracks()[0];
    if (kind === "videoinput") {
      this.cameraTrack?.stop();
      this.cameraTrack = track;
      this.cameraOff = false;
    } else {
      this.audioTrack?.stop();
      this.audioTrack = track;
      track.enabled = !this.micMuted;
    }
    this.refreshPreview();
    this.emit("tracks");
  }

  setMicMuted(muted) {
    this.micMuted = muted;
    if (this.audioTrack) this.audioTrack.enabled = !muted;
  }

  /** Camera off stops the camera (its light goes out); on asks for it again. */
  async setCameraOff(off) {
    this.cameraOff = off;
    if (off) {
      this.cameraTrack?.stop();
      this.cameraTrack = null;
    } else if (!this.cameraTrack || this.cameraTrack.readyState === "ended") {
      const id = pref("videoinput");
      const stream = await navigator.mediaDevices.getUserMedia({
        video: { ...VIDEO, ...(id ? { deviceId: { ideal: id } } : {}) },
      });
      this.cameraTrack = stream.getVideoTracks()[0];
    }
    this.refreshPreview();
    this.emit("tracks");
  }

  async setAudioOnly(on) {
    this.audioOnly = on;
    if (on) await this.stopShare();
    await this.setCameraOff(on);
  }

  get canShare() {
    return Boolean(navigator.mediaDevices?.getDisplayMedia) && !/Mobi|Android/i.test(navigator.userAgent);
  }

  async startShare() {
    const stream = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
    this.screenTrack = stream.getVideoTracks()[0];
    this.screenTrack.addEventListener("ended", () => this.stopShare());
    this.refreshPreview();
    this.emit("tracks");
  }

  async stopShare() {
    if (!this.screenTrack) return;
    const track = this.screenTrack;
    this.screenTrack = null;
    track.stop();
    this.refreshPreview();
    this.emit("tracks");
    this.emit("share-ended");
  }

  stopAll() {
    for (const track of [this.audioTrack, this.cameraTrack, this.screenTrack]) track?.stop();
  }

  /** A 0..1 microphone level reader for the meter (null if Web Audio is missing). */
  levelReader() {
    if (!this.audioTrack || !window.AudioContext) return null;
    const context = new AudioContext();
    const source = context.createMediaStreamSource(new MediaStream([this.audioTrack]));
    const analyser = context.createAnalyser();
    analyser.fftSize = 512;
    source.connect(analyser);
    const data = new Uint8Array(analyser.fftSize);
    return {
      read() {
        analyser.getByteTimeDomainData(data);
        let peak = 0;
        for (const v of data) peak = Math.max(peak, Math.abs(v - 128));
        return Math.min(1, peak / 64);
      },
      close() { if (context.state !== "closed") context.close().catch(() => {}); },
    };
  }
}
