"""Patient references at rest: hashed to match, sealed to read back, rotated with the keys."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from openvisit.context import AppContext
from openvisit.crypto import FieldCipher, generate_key
from openvisit.models import Appointment, Participant, Visit
from openvisit.privacy.refs import PatientRefs
from openvisit.visits import service as visits
from tests.support.backend import TEST_KEYS, subprocess_env
from tests.support.procs import Proc
from tests.visits.support import make_visit, seed_org


@dataclass
class Row:
    patient_ref_hash: str | None = None
    patient_ref_enc: str | None = None


OLD, NEW = generate_key(), generate_key()


#: "|" is in no base64 or hex text: a hit would be a real leak, not chance.
@given(ref=st.text(max_size=240).map(lambda t: f"AUTH|MRN-{t}").filter(
    lambda r: r.strip() == r))
def test_it_opens_what_it_sealed_and_hashes_it_the_same_way_each_time(ref: str) -> None:
    refs = PatientRefs(FieldCipher([OLD]))
    row = Row()
    refs.assign(row, ref)
    assert row.patient_ref_enc is not None and ref not in row.patient_ref_enc
    assert row.patient_ref_hash == refs.hash(ref) and ref not in row.patient_ref_hash
    assert refs.read(row) == ref


def test_it_keeps_one_ciphertext_for_the_same_reference() -> None:
    refs = PatientRefs(FieldCipher([OLD]))
    row = Row()
    refs.assign(row, "EPI|E1")
    first = row.patient_ref_enc
    refs.assign(row, " EPI|E1 ")  # the feed sends it again, padded
    assert row.patient_ref_enc == first
    refs.assign(row, None)  # a message without PID-3 leaves what is there
    assert refs.read(row) == "EPI|E1"
    refs.assign(row, "EPI|E2")
    assert refs.read(row) == "EPI|E2"


def test_it_matches_old_hashes_after_a_new_key_and_rekeys_them() -> None:
    before = PatientRefs(FieldCipher([OLD]))
    row = Row(**before.columns("Patient/7"))
    after = PatientRefs(FieldCipher([NEW, OLD]))
    assert row.patient_ref_hash in after.hashes("Patient/7")
    assert row.patient_ref_hash != after.hash("Patient/7")
    assert not after.is_current(row)
    assert after.rekey(row)
    assert after.is_current(row) and row.patient_ref_hash == after.hash("Patient/7")
    assert PatientRefs(FieldCipher([NEW])).read(row) == "Patient/7"  # the old key can go


def test_it_opens_sealed_values_inside_a_write_back_payload() -> None:
    refs = PatientRefs(FieldCipher([OLD]))
    sealed = refs.seal("Patient/9").enc
    payload = {"at": "2026-12-04T10:00:00+00:00",
               "appointment": {"id": "A1", "patient_enc": sealed},
               "agent": {"type": "Patient", "value_enc": sealed}, "external_id_enc": None}
    assert refs.open_payload(payload) == {
        "at": "2026-12-04T10:00:00+00:00", "appointment": {"id": "A1", "patient": "Patient/9"},
        "agent": {"type": "Patient", "value": "Patient/9"}, "external_id": None}


async def test_no_patient_reference_is_stored_in_clear(ctx: AppContext) -> None:
    seeded = await seed_org(ctx)
    links = await make_visit(ctx, seeded, patients=2)
    async with ctx.db.read() as session:
        appointments = (await session.scalars(select(Appointment))).all()
        seats = (await session.scalars(select(Participant).where(
            Participant.visit_id == links.visit_id, Participant.role == "patient"))).all()
        assert [ctx.refs.read(a) for a in appointments] == ["Patient/1"]
        assert sorted(ctx.refs.read(s) or "" for s in seats) == ["Patient/1", "Patient/2"]
        for row in (*appointments, *seats):
            assert row.patient_ref_hash and row.patient_ref_enc
            assert "Patient/" not in row.patient_ref_hash + row.patient_ref_enc


async def test_the_rekey_command_rewrites_every_reference_under_the_newest_key(
    ctx: AppContext, db_url: str, tmp_path: Path,
) -> None:
    seeded = await seed_org(ctx)
    links = await make_visit(ctx, seeded, patients=2)
    newest = generate_key()
    keys = ",".join([newest, *TEST_KEYS])
    run = Proc(["privacy", "rekey"], env=subprocess_env(
        db_url, OPENVISIT_FIELD_ENCRYPTION_KEYS=keys), log=tmp_path / "rekey.log")
    assert run.popen.wait(timeout=60) == 0, run.tail()
    run.stop()
    assert "re-keyed 3 rows" in run.log.read_text()  # the appointment and two seats
    only_newest = PatientRefs(FieldCipher([newest]))
    async with ctx.db.read() as session:
        rows = [*(await session.scalars(select(Appointment))).all(),
                *(await session.scalars(select(Participant).where(
                    Participant.role == "patient"))).all()]
        assert all(only_newest.is_current(r) for r in rows)
        assert sorted(only_newest.read(r) or "" for r in rows) == [
            "Patient/1", "Patient/1", "Patient/2"]
    # A deployment on the new keys still finds the same seat for the same patient.
    rotated = AppContext.create(ctx.settings.model_copy(update={
        "field_encryption_keys": keys}))
    try:
        async with rotated.transaction() as session:
            visit = await session.get(Visit, links.visit_id)
            assert visit is not None
            again = await visits.seat_link(session, app=rotated, visit=visit, role="patient",
                                           patient_ref="Patient/2")
        assert again == links.extra["patient2"]
    finally:
        await rotated.close()
