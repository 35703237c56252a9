"""JSON shapes of ``/api/reports/...`` and the columns every report shows.

A report's columns are declared once (:class:`Column`): the page's table, its CSV and its
JSON keys come from the same list, so the CSV has exactly the rows and columns on screen.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from openvisit.i18n import N_

ReportName = Literal["usage", "quality", "messages", "funnel", "devicetests"]
REPORT_NAMES: tuple[ReportName, ...] = ("usage", "quality", "messages", "funnel", "devicetests")

#: Value kinds: how a raw value is shown on screen and in the CSV.
Kind = Literal["text", "time", "date", "seconds", "int", "number", "yesno", "percent"]


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    kind: Kind = "text"


USAGE_COLUMNS: tuple[Column, ...] = (
    Column("date", N_("Date"), "date"),
    Column("department", N_("Department")),
    Column("staff", N_("Staff (EHR user ids)")),
    Column("scheduled_at", N_("Scheduled start"), "time"),
    Column("started_at", N_("Actual start"), "time"),
    Column("duration_s", N_("Duration"), "seconds"),
    Column("n_provider", N_("Clinicians"), "int"),
    Column("n_patient", N_("Patients"), "int"),
    Column("n_interpreter", N_("Interpreters"), "int"),
    Column("n_guest", N_("Guests"), "int"),
    Column("lobby_wait_s", N_("Lobby wait"), "seconds"),
    Column("ended_by", N_("Ended by")),
    Column("month_no", N_("Visit no. in month"), "int"),
    Column("allocation", N_("Allocation")),
    Column("endpoint", N_("EHR endpoint")),
    Column("environment", N_("Environment")),
)
PATIENT_REFS_COLUMN = Column("patient_refs", N_("Patient references"))

QUALITY_COLUMNS: tuple[Column, ...] = (
    Column("date", N_("Date"), "date"),
    Column("department", N_("Department")),
    Column("participant", N_("Participant")),
    Column("samples", N_("Samples"), "int"),
    Column("rtt_ms_median", N_("RTT median (ms)"), "number"),
    Column("rtt_ms_p95", N_("RTT p95 (ms)"), "number"),
    Column("jitter_ms_median", N_("Jitter median (ms)"), "number"),
    Column("jitter_ms_p95", N_("Jitter p95 (ms)"), "number"),
    Column("packet_loss_pct_median", N_("Loss median (%)"), "number"),
    Column("packet_loss_pct_p95", N_("Loss p95 (%)"), "number"),
    Column("bitrate_kbps_median", N_("Bitrate median (kbit/s)"), "number"),
    Column("bitrate_kbps_p95", N_("Bitrate p95 (kbit/s)"), "number"),
    Column("resolution", N_("Resolution (median)")),
    Column("media_path", N_("Media path")),
    Column("poor", N_("Poor quality"), "yesno"),
)

MESSAGE_COLUMNS: tuple[Column, ...] = (
    Column("created_at", N_("Time"), "time"),
    Column("template", N_("Template")),
    Column("channel", N_("Channel")),
    Column("recipient_masked", N_("Recipient (masked)")),
    Column("provider", N_("Provider")),
    Column("status", N_("Status")),
    Column("error", N_("Error")),
    Column("receipt_at", N_("Delivery receipt"), "time"),
    Column("language", N_("Language")),
    Column("department", N_("Department")),
)

FUNNEL_COLUMNS: tuple[Column, ...] = (
    Column("key", N_("Group")),
    Column("appointments", N_("Appointments with a link"), "int"),
    Column("link_sent", N_("Link sent"), "int"),
    Column("link_opened", N_("Link opened"), "int"),
    Column("device_ready", N_("Device check passed"), "int"),
    Column("joined", N_("Joined the lobby"), "int"),
    Column("admitted", N_("Admitted"), "int"),
    Column("connected_1min", N_("Connected ≥ 1 minute"), "int"),
    Column("no_show", N_("No-shows"), "int"),
)

#: One row per device test a patient ran from the clinic's device-test link (issue 15 item 11:
#: "The clinic can see this result"). Outcomes only: nothing identifies the person.
DEVICETEST_COLUMNS: tuple[Column, ...] = (
    Column("at", N_("Time"), "time"),
    Column("endpoint", N_("EHR endpoint")),
    Column("environment", N_("Environment")),
    Column("passed", N_("All passed"), "yesno"),
    Column("camera", N_("Camera")),
    Column("microphone", N_("Microphone")),
    Column("speaker", N_("Speaker")),
    Column("call", N_("Test call")),
    Column("rtt_ms", N_("Round trip (ms)"), "number"),
    Column("packet_loss_pct", N_("Packet loss (%)"), "number"),
    Column("resolution", N_("Video received")),
    Column("candidate_type", N_("Connection")),
    Column("language", N_("Language")),
)

Cell = str | int | float | bool | datetime | None


class Filters(BaseModel):
    """The filters a report was run with (dates are the organisation's local days)."""

    since: date
    until: date
    department: str | None = None
    staff: str | None = None
    endpoint: str | None = None
    environment: str | None = None


class Table(BaseModel):
    """A table: its column keys and labels, and rows as objects keyed by column."""

    columns: list[dict[str, str]] = Field(
        description="Each column's key and label, in the order of the page and the CSV.")
    rows: list[dict[str, Cell]]


class UsageSummary(BaseModel):
    visits: int
    duration_s: float
    avg_lobby_wait_s: float | None
    over_allocation: int
    allocation_limit: int | None = Field(description="Visits per calendar month, or null.")


class UsageReport(BaseModel):
    report: Literal["usage"] = "usage"
    filters: Filters
    rows: Table
    totals: UsageSummary
    by_department: Table
    by_staff: Table


class QualitySummary(BaseModel):
    visits: int = Field(description="Visits with at least one quality sample.")
    poor_visits: int
    poor_share: float | None = Field(description="poor_visits / visits (0–1).")
    participants: int
    poor_participants: int
    thresholds: dict[str, float] = Field(
        description="A participant is poor when a p95 is above one of these.")


class QualityReport(BaseModel):
    report: Literal["quality"] = "quality"
    filters: Filters
    rows: Table
    summary: QualitySummary
    per_day: Table


class MessageReport(BaseModel):
    report: Literal["messages"] = "messages"
    filters: Filters
    rows: Table
    by_channel: Table
    delivery_rate: float | None = Field(
        description="Delivered / (delivered + undelivered + failed), 0–1.")
    opt_outs: int


class FunnelReport(BaseModel):
    report: Literal["funnel"] = "funnel"
    filters: Filters
    total: Table
    by_department: Table
    by_language: Table


#: The exact types of :data:`Cell`: a value of one of them is what validation would keep.
_CELL_TYPES = frozenset({str, int, float, bool, datetime, type(None)})


def table(columns: tuple[Column, ...], rows: list[dict[str, Any]]) -> Table:
    """The rows' cells of ``columns``. Cells that all have an exact :data:`Cell` type (what
    the services build) skip pydantic's per-cell union validation, which validation would
    leave unchanged and which took 0.19 s of a month's usage page (8,500 rows of 17 cells);
    anything else is validated."""
    heads = [{"key": c.key, "label": c.label} for c in columns]
    cells = [{c.key: r.get(c.key) for c in columns} for r in rows]
    if all(type(v) in _CELL_TYPES for row in cells for v in row.values()):
        return Table.model_construct(columns=heads, rows=cells)
    return Table(columns=heads, rows=cells)


class DeviceTestReport(BaseModel):
    report: Literal["devicetests"] = "devicetests"
    filters: Filters
    rows: Table
    tests: int = Field(description="Device tests run in the range.")
    passed: int = Field(description="Of those, how many passed every check.")
