// Call quality from WebRTC statistics (W3C webrtc-stats): sampled every ~10 s and sent to
// the server as one "quality" message for this participant (the basis of quality reports).

export async function inboundVideo(pc) {
  const stats = await pc.getStats();
  let out = { framesDecoded: 0, frameWidth: 0, frameHeight: 0 };
  stats.forEach((report) => {
    if (report.type === "inbound-rtp" && report.kind === "video") {
      out = {
        framesDecoded: report.framesDecoded || 0,
        frameWidth: report.frameWidth || 0,
        frameHeight: report.frameHeight || 0,
      };
    }
  });
  return out;
}

export class QualitySampler {
  constructor({ mesh, signalling, intervalMs }) {
    this.mesh = mesh;
    this.signalling = signalling;
    this.intervalMs = intervalMs || 10000;
    this.last = new Map();
    this.timer = null;
  }

  start() {
    this.stop();
    this.timer = setInterval(() => this.sample().catch(() => {}), this.intervalMs);
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
  }

  async sample() {
    const links = [...this.mesh.links.values()].filter((l) => l.state === "connected");
    if (!links.length) return;
    const now = performance.now();
    let rtt = null, jitter = null, lost = 0, received = 0, bitsPerSecond = 0, width = 0, height = 0;
    let rated = 0, relayed = false, direct = false;
    for (const link of links) {
      const stats = await link.pc.getStats();
      let linkBytes = 0, linkLost = 0, linkReceived = 0;
      stats.forEach((r) => {
        if (r.type === "candidate-pair" && r.nominated && r.state === "succeeded") {
          if (r.currentRoundTripTime != null) rtt = Math.max(rtt ?? 0, r.currentRoundTripTime * 1000);
          const local = stats.get(r.localCandidateId), remote = stats.get(r.remoteCandidateId);
          if ((local && local.candidateType === "relay") || (remote && remote.candidateType === "relay")) relayed = true;
          else if (local || remote) direct = true;
        }
        if (r.type === "inbound-rtp") {
          linkBytes += r.bytesReceived || 0;
          linkLost += r.packetsLost || 0;
          linkReceived += r.packetsReceived || 0;
          if (r.jitter != null) jitter = Math.max(jitter ?? 0, r.jitter * 1000);
          if (r.kind === "video" && r.frameWidth) {
            width = Math.max(width, r.frameWidth);
            height = Math.max(height, r.frameHeight || 0);
          }
        }
      });
      const prev = this.last.get(link.id);
      this.last.set(link.id, { bytes: linkBytes, at: now, lost: linkLost, received: linkReceived });
      // The counters are cumulative since the connection began: the first look at a link is
      // only the baseline, and every later sample is the change over the real interval.
      if (!prev || now <= prev.at) continue;
      const seconds = (now - prev.at) / 1000;
      bitsPerSecond += (Math.max(0, linkBytes - prev.bytes) * 8) / seconds;
      lost += Math.max(0, linkLost - prev.lost);
      received += Math.max(0, linkReceived - prev.received);
      rated += 1;
    }
    for (const id of [...this.last.keys()]) {
      if (!links.some((l) => l.id === id)) this.last.delete(id);
    }
    if (!rated) return;
    const sample = { type: "quality", bitrate_kbps: Math.round(bitsPerSecond / 1000) };
    if (rtt != null) sample.rtt_ms = Math.round(rtt);
    if (jitter != null) sample.jitter_ms = Math.round(jitter * 10) / 10;
    if (lost + received > 0) sample.packet_loss_pct = Math.round((1000 * lost) / (lost + received)) / 10;
    if (width) Object.assign(sample, { frame_width: width, frame_height: height });
    // Media path: "relay" when any connection goes through TURN, else "host" (direct).
    if (relayed || direct) sample.path = relayed ? "relay" : "host";
    this.signalling.send(sample);
  }
}

