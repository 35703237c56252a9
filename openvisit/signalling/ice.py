"""Hide staff network addresses from patients: the server side of ``staff_ice_transport_policy``.

Every ICE candidate a peer sends names an address of its machine (RFC 8445 §5.1.1): host
candidates its interfaces (a hospital workstation's private address), server-reflexive ones
the site's public NAT address, and relay candidates the TURN server's address plus, in
``raddr``/``rport`` (RFC 8839 §5.1), the address the relay was allocated from. With
``staff_ice_transport_policy = "relay"`` clinicians' browsers are told to gather relay
candidates only (JSEP, RFC 8829 §4.1.1); in case one does not (an old cached page, a
modified client) the server also filters what a staff seat sends to anyone who is not staff:

- ``candidate`` frames: only ``typ relay`` pass, with ``raddr 0.0.0.0 rport 0``;
  end-of-candidates (no candidate) passes;
- ``offer``/``answer`` SDP: ``a=candidate`` lines are filtered the same way, and the
  default-candidate addresses in ``c=`` and ``a=rtcp`` (RFC 8866 §5.7, RFC 3605) become
  ``0.0.0.0`` (what browsers write before gathering; ICE agents ignore them).

Pure functions; the server still does not interpret anything else in the SDP.
"""

from __future__ import annotations

import re
from typing import Any

_TYP = re.compile(r"\btyp\s+(\S+)")
_RADDR = re.compile(r"\braddr\s+\S+\s+rport\s+\d+")
_C_LINE = re.compile(r"^c=IN IP[46] \S+", re.MULTILINE)
_RTCP = re.compile(r"^(a=rtcp:\d+) IN IP[46] \S+", re.MULTILINE)


def relay_only_candidate(candidate: str) -> str | None:
    """The candidate line if it is a relay candidate (``raddr`` zeroed), else ``None``."""
    match = _TYP.search(candidate)
    if match is None or match.group(1) != "relay":
        return None
    return _RADDR.sub("raddr 0.0.0.0 rport 0", candidate)


def hide_in_candidate(init: dict[str, Any] | None) -> dict[str, Any] | bool | None:
    """A relayed ``RTCIceCandidateInit`` with staff addresses hidden; ``False`` to drop it."""
    if init is None or not init.get("candidate"):
        return init  # end-of-candidates
    line = relay_only_candidate(str(init["candidate"]))
    if line is None:
        return False
    return {**init, "candidate": line}


def hide_in_sdp(sdp: str) -> str:
    """The session description without non-relay candidates or default addresses."""
    newline = "\r\n" if "\r\n" in sdp else "\n"
    kept = []
    for line in sdp.split(newline):
        if line.startswith("a=candidate:"):
            relay = relay_only_candidate(line)
            if relay is None:
                continue
            line = relay
        kept.append(line)
    out = newline.join(kept)
    out = _C_LINE.sub("c=IN IP4 0.0.0.0", out)
    return _RTCP.sub(r"\1 IN IP4 0.0.0.0", out)
