"""Launch benchmark: server time from SMART callback to visit page, and EHR round trips.

Runs the sandbox EHR and an `openvisit web` process (SQLite, fresh directory), performs N
provider EHR launches and reads each callback's `Server-Timing` header (OpenVisit's own time
vs the time spent waiting for the EHR). The named peer is SMART's own Python client,
`fhirclient`, doing the same callback work against the same sandbox in the same run: token
exchange (handle_callback) + reading the Appointment. Ratio = OpenVisit callback wall time /
fhirclient callback wall time (lower is better; OpenVisit also validates the id_token, writes
the appointment, the visit and the seat).

    .venv/bin/python bench/launch.py [--launches 200]
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urljoin

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.launch.stack import pick_user, start_stack
from tests.support.backend import subprocess_env

APPOINTMENTS: list[str] = []


def load_schedule(stack) -> None:  # type: ignore[no-untyped-def]
    """prac-1's appointments, read off the sandbox's schedule page."""
    page = httpx.get(f"{stack.sandbox}/ehr/schedule?practitioner=prac-1").text
    APPOINTMENTS[:] = sorted(set(re.findall(r'data-appointment="(appt-\d+)"', page)))


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def openvisit_launches(stack, n: int) -> tuple[list[float], list[float], list[float], list[int]]:  # type: ignore[no-untyped-def]
    wall, app, ehr, trips = [], [], [], []
    with httpx.Client(timeout=30) as http:
        for i in range(n):
            appt = APPOINTMENTS[i % len(APPOINTMENTS)]
            pressed = http.post(
                f"{stack.sandbox}/ehr/launch", data={"practitioner": "prac-1", "appointment": appt}
            )
            begun = http.get(pressed.headers["location"])
            page = http.get(begun.headers["location"])
            callback = pick_user(http, page).headers["location"]
            started = time.perf_counter()
            done = http.get(callback)
            wall.append((time.perf_counter() - started) * 1000)
            assert done.status_code == 303 and "/v/" in done.headers["location"], done.text[:300]
            timing = done.headers["server-timing"]
            ehr.append(float(re.search(r"ehr;dur=([\d.]+)", timing).group(1)))  # type: ignore[union-attr]
            app.append(float(re.search(r"app;dur=([\d.]+)", timing).group(1)))  # type: ignore[union-attr]
            trips.append(int(re.search(r'desc="(\d+) calls"', timing).group(1)))  # type: ignore[union-attr]
    return wall, app, ehr, trips


def fhirclient_launches(stack, n: int) -> list[float]:  # type: ignore[no-untyped-def]
    from fhirclient import client

    redirect = "http://127.0.0.1:1/fhirclient-callback"
    httpx.post(
        f"{stack.sandbox}/admin/clients",
        json={
            "client_id": "fhirclient-bench",
            "client_secret": "bench-secret-" + "z" * 20,
            "redirect_uris": [redirect],
            "name": "fhirclient bench",
        },
    ).raise_for_status()
    wall = []
    with httpx.Client(timeout=30) as http:
        for i in range(n):
            appt = APPOINTMENTS[i % len(APPOINTMENTS)]
            pressed = http.post(
                f"{stack.sandbox}/ehr/launch", data={"practitioner": "prac-1", "appointment": appt}
            )
            launch = re.search(r"launch=([^&]+)", pressed.headers["location"]).group(1)  # type: ignore[union-attr]
            smart = client.FHIRClient(
                settings={
                    "app_id": "fhirclient-bench",
                    "app_secret": "bench-secret-" + "z" * 20,
                    "api_base": stack.fhir,
                    "redirect_uri": redirect,
                    "launch_token": launch,
                    "scope": "launch openid fhirUser user/Appointment.rs",
                }
            )
            page = http.get(smart.authorize_url)
            callback = urljoin(str(page.url), pick_user(http, page).headers["location"])
            started = time.perf_counter()
            smart.handle_callback(callback)
            smart.server.request_json(f"Appointment/{appt}")
            wall.append((time.perf_counter() - started) * 1000)
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--launches", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = f"sqlite+aiosqlite:///{tmp}/bench.db"
        import asyncio

        from openvisit.db import Database
        from openvisit.migrate import upgrade_async

        async def migrate() -> None:
            database = Database(db)
            await upgrade_async(database)
            await database.dispose()

        asyncio.run(migrate())
        stack = start_stack(subprocess_env(db, OPENVISIT_LOG_LEVEL="WARNING"), Path(tmp))
        try:
            load_schedule(stack)
            openvisit_launches(stack, 5)  # warm caches (discovery, JWKS) as in steady state
            wall, app, ehr, trips = openvisit_launches(stack, args.launches)
            fhirclient_launches(stack, 5)
            peer = fhirclient_launches(stack, args.launches)
        finally:
            stack.stop()
    print(f"launches: {args.launches} (provider EHR launch, SQLite, sandbox EHR on loopback)")
    print(
        f"OpenVisit callback→visit, own time (excl. EHR): p50 {pct(app, 0.5):.1f} ms, "
        f"p95 {pct(app, 0.95):.1f} ms   (target p95 ≤ 50 ms)"
    )
    print(
        f"OpenVisit time waiting for the EHR:            p50 {pct(ehr, 0.5):.1f} ms, "
        f"p95 {pct(ehr, 0.95):.1f} ms"
    )
    print(
        f"EHR round trips per launch at the callback:    {statistics.mean(trips):.2f} "
        f"(min {min(trips)}, max {max(trips)}; token + Appointment read; discovery and JWKS "
        "cached)"
    )
    print(
        f"OpenVisit callback wall time:                  p50 {pct(wall, 0.5):.1f} ms, "
        f"p95 {pct(wall, 0.95):.1f} ms"
    )
    print(
        f"fhirclient (peer) callback + Appointment read: p50 {pct(peer, 0.5):.1f} ms, "
        f"p95 {pct(peer, 0.95):.1f} ms"
    )
    print(
        f"ratio OpenVisit/fhirclient (p50): {pct(wall, 0.5) / pct(peer, 0.5):.2f}x   "
        f"(p95): {pct(wall, 0.95) / pct(peer, 0.95):.2f}x"
    )


if __name__ == "__main__":
    main()
