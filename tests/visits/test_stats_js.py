"""The room's quality sampler (static/js/stats.js) run by Node against fake RTCPeerConnections:
samples are rates over the real interval, never cumulative counters over a millisecond."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

STATS_JS = Path(__file__).resolve().parents[2] / "openvisit" / "static" / "js" / "stats.js"

HARNESS = """
import { QualitySampler } from "./stats.mjs";
let clock = 1000;
Object.defineProperty(globalThis, "performance", { value: { now: () => clock } });
const counters = { bytes: 5_000_000, lost: 40, received: 9_960 };
function report() {
  return new Map([
    ["pair", { type: "candidate-pair", nominated: true, state: "succeeded",
               currentRoundTripTime: 0.084, localCandidateId: "l", remoteCandidateId: "r" }],
    ["l", { type: "local-candidate", candidateType: process.argv[2] }],
    ["r", { type: "remote-candidate", candidateType: "host" }],
    ["in", { type: "inbound-rtp", kind: "video", bytesReceived: counters.bytes,
             packetsLost: counters.lost, packetsReceived: counters.received, jitter: 0.0123,
             frameWidth: 640, frameHeight: 480 }],
  ]);
}
const link = { id: "peer-1", state: "connected", pc: { getStats: async () => report() } };
const sent = [];
const sampler = new QualitySampler({ mesh: { links: new Map([["peer-1", link]]) },
                                     signalling: { send: (m) => sent.push(m) } });
await sampler.sample();            // first look: the baseline only
clock += 10_000;                   // ten seconds later
counters.bytes += 1_250_000;       // 10 Mbit in 10 s = 1,000 kbit/s
counters.lost += 10; counters.received += 990;
await sampler.sample();
console.log(JSON.stringify(sent));
"""


@pytest.mark.parametrize(("candidate", "path"), [("host", "host"), ("relay", "relay")])
def test_it_sends_rates_over_the_interval_not_from_the_first_cumulative_look(
        tmp_path: Path, candidate: str, path: str) -> None:
    node = shutil.which("node")
    assert node, "Node.js is part of the test peers (scripts/bootstrap-system.sh)"
    shutil.copy(STATS_JS, tmp_path / "stats.mjs")
    (tmp_path / "run.mjs").write_text(HARNESS)
    out = subprocess.run([node, str(tmp_path / "run.mjs"), candidate], capture_output=True,
                         text=True, timeout=30, check=True).stdout
    assert json.loads(out) == [{
        "type": "quality", "bitrate_kbps": 1000, "rtt_ms": 84, "jitter_ms": 12.3,
        "packet_loss_pct": 1.0, "frame_width": 640, "frame_height": 480, "path": path,
    }]
