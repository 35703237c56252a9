"""The storage floor of an SIU booking: the rows OpenVisit must commit before its AA, written
by raw asyncpg with no HL7, no ORM and no logic, in transactions of N bookings.

Per booking: the MSH-10 record with its ACK, the appointment, two encrypted contacts (sized
like Fernet tokens), three notifications (confirmation, two reminders) and their three jobs -
exactly what `openvisit mllp` writes for the benchmark's S12 messages. What this costs
PostgreSQL is a lower bound for any listener that commits before it acknowledges, whatever
language it is written in; bench/hl7_mllp.py prints it next to the listener and the peer.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
import uuid
from pathlib import Path

_INSERTS = (
    "INSERT INTO inbound_message (sender, control_id, event, ack_code, ack, received_at) "
    "VALUES ($1, $2, $3, $4, $5, $6)",
    "INSERT INTO appointment (id, organisation_id, endpoint_id, ehr_appointment_id, status, "
    "start_at, end_at, department, provider_ehr_id, encounter_id, language, patient_ref, "
    "source, created_at, updated_at) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
    "INSERT INTO contact (id, appointment_id, kind, value_enc, purge_at, created_at) "
    "VALUES ($1, $2, $3, $4, $5, $6)",
    "INSERT INTO notification (appointment_id, job_key, purpose, message, fingerprint, "
    "start_at, offset_minutes, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
    "ON CONFLICT (job_key) DO NOTHING",
    "INSERT INTO job (kind, payload, idempotency_key, state, due_at, attempts, max_attempts, "
    "created_at) VALUES ($1, $2::json, $3, $4, $5, $6, $7, $8) "
    "ON CONFLICT (idempotency_key) DO NOTHING",
)

#: What a booking plans with reminders at 24 h and 1 h: (purpose, offset in minutes).
_PLANNED = (("reminder", 1440), ("reminder", 60), ("confirmation", None))


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_cpu() -> float:
    """CPU seconds of every process named postgres (the database's share of the work)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    total += cpu_seconds(int(entry.name))
            except OSError:
                continue
    return total


async def storage_floor(url: str, *, batches: list[int], messages: int = 2000) -> list[str]:
    """One line per batch size: bookings/s, PostgreSQL CPU and writer CPU per booking."""
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        org, endpoint = await conn.fetchrow(
            "SELECT organisation_id, id FROM ehr_endpoint ORDER BY created_at LIMIT 1"
        )
        now = dt.datetime.now(dt.UTC)
        start = now + dt.timedelta(days=3)
        ack = b"MSH|^~\\&|OPENVISIT|TELEHEALTH|EPIC|EPICADT|20261123||ACK^S12|OV1|P|2.3\rMSA|AA|C\r"
        counter = 0

        async def write(k: int) -> None:
            nonlocal counter
            rows: tuple[list[tuple[object, ...]], ...] = ([], [], [], [], [])
            for _ in range(k):
                counter += 1
                appointment = uuid.uuid4()
                rows[0].append(("FLOOR", f"C{counter}", "S12", "AA", ack, now))
                rows[1].append((
                    appointment, org, endpoint, f"FLOOR-{counter}", "booked", start,
                    start + dt.timedelta(minutes=30), "10501", "1001", "4000123456", "en",
                    "EPI|E1234567", "hl7", now, now,
                ))
                rows[2].extend(
                    (uuid.uuid4(), appointment, kind, "g" * size, start, now)
                    for kind, size in (("sms", 120), ("email", 140))
                )
                for purpose, offset in _PLANNED:
                    key = f"notify:{appointment}:{purpose}:{offset}"
                    rows[3].append(
                        (appointment, key, purpose, "booked", "0" * 16, start, offset, now)
                    )
                    payload = json.dumps({"appointment_id": str(appointment), "message": "booked"})
                    rows[4].append(("notify.send", payload, key, "pending", now, 0, 8, now))
            async with conn.transaction():
                for statement, values in zip(_INSERTS, rows, strict=True):
                    await conn.executemany(statement, values)

        lines = []
        for k in batches:
            for _ in range(3):
                await write(k)
            rounds = max(10, messages // k)
            db0, me0, t0 = postgres_cpu(), time.process_time(), time.perf_counter()
            for _ in range(rounds):
                await write(k)
            wall, n = time.perf_counter() - t0, rounds * k
            lines.append(
                f"{k:3} bookings per transaction: {n / wall:7.0f} bookings/s; CPU per booking: "
                f"PostgreSQL {(postgres_cpu() - db0) / n * 1000:.2f} ms, "
                f"writer {(time.process_time() - me0) / n * 1000:.2f} ms"
            )
        return lines
    finally:
        await conn.close()
