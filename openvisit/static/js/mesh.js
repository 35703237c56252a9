// The peer-to-peer mesh: one RTCPeerConnection per other admitted participant.
//
// Negotiation follows the "perfect negotiation" pattern over JSEP (RFC 8829): in each pair
// the participant with the smaller id is polite (it rolls back its own offer on glare), the
// other is impolite and makes the first offer with an audio and a video transceiver; the
// polite side attaches its tracks to the offered transceivers when it answers. ICE (RFC 8445)
// candidates trickle through the server. When ICE reports "disconnected" (grace period) or
// "failed", the impolite side restarts ICE (RFC 8829 §3.8) and the polite side asks it to;
// retries back off up to 30 s. Link states for the page: connecting, connected,
// reconnecting, failed.
//
// Events on Mesh: "track" {id, stream}, "state" {id, state}, "closed" {id}.

const DISCONNECTED_GRACE_MS = 2500;
const FIRST_OFFER_WAIT_MS = 5000;

class PeerLink {
  constructor(mesh, peer) {
    this.mesh = mesh;
    this.id = peer.id;
    this.session = peer.session;
    this.polite = mesh.selfId < peer.id;
    this.makingOffer = false;
    this.ignoreOffer = false;
    this.pendingCandidates = [];
    this.queue = Promise.resolve();
    this.state = "connecting";
    this.restartAttempts = 0;
    this.restarts = 0; // ICE restarts asked for or made over this link's life (diagnostics)
    this.restartTimer = null;
    this.remoteStream = new MediaStream();
    this.closed = false;
    const pc = new RTCPeerConnection(mesh.rtcConfig());
    this.pc = pc;
    pc.onnegotiationneeded = () => this.run(() => this.offer());
    pc.onicecandidate = ({ candidate }) => {
      this.mesh.send({ type: "candidate", to: this.id, candidate: candidate ? candidate.toJSON() : null });
    };
    pc.ontrack = ({ track }) => {
      this.remoteStream.addTrack(track);
      track.addEventListener("ended", () => this.remoteStream.removeTrack(track));
      this.mesh.emit("track", { id: this.id, stream: this.remoteStream, track });
    };
    pc.oniceconnectionstatechange = () => this.onIceState();
    if (!this.polite) {
      const { stream } = mesh;
      pc.addTransceiver(mesh.media.audioTrack || "audio", { direction: "sendrecv", streams: [stream] });
      pc.addTransceiver(mesh.media.videoTrack || "video", {
        direction: mesh.media.audioOnly ? "inactive" : "sendrecv", streams: [stream],
      });
    } else {
      // If the impolite side's first offer was lost (its socket was reconnecting), ask again.
      this.offerWait = setTimeout(() => {
        if (!this.closed && !this.pc.remoteDescription) this.mesh.send({ type: "restart", to: this.id });
      }, FIRST_OFFER_WAIT_MS);
    }
  }

  /** Run signalling steps one after another: each awaits the previous one's promises. */
  run(step) {
    this.queue = this.queue.then(step).catch((err) => {
      if (!this.closed) console.warn("openvisit: negotiation step failed", err?.name || err);
    });
    return this.queue;
  }

  async offer() {
    if (this.closed) return;
    try {
      this.makingOffer = true;
      await this.pc.setLocalDescription();
      this.mesh.send({ type: "offer", to: this.id, sdp: this.pc.localDescription.sdp });
    } finally {
      this.makingOffer = false;
    }
  }

  onDescription(type, sdp) {
    return this.run(async () => {
      const collision = type === "offer" && (this.makingOffer || this.pc.signalingState !== "stable");
      this.ignoreOffer = !this.polite && collision;
      if (this.ignoreOffer) return;
      await this.pc.setRemoteDescription({ type, sdp });
      for (const candidate of this.pendingCandidates.splice(0)) {
        await this.pc.addIceCandidate(candidate).catch(() => {});
      }
      if (type === "offer") {
        clearTimeout(this.offerWait);
        this.attachLocal();
        await this.pc.setLocalDescription();
        this.mesh.send({ type: "answer", to: this.id, sdp: this.pc.localDescription.sdp });
      }
    });
  }

  onCandidate(candidate) {
    return this.run(async () => {
      if (!this.pc.remoteDescription) {
        this.pendingCandidates.push(candidate);
        return;
      }
      try {
        await this.pc.addIceCandidate(candidate);
      } catch (err) {
        if (!this.ignoreOffer) throw err;
      }
    });
  }

  /** Put our tracks on every transceiver of the right kind (the polite side, on answer). */
  attachLocal() {
    for (const tr of this.pc.getTransceivers()) {
      const kind = tr.receiver.track?.kind;
      if (!kind || tr.stopped) continue;
      const track = kind === "audio" ? this.mesh.media.audioTrack : this.mesh.media.videoTrack;
      if (tr.sender.track !== track) tr.sender.replaceTrack(track).catch(() => {});
      if (tr.sender.setStreams) tr.sender.setStreams(this.mesh.stream);
      const wanted = kind === "video" && this.mesh.media.audioOnly ? "inactive" : "sendrecv";
      if (tr.direction !== wanted) tr.direction = wanted;
    }
  }

  setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.mesh.emit("state", { id: this.id, state });
  }

  onIceState() {
    const s = this.pc.iceConnectionState;
    if (s === "connected" || s === "completed") {
      this.restartAttempts = 0;
      clearTimeout(this.restartTimer);
      this.restartTimer = null;
      this.setState("connected");
    } else if (s === "disconnected") {
      this.setState("reconnecting");
      this.scheduleRestart(DISCONNECTED_GRACE_MS);
    } else if (s === "failed") {
      this.setState(this.restartAttempts > 3 ? "failed" : "reconnecting");
      this.scheduleRestart(0);
    }
  }

  scheduleRestart(delay) {
    if (this.restartTimer || this.closed) return;
    this.restartTimer = setTimeout(() => {
      this.restartTimer = null;
      const s = this.pc.iceConnectionState;
      if (this.closed || s === "connected" || s === "completed") return;
      this.restart();
      // Check again later; each attempt waits longer (2 s, 4 s, 8 s … 30 s).
      this.scheduleRestart(Math.min(30000, 2000 * 2 ** this.restartAttempts));
    }, delay);
  }

  restart() {
    this.restartAttempts += 1;
    this.restarts += 1;
    if (this.polite) {
      this.mesh.send({ type: "restart", to: this.id });
    } else {
      this.pc.restartIce();
    }
  }

  /** The other side asked for an ICE restart (or a fresh first offer). */
  onRestartRequest() {
    if (this.polite) return;
    if (this.pc.signalingState === "stable") {
      this.restarts += 1;
      this.pc.restartIce();
    }
  }

  async replaceTracks() {
    for (const tr of this.pc.getTransceivers()) {
      if (tr.stopped || !tr.sender) continue;
      const kind = tr.receiver.track?.kind;
      const track = kind === "audio" ? this.mesh.media.audioTrack : this.mesh.media.videoTrack;
      if (tr.sender.track !== track) await tr.sender.replaceTrack(track).catch(() => {});
      if (kind === "video" && tr.currentDirection !== null) {
        // Audio-only also asks the other side to stop sending video (renegotiates).
        const wanted = this.mesh.media.audioOnly ? "inactive" : "sendrecv";
        if (tr.direction !== wanted) tr.direction = wanted;
      }
    }
  }

  close() {
    this.closed = true;
    clearTimeout(this.restartTimer);
    clearTimeout(this.offerWait);
    this.pc.close();
  }
}

export class Mesh extends EventTarget {
  constructor({ selfId, signalling, media }) {
    super();
    this.selfId = selfId;
    this.signalling = signalling;
    this.media = media;
    this.links = new Map();
    this.ice = { iceServers: [], iceTransportPolicy: "all" };
    this.stream = new MediaStream();
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  rtcConfig() {
    return { iceServers: this.ice.iceServers || [], iceTransportPolicy: this.ice.iceTransportPolicy || "all" };
  }

  setIce(ice) {
    this.ice = ice || this.ice;
    for (const link of this.links.values()) {
      try { link.pc.setConfiguration(this.rtcConfig()); } catch { /* kept the old servers */ }
    }
  }

  send(message) {
    return this.signalling.send(message);
  }

  /** Match the links to the admitted, connected peers the server lists. */
  sync(peers) {
    const wanted = new Map(peers.map((peer) => [peer.id, peer]));
    for (const [id, link] of this.links) {
      const peer = wanted.get(id);
      if (!peer || (peer.session && link.session && peer.session !== link.session)) this.drop(id);
    }
    for (const peer of peers) {
      if (!this.links.has(peer.id)) this.links.set(peer.id, new PeerLink(this, peer));
    }
  }

  drop(id) {
    const link = this.links.get(id);
    if (!link) return;
    link.close();
    this.links.delete(id);
    this.emit("closed", { id });
  }

  closeAll() {
    for (const id of [...this.links.keys()]) this.drop(id);
  }

  /** A peer message relayed by the server. */
  onSignal(msg) {
    let link = this.links.get(msg.from);
    if (link && msg.from_session && link.session && msg.from_session !== link.session) {
      this.drop(msg.from);
      link = null;
    }
    if (!link) {
      if (msg.type !== "offer" && msg.type !== "restart") return;
      link = new PeerLink(this, { id: msg.from, session: msg.from_session });
      this.links.set(msg.from, link);
    }
    if (msg.type === "offer" || msg.type === "answer") link.onDescription(msg.type, msg.sdp);
    else if (msg.type === "candidate") link.onCandidate(msg.candidate);
    else if (msg.type === "restart") link.onRestartRequest();
  }

  /** After the socket came back: links that lost their path restart ICE now. */
  afterReconnect() {
    for (const link of this.links.values()) {
      if (link.state !== "connected") link.restart();
    }
  }

  async replaceTracks() {
    await Promise.all([...this.links.values()].map((link) => link.replaceTracks()));
  }
}
