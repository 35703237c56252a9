"""Every column of every report, on the page's JSON and in its CSV, for the March clinic of
``conftest.py`` (built through the real feed hook, notify jobs, visit pages and lobby)."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from sqlalchemy import select

from openvisit.context import AppContext
from openvisit.models import AuditLog
from tests.portal.conftest import Browser
from tests.reports.conftest import RANGE, March

BrowserFactory = Callable[[str], Awaitable[Browser]]

USAGE_ROWS = [
    {"date": "2030-03-11", "department": "Cardiology", "staff": "Practitioner/7",
     "scheduled_at": "2030-03-11T10:00:00+01:00", "started_at": "2030-03-11T10:00:00+01:00",
     "duration_s": 1260.0, "n_provider": 1, "n_patient": 1, "n_interpreter": 0, "n_guest": 0,
     "lobby_wait_s": 240.0, "ended_by": "provider", "month_no": 1, "allocation": "within",
     "endpoint": "", "environment": "test"},
    {"date": "2030-03-12", "department": "Dermatology", "staff": "Practitioner/8",
     "scheduled_at": "2030-03-12T11:00:00+01:00", "started_at": "2030-03-12T11:00:30+01:00",
     "duration_s": 120.0, "n_provider": 1, "n_patient": 1, "n_interpreter": 0, "n_guest": 0,
     "lobby_wait_s": 90.0, "ended_by": "provider", "month_no": 2, "allocation": "over",
     "endpoint": "", "environment": "test"},
]
USAGE_CSV = [
    ["Date", "Department", "Staff (EHR user ids)", "Scheduled start", "Actual start",
     "Duration", "Clinicians", "Patients", "Interpreters", "Guests", "Lobby wait", "Ended by",
     "Visit no. in month", "Allocation", "EHR endpoint", "Environment"],
    ["2030-03-11", "Cardiology", "Practitioner/7", "2030-03-11 10:00", "2030-03-11 10:00",
     "21:00", "1", "1", "0", "0", "4:00", "provider", "1", "within", "", "test"],
    ["2030-03-12", "Dermatology", "Practitioner/8", "2030-03-12 11:00", "2030-03-12 11:00",
     "2:00", "1", "1", "0", "0", "1:30", "provider", "2", "over", "", "test"],
]
PATIENT = {"date": "2030-03-11", "department": "Cardiology", "participant": "Patient",
           "samples": 3, "rtt_ms_median": 100.0, "rtt_ms_p95": 150.0,
           "jitter_ms_median": 10.0, "jitter_ms_p95": 20.0, "packet_loss_pct_median": 1.0,
           "packet_loss_pct_p95": 2.0, "bitrate_kbps_median": 1000.0,
           "bitrate_kbps_p95": 1200.0, "resolution": "640×480", "media_path": "host",
           "poor": False}
CLINICIAN = {**{k: None for k in PATIENT}, "date": "2030-03-11", "department": "Cardiology",
             "participant": "Clinician", "samples": 2, "rtt_ms_median": 500.0,
             "rtt_ms_p95": 700.0, "media_path": "relay", "poor": True}
MESSAGES = [
    {"created_at": "2030-03-11T09:00:00+01:00", "template": "booked", "channel": "sms",
     "recipient_masked": "+42*******456", "provider": "outbox", "status": "delivered",
     "error": None, "receipt_at": "2030-03-11T09:03:00+01:00", "language": "en",
     "department": "Cardiology"},
    {"created_at": "2030-03-11T09:01:00+01:00", "template": "booked", "channel": "email",
     "recipient_masked": "p***@example.org", "provider": "outbox", "status": "sent",
     "error": None, "receipt_at": None, "language": "es", "department": "Dermatology"},
    {"created_at": "2030-03-11T09:02:00+01:00", "template": "booked", "channel": "sms",
     "recipient_masked": "+42*******888", "provider": "outbox", "status": "sent",
     "error": None, "receipt_at": None, "language": "en", "department": "Cardiology"},
]
STEPS = ("appointments", "link_sent", "link_opened", "device_ready", "joined", "admitted",
         "connected_1min", "no_show")


def funnel(key: str, *counts: int) -> dict[str, Any]:
    return {"key": key, **dict(zip(STEPS, counts, strict=True))}


def rows_of(report: dict[str, Any], table: str = "rows") -> list[dict[str, Any]]:
    return list(report[table]["rows"])


async def csv_of(browser: Browser, name: str, **params: str) -> list[list[str]]:
    response = await browser.get(f"/portal/reports/{name}.csv", params={**RANGE, **params})
    assert response.status_code == 200, response.text[:300]
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.content.startswith("\ufeff".encode())  # BOM for spreadsheets
    assert b"\r\n" in response.content  # RFC 4180 line ends
    return list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"), newline="")))


async def test_it_reports_usage_against_the_monthly_allocation(browser: BrowserFactory,
                                                               march: March) -> None:
    rita = await browser("rita")
    report = (await rita.get("/api/reports/usage", params=RANGE)).json()
    assert rows_of(report) == USAGE_ROWS
    assert report["totals"] == {"visits": 2, "duration_s": 1380.0, "avg_lobby_wait_s": 165.0,
                                "over_allocation": 1, "allocation_limit": 1}
    assert rows_of(report, "by_department") == [
        {"key": "Cardiology", "visits": 1, "duration_s": 1260.0, "avg_wait_s": 240.0,
         "over_allocation": 0},
        {"key": "Dermatology", "visits": 1, "duration_s": 120.0, "avg_wait_s": 90.0,
         "over_allocation": 1}]
    assert [r["key"] for r in rows_of(report, "by_staff")] == ["Practitioner/7",
                                                               "Practitioner/8"]
    assert await csv_of(rita, "usage") == USAGE_CSV


async def test_it_filters_every_report_but_counts_the_allocation_for_the_organisation(
        browser: BrowserFactory, march: March) -> None:
    rita = await browser("rita")
    derm = (await rita.get("/api/reports/usage",
                           params={**RANGE, "department": "Dermatology"})).json()
    assert rows_of(derm) == [USAGE_ROWS[1]]  # still the month's second visit: over
    staff = (await rita.get("/api/reports/usage",
                            params={**RANGE, "staff": "Practitioner/7"})).json()
    assert rows_of(staff) == [USAGE_ROWS[0]]
    assert [r["key"] for r in rows_of(staff, "by_staff")] == ["Practitioner/7"]
    prod = {**RANGE, "environment": "production"}
    for name, table in (("usage", "rows"), ("quality", "rows"), ("messages", "rows"),
                        ("funnel", "by_department")):
        assert rows_of((await rita.get(f"/api/reports/{name}", params=prod)).json(),
                       table) == []
    endpoint = str(march.site.endpoint_id)
    msgs = (await rita.get("/api/reports/messages",
                           params={**RANGE, "endpoint": endpoint,
                                   "department": "Cardiology"})).json()
    assert rows_of(msgs) == [MESSAGES[0], MESSAGES[2]]
    day = (await rita.get("/api/reports/usage",
                          params={"since": "2030-03-12", "until": "2030-03-12"})).json()
    assert [r["month_no"] for r in rows_of(day)] == [2]


async def test_it_reports_call_quality_per_participant(browser: BrowserFactory,
                                                       march: March) -> None:
    rita = await browser("rita")
    report = (await rita.get("/api/reports/quality", params=RANGE)).json()
    assert rows_of(report) == [PATIENT, CLINICIAN]
    assert report["summary"] == {
        "visits": 1, "poor_visits": 1, "poor_share": 1.0, "participants": 2,
        "poor_participants": 1,
        "thresholds": {"rtt_ms": 400.0, "jitter_ms": 50.0, "packet_loss_pct": 5.0}}
    assert rows_of(report, "per_day") == [{"day": "2030-03-11", "visits": 1,
                                           "poor_visits": 1}]
    assert await csv_of(rita, "quality") == [
        ["Date", "Department", "Participant", "Samples", "RTT median (ms)", "RTT p95 (ms)",
         "Jitter median (ms)", "Jitter p95 (ms)", "Loss median (%)", "Loss p95 (%)",
         "Bitrate median (kbit/s)", "Bitrate p95 (kbit/s)", "Resolution (median)",
         "Media path", "Poor quality"],
        ["2030-03-11", "Cardiology", "Patient", "3", "100", "150", "10", "20", "1", "2",
         "1000", "1200", "640×480", "host", "no"],
        ["2030-03-11", "Cardiology", "Clinician", "2", "500", "700", "", "", "", "", "", "",
         "", "relay", "yes"]]


async def test_it_reports_delivery_with_masked_recipients(browser: BrowserFactory,
                                                          march: March) -> None:
    rita = await browser("rita")
    report = (await rita.get("/api/reports/messages", params=RANGE)).json()
    assert rows_of(report) == MESSAGES
    assert rows_of(report, "by_channel") == [
        {"channel": "email", "messages": 1, "sent": 1, "delivered": 0, "failed": 0,
         "suppressed": 0, "receipts": 0},
        {"channel": "sms", "messages": 2, "sent": 2, "delivered": 1, "failed": 0,
         "suppressed": 0, "receipts": 1}]
    assert report["delivery_rate"] == 1.0 and report["opt_outs"] == 1
    table = await csv_of(rita, "messages")
    assert table == [
        ["Time", "Template", "Channel", "Recipient (masked)", "Provider", "Status", "Error",
         "Delivery receipt", "Language", "Department"],
        ["2030-03-11 09:00", "booked", "sms", "+42*******456", "outbox", "delivered", "",
         "2030-03-11 09:03", "en", "Cardiology"],
        ["2030-03-11 09:01", "booked", "email", "p***@example.org", "outbox", "sent", "", "",
         "es", "Dermatology"],
        ["2030-03-11 09:02", "booked", "sms", "+42*******888", "outbox", "sent", "", "", "en",
         "Cardiology"]]
    text = repr(report) + repr(table)
    assert "601123456" not in text and "pat.example" not in text


async def test_it_shows_where_patients_drop_off(browser: BrowserFactory, march: March) -> None:
    rita = await browser("rita")
    report = (await rita.get("/api/reports/funnel", params=RANGE)).json()
    assert rows_of(report, "total") == [funnel("All", 3, 3, 2, 1, 2, 2, 1, 1)]
    assert rows_of(report, "by_department") == [funnel("Cardiology", 2, 2, 1, 1, 1, 1, 1, 1),
                                                funnel("Dermatology", 1, 1, 1, 0, 1, 1, 0, 0)]
    assert rows_of(report, "by_language") == [funnel("en", 2, 2, 1, 1, 1, 1, 1, 1),
                                              funnel("es", 1, 1, 1, 0, 1, 1, 0, 0)]
    header = ["Group", "Appointments with a link", "Link sent", "Link opened",
              "Device check passed", "Joined the lobby", "Admitted", "Connected ≥ 1 minute",
              "No-shows"]
    assert await csv_of(rita, "funnel") == [
        header, ["All", "3", "3", "2", "1", "2", "2", "1", "1"],
        ["Department: Cardiology", "2", "2", "1", "1", "1", "1", "1", "1"],
        ["Department: Dermatology", "1", "1", "1", "0", "1", "1", "0", "0"],
        ["Language: en", "2", "2", "1", "1", "1", "1", "1", "1"],
        ["Language: es", "1", "1", "1", "0", "1", "1", "0", "0"]]


async def test_it_audits_every_csv_download(browser: BrowserFactory, march: March,
                                            ctx: AppContext) -> None:
    rita = await browser("rita")
    await csv_of(rita, "usage", department="Cardiology")
    await csv_of(rita, "messages")
    async with ctx.db.read() as session:
        entries = [(e.object_id, (e.after or {})["filters"]["department"], e.organisation_id,
                    e.actor.split(":")[0]) for e in (await session.scalars(
                        select(AuditLog).where(AuditLog.action == "report.csv_downloaded")
                        .order_by(AuditLog.id))).all()]
    org = march.site.organisation_id
    assert entries == [("usage", "Cardiology", org, "staff"), ("messages", None, org, "staff")]


async def test_it_shows_patient_references_only_when_the_admin_turns_them_on(
        browser: BrowserFactory, march: March) -> None:
    rita, ada = await browser("rita"), await browser("ada")
    before = (await rita.get("/api/reports/usage", params=RANGE)).json()
    assert "patient_refs" not in before["rows"]["rows"][0]
    assert "Patient/p1" not in (await rita.get("/portal/reports/usage", params=RANGE)).text
    refused = await rita.post("/portal/reports/settings", {"show_patient_refs": "on"})
    assert refused.status_code == 403
    on = await ada.post("/portal/reports/settings", {"show_patient_refs": "on",
                                                    "back": "/portal/reports/usage"})
    assert on.status_code == 303
    after = (await rita.get("/api/reports/usage", params=RANGE)).json()
    assert [r["patient_refs"] for r in after["rows"]["rows"]] == ["Patient/p1", "Patient/p1"]
    table = await csv_of(rita, "usage")
    assert table[0][-1] == "Patient references" and table[1][-1] == "Patient/p1"


async def test_it_lets_reporters_and_their_api_tokens_in_and_nobody_else(
        browser: BrowserFactory, march: March, web: Any) -> None:
    ada, otto = await browser("ada"), await browser("otto")
    made = await ada.api("POST", "/api/portal/api-tokens",
                         json={"name": "BI", "roles": ["reporter"]})
    assert made.status_code == 201, made.text
    bearer = {"Authorization": f"Bearer {made.json()['token']}"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=web),
                                 base_url="http://testserver") as anonymous:
        by_token = await anonymous.get("/api/reports/usage", params=RANGE, headers=bearer)
        assert by_token.status_code == 200 and rows_of(by_token.json()) == USAGE_ROWS
        csv_by_token = await anonymous.get("/api/reports/funnel.csv", params=RANGE,
                                           headers=bearer)
        assert csv_by_token.status_code == 200
        assert csv_by_token.text.lstrip("\ufeff").startswith("Group,")
        assert (await anonymous.get("/api/reports/usage")).status_code == 401
    for name in ("usage", "quality", "messages", "funnel"):
        assert (await otto.get(f"/api/reports/{name}")).status_code == 403
        assert (await otto.get(f"/portal/reports/{name}")).status_code == 403
        assert (await otto.get(f"/portal/reports/{name}.csv")).status_code == 403
    schema = (await ada.get("/api/openapi.json")).json()
    assert {"/api/reports/usage", "/api/reports/quality", "/api/reports/messages",
            "/api/reports/funnel", "/api/reports/{name}.csv"} <= set(schema["paths"])


async def test_it_explains_bad_filters(browser: BrowserFactory, march: March) -> None:
    rita = await browser("rita")
    for params, field in (({"since": "11/03/2030"}, "since"),
                          ({"since": "2030-03-10", "until": "2030-03-01"}, "until"),
                          ({"since": "2029-01-01", "until": "2030-03-01"}, "since"),
                          ({"environment": "staging"}, "environment"),
                          ({"endpoint": "not-an-id"}, "endpoint")):
        answer = await rita.get("/api/reports/usage", params=params)
        assert answer.status_code == 422, params
        assert answer.json()["error"]["details"]["field"] == field


async def test_it_renders_each_page_with_charts_and_their_tables(browser: BrowserFactory,
                                                                 march: March) -> None:
    rita = await browser("rita")
    for name, chart_titles in (("usage", ["Visits per day, by department",
                                          "Lobby wait (first patient join to admit)"]),
                               ("quality", ["Visits with good and poor call quality"]),
                               ("messages", []), ("funnel", ["Where patients are lost"])):
        page = await rita.get(f"/portal/reports/{name}", params=RANGE)
        assert page.status_code == 200, page.text[:300]
        assert page.text.count('<svg class="chart"') == len(chart_titles)
        for title in chart_titles:
            assert f">{title}" in page.text
        assert page.text.count("The numbers behind this chart") == len(chart_titles)
        assert f'href="/portal/reports/{name}.csv?since=2030-03-01&amp;until=2030-03-31"' \
            in page.text
        # Nothing loaded from another host (charts are drawn here; no CDN).
        hosts = set(re.findall(r'(?:src|href)="(?:https?:)?//([^/"]+)', page.text))
        assert hosts <= {"testserver"}, hosts
    usage = (await rita.get("/portal/reports/usage", params=RANGE)).text
    assert "<td>21:00</td>" in usage and "<td>over</td>" in usage
    # The tabs keep the filters; the portal's navigation links to the reports.
    assert ('href="/portal/reports/quality?since=2030-03-01&amp;until=2030-03-31"'
            in usage)
    assert '<a href="/portal/reports/usage" aria-current="page">Reports</a>' in usage
