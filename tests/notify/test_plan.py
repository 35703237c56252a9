"""Quiet hours and reminder times as pure functions (zones, midnight, daylight saving)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from openvisit.notify.plan import QuietHours, fingerprint, release_time, reminder_times

QUIET = QuietHours.parse("21:00", "08:00", tz="Europe/Prague")


def test_it_reads_quiet_hours_and_ignores_nonsense() -> None:
    assert QUIET is not None and QUIET.overnight
    assert QuietHours.parse(None, "08:00", tz="UTC") is None
    assert QuietHours.parse("8", "8", tz="UTC") is None
    assert QuietHours.parse("xx", "08:00", tz="UTC") is None
    assert QuietHours.parse("12:00", "13:00", tz="No/Such_Zone") is not None  # falls back to UTC


def test_it_knows_when_quiet_hours_cover_a_moment() -> None:
    assert QUIET is not None
    assert QUIET.contains(datetime(2030, 1, 10, 20, 30, tzinfo=UTC))  # 21:30 Prague
    assert QUIET.contains(datetime(2030, 1, 10, 6, 59, tzinfo=UTC))  # 07:59 Prague
    assert not QUIET.contains(datetime(2030, 1, 10, 7, 0, tzinfo=UTC))  # 08:00 Prague
    assert QUIET.end_after(datetime(2030, 1, 10, 22, 0, tzinfo=UTC)) == datetime(
        2030, 1, 11, 7, 0, tzinfo=UTC)


def test_it_follows_daylight_saving_time() -> None:
    assert QUIET is not None
    # The night of 30/31 March 2030: Prague moves from UTC+1 to UTC+2.
    assert QUIET.end_after(datetime(2030, 3, 30, 22, 0, tzinfo=UTC)) == datetime(
        2030, 3, 31, 6, 0, tzinfo=UTC)


def test_it_releases_a_message_at_the_end_of_quiet_hours_unless_too_late() -> None:
    now = datetime(2030, 1, 10, 22, 0, tzinfo=UTC)  # 23:00 Prague
    morning = datetime(2030, 1, 11, 7, 0, tzinfo=UTC)
    assert release_time(now, quiet=QUIET, start_at=now + timedelta(days=2)) == morning
    assert release_time(now, quiet=QUIET, start_at=now + timedelta(hours=3)) == now
    assert release_time(now, quiet=None, start_at=now + timedelta(days=2)) == now


def test_it_folds_reminders_that_quiet_hours_push_onto_the_same_time() -> None:
    start = datetime(2030, 1, 11, 6, 30, tzinfo=UTC)  # 07:30 Prague
    now = datetime(2030, 1, 9, 12, 0, tzinfo=UTC)
    times = reminder_times(start, [60, 120, 1440, 0, -5], now=now, quiet=QUIET)
    # 60 and 120 both fall in quiet hours whose end is too late: both move to 20:59 the
    # evening before, so only the larger offset is kept. 1440 (07:30) waits for 08:00.
    assert times == {1440: datetime(2030, 1, 10, 7, 0, tzinfo=UTC),
                     120: datetime(2030, 1, 10, 19, 59, tzinfo=UTC)}


def test_it_fingerprints_what_the_patient_is_told() -> None:
    start = datetime(2030, 1, 11, 6, 30, tzinfo=UTC)
    assert fingerprint(start_at=start, department="A") == fingerprint(start_at=start,
                                                                      department="A")
    assert fingerprint(start_at=start, department="A") != fingerprint(start_at=start,
                                                                      department="B")
