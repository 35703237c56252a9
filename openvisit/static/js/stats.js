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
    let rtt = null, jitter = null, lost = 0, received = 0, bytes = 0, width = 0, height = 0;
    for (const link of links) {
      const stats = await link.pc.getStats();
      const prev = this.last.get(link.id) || { bytes: 0, at: now, lost: 0, received: 0 };
      let linkBytes = 0, linkLost = 0, linkReceived = 0;
      stats.forEach((r) => {
        if (r.type === "candidate-pair" && r.nominated && r.state === "succeeded" && r.currentRoundTripTime != null) {
          rtt = Math.max(rtt ?? 0, r.currentRoundTripTime * 1000);
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
      const seconds = Math.max(0.001, (now - prev.at) / 1000);
      bytes += Math.max(0, linkBytes - prev.bytes) / seconds;
      lost += Math.max(0, linkLost - prev.lost);
      received += Math.max(0, linkReceived - prev.received);
      this.last.set(link.id, { bytes: linkBytes, at: now, lost: linkLost, received: linkReceived });
    }
    const sample = { type: "quality", bitrate_kbps: Math.round((bytes * 8) / 1000) };
    if (rtt != null) sample.rtt_ms = Math.round(rtt);
    if (jitter != null) sample.jitter_ms = Math.round(jitter * 10) / 10;
    if (lost + received > 0) sample.packet_loss_pct = Math.round((1000 * lost) / (lost + received)) / 10;
    if (width) Object.assign(sample, { frame_width: width, frame_height: height });
    this.signalling.send(sample);
  }
}
