"""When messages go out: quiet hours, reminder times, what a message says (pure functions).

Quiet hours are local times of the endpoint's zone ("21:00"–"08:00" crosses midnight). The
rules, in the order a person would apply them:

- a confirmation written during quiet hours waits for their end, unless the visit starts
  before then: the patient needs the link more than an undisturbed night;
- a reminder that falls in quiet hours moves to their end if that is still comfortably before
  the visit, else to just before they begin (the evening before an early visit);
- a reminder whose time has passed is not scheduled at all.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

#: A reminder moved out of quiet hours must still leave the patient this much time.
MIN_REMINDER_LEAD = timedelta(minutes=10)


def zone(name: str | None) -> ZoneInfo:
    """The IANA zone ``name``, or UTC when it is missing or unknown."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _parse_hhmm(value: str) -> time:
    hours, _, minutes = value.strip().partition(":")
    return time(int(hours), int(minutes or 0))


@dataclass(frozen=True)
class QuietHours:
    """A daily period in a zone during which nothing is sent."""

    start: time
    end: time
    tz: ZoneInfo

    @classmethod
    def parse(cls, start: str | None, end: str | None, *, tz: str | None) -> QuietHours | None:
        """``None`` when either bound is missing, malformed or both are equal (no quiet)."""
        if not start or not end:
            return None
        try:
            begin, finish = _parse_hhmm(start), _parse_hhmm(end)
        except ValueError:
            return None
        if begin == finish:
            return None
        return cls(begin, finish, zone(tz))

    @property
    def overnight(self) -> bool:
        return self.start > self.end

    def _local(self, at: datetime) -> datetime:
        return at.astimezone(self.tz)

    def _at(self, day: date, clock: time) -> datetime:
        return datetime.combine(day, clock, tzinfo=self.tz).astimezone(UTC)

    def contains(self, at: datetime) -> bool:
        clock = self._local(at).time()
        if self.overnight:
            return clock >= self.start or clock < self.end
        return self.start <= clock < self.end

    def end_after(self, at: datetime) -> datetime:
        """The end of the quiet period that contains ``at`` (UTC)."""
        local = self._local(at)
        day = local.date()
        if self.overnight and local.time() >= self.start:
            day += timedelta(days=1)
        return self._at(day, self.end)

    def start_before(self, at: datetime) -> datetime:
        """The start of the quiet period that contains ``at`` (UTC)."""
        local = self._local(at)
        day = local.date()
        if self.overnight and local.time() < self.end:
            day -= timedelta(days=1)
        return self._at(day, self.start)


def release_time(now: datetime, *, quiet: QuietHours | None, start_at: datetime) -> datetime:
    """When a message written at ``now`` (confirmation, cancellation) may go out."""
    if quiet is None or not quiet.contains(now):
        return now
    end = quiet.end_after(now)
    return end if end < start_at else now


def reminder_time(
    start_at: datetime, offset_minutes: int, *, now: datetime, quiet: QuietHours | None
) -> datetime | None:
    """When the reminder ``offset_minutes`` before ``start_at`` goes out; None if never."""
    due = start_at - timedelta(minutes=offset_minutes)
    if quiet is not None and quiet.contains(due):
        later = quiet.end_after(due)
        if later <= start_at - MIN_REMINDER_LEAD:
            due = later
        else:
            due = quiet.start_before(due) - timedelta(minutes=1)
    return None if due <= now else due


def reminder_times(
    start_at: datetime, offsets: list[int], *, now: datetime, quiet: QuietHours | None
) -> dict[int, datetime]:
    """Offset → due time for each reminder worth sending; offsets landing on the same time
    (quiet hours folded them together) keep only the largest offset."""
    result: dict[int, datetime] = {}
    seen: set[datetime] = set()
    for offset in sorted({o for o in offsets if o > 0}, reverse=True):
        due = reminder_time(start_at, offset, now=now, quiet=quiet)
        if due is not None and due not in seen:
            result[offset] = due
            seen.add(due)
    return result


def fingerprint(*, start_at: datetime, department: str | None) -> str:
    """What a confirmation tells the patient, as a short stable hash (no PHI inside)."""
    text = f"{start_at.astimezone(UTC).isoformat()}|{department or ''}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]
