"""How many rows a seat's own sockets may add to visit_event and audit_log.

The rule: per seat and per group, a token bucket of :data:`RECORD_BURST` rows refilled one
row every :data:`RECORD_REFILL_SECONDS`. Within budget every event is stored as before; past
it the state change still happens (the seat row is updated and the change is published to
the rooms) but no row is written, and the next row that is written carries
``"suppressed": n``, the number of rows left out since the previous one. So a seat that
reconnects a thousand times in a minute adds about :data:`RECORD_BURST` rows, and a week of
normal reconnects on a poor network (a few an hour) is recorded in full.

Groups: ``presence`` (joined, connected, left, disconnected: what the seat's own socket
causes) and ``refused`` (audit rows of signalling refused before admission). Staff actions
(admit, remove, end) are never budgeted. The state lives on the seat row
(``Participant.record_budget``), which those steps already lock, so it holds across web
processes.
"""

from __future__ import annotations

from typing import Any

RECORD_BURST = 20
RECORD_REFILL_SECONDS = 60.0
GROUPS = ("presence", "refused")


def spend(budget: dict[str, Any] | None, *, group: str, now: float) -> tuple[bool, int,
                                                                              dict[str, Any]]:
    """``(store, suppressed, new_budget)`` for one more row of ``group`` at ``now`` (epoch s).

    ``store`` says whether to write the row; when it is True, ``suppressed`` is how many rows
    of the group were left out before it (to record on it). ``new_budget`` replaces the old
    one (a new dict, so the ORM sees the change).
    """
    assert group in GROUPS, group
    entry: Any = (budget or {}).get(group)
    try:
        tokens, stamp, left_out = float(entry[0]), float(entry[1]), int(entry[2])
    except (TypeError, ValueError, IndexError, KeyError):
        tokens, stamp, left_out = float(RECORD_BURST), now, 0
    tokens = min(float(RECORD_BURST), tokens + max(0.0, now - stamp) / RECORD_REFILL_SECONDS)
    if tokens >= 1.0:
        store, suppressed, tokens, left_out = True, left_out, tokens - 1.0, 0
    else:
        store, suppressed, left_out = False, 0, left_out + 1
    return store, suppressed, {**(budget or {}), group: [round(tokens, 4), now, left_out]}
