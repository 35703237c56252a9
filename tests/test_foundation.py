"""Settings, field encryption, PHI-free logging, migrations."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sqlalchemy import select

from openvisit.config import DEV_SECRET_KEY, Settings
from openvisit.context import AppContext
from openvisit.crypto import FieldCipher, KeyedHasher, generate_key, mask_email, mask_phone
from openvisit.db import Database
from openvisit.errors import ConfigurationError
from openvisit.logs import configure_logging, get_logger
from openvisit.migrate import current_revision, downgrade_async, upgrade_async
from openvisit.models import Appointment, Base, Contact, EhrEndpoint, Organisation, utcnow


def _settings(**kw: object) -> Settings:
    return Settings(_env_file=None, **kw)  # type: ignore[call-arg,arg-type]


def test_it_runs_with_no_settings_at_all_in_development() -> None:
    s = _settings()
    assert s.uses_sqlite and s.redis_url == "" and s.should_auto_migrate


@pytest.mark.parametrize("secret", [DEV_SECRET_KEY, "changeme", "short"])
def test_it_refuses_placeholder_secrets_outside_development(secret: str) -> None:
    with pytest.raises(ValueError, match="OPENVISIT_SECRET_KEY"):
        _settings(environment="production", secret_key=secret, field_encryption_keys=generate_key())


def test_it_refuses_production_without_an_encryption_key() -> None:
    with pytest.raises(ValueError, match="FIELD_ENCRYPTION_KEYS"):
        _settings(environment="production", secret_key="k" * 40)


def test_it_reads_secrets_from_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s" * 48 + "\n")
    monkeypatch.setenv("OPENVISIT_SECRET_KEY_FILE", str(secret))
    monkeypatch.setenv("OPENVISIT_ENVIRONMENT", "production")
    monkeypatch.setenv("OPENVISIT_FIELD_ENCRYPTION_KEYS", generate_key())
    assert Settings(_env_file=None).secret_key == "s" * 48  # type: ignore[call-arg]
    monkeypatch.setenv("OPENVISIT_SECRET_KEY_FILE", str(tmp_path / "missing"))
    with pytest.raises(ConfigurationError, match="cannot be read"):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_it_decrypts_old_values_after_a_key_rotation() -> None:
    old, new = generate_key(), generate_key()
    token = FieldCipher([old]).encrypt("+15555550123")
    rotated = FieldCipher([new, old])
    assert rotated.decrypt(token) == "+15555550123"
    fresh = rotated.rotate(token)
    assert FieldCipher([new]).decrypt(fresh) == "+15555550123"
    with pytest.raises(ConfigurationError, match="rotation"):
        FieldCipher([new]).decrypt(token)


async def test_it_keeps_contacts_readable_in_the_database_across_rotation(
    ctx: AppContext,
) -> None:
    cipher_then = ctx.cipher
    async with ctx.transaction() as session:
        org = Organisation(slug="rot", display_name="Rotation Clinic")
        session.add(org)
        await session.flush()
        ep = EhrEndpoint(organisation_id=org.id, fhir_base="https://ehr.test/fhir", client_id="c")
        session.add(ep)
        await session.flush()
        appt = Appointment(organisation_id=org.id, endpoint_id=ep.id, ehr_appointment_id="a1")
        session.add(appt)
        await session.flush()
        session.add(
            Contact(
                appointment_id=appt.id,
                kind="sms",
                value_enc=cipher_then.encrypt("+15555550199"),
                purge_at=utcnow(),
            )
        )
    newest = generate_key()
    ctx.cipher = FieldCipher([newest, *ctx.settings.encryption_keys()])
    async with ctx.transaction() as session:
        contact = await session.scalar(select(Contact))
        assert contact is not None
        assert "+1555" not in contact.value_enc
        assert ctx.cipher.decrypt(contact.value_enc) == "+15555550199"


def test_it_hashes_and_masks_recipients_without_keeping_them() -> None:
    hasher = KeyedHasher("k" * 40)
    assert hasher.hash("+15555550123") == hasher.hash(" +15555550123 ")
    assert hasher.hash("+15555550123") != KeyedHasher("j" * 40).hash("+15555550123")
    assert mask_phone("+420601123456") == "+42*******456"
    assert mask_email("alex.sample@example.org") == "a***@example.org"


def test_it_never_logs_phi(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(level="INFO")
    log = get_logger("test")
    log.info(
        "sms sent to +1 202 555 0143",
        phone="+12025550143",
        email="a@example.org",
        appointment_id="appt-7",
        payload="MSH|^~\\&|EPIC",
        name="Alex Sample",
    )
    logging.getLogger("stdlib").warning("mail to someone@example.org failed")
    err = capsys.readouterr().err
    for secret in (
        "202 555",
        "12025550143",
        "a@example.org",
        "someone@example.org",
        "MSH|",
        "Alex Sample",
    ):
        assert secret not in err
    assert "appt-7" in err and "[phone]" in err


async def test_it_migrates_up_and_down_and_matches_the_models(db_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    db = Database(db_url)
    try:
        assert await current_revision(db) is not None
        async with db.engine.connect() as conn:
            diff = await conn.run_sync(
                lambda c: compare_metadata(MigrationContext.configure(c), Base.metadata)
            )
        assert diff == [], f"models and migrations differ: {diff}"
        await downgrade_async(db, "base")
        assert await current_revision(db) is None
        async with db.engine.connect() as conn:
            tables = await conn.run_sync(lambda c: c.dialect.get_table_names(c))
        assert set(tables) <= {"alembic_version"}
        await upgrade_async(db)
        assert await current_revision(db) is not None
    finally:
        await db.dispose()


def test_it_does_not_mistake_ids_for_phone_numbers() -> None:
    from openvisit.logs import scrub

    uuid_like = "14e8dcd9-1234-5678-9012-fff7b97da670"
    assert scrub(f"participant {uuid_like}") == f"participant {uuid_like}"
    assert scrub("call +1 202 555 0143 now") == "call [phone] now"


#: (table, column, a value outside its vocabulary): every kind of typed column, one each.
OUT_OF_VOCABULARY = [
    ("ehr_endpoint", "state", "live"),
    ("ehr_endpoint", "vendor", "meditech"),
    ("ehr_endpoint", "environment", "staging"),
    ("ehr_endpoint", "auth_method", "client_secret_jwt"),
    ("job", "state", "paused"),
    ("visit", "status", "cancelled"),
    ("visit", "kind", "webinar"),
    ("participant", "role", "observer"),
    ("participant", "lobby_state", "kicked"),
    ("contact", "kind", "fax"),
    ("visit", "media_backend", "webex"),
    ("appointment", "source", "fax"),
    ("participant", "invited_by", "clinician"),
    ("organisation", "provider_label_mode", "name"),
]


@pytest.mark.parametrize(("table", "column", "value"), OUT_OF_VOCABULARY)
async def test_it_refuses_a_value_outside_the_columns_vocabulary_in_the_database(
    ctx: AppContext, table: str, column: str, value: str,
) -> None:
    """The CHECK constraints of the migration hold whatever writes the row (raw SQL too)."""
    from sqlalchemy import text
    from sqlalchemy.exc import IntegrityError

    from openvisit.jobs import enqueue
    from openvisit.models import Participant, Visit

    async with ctx.transaction() as session:
        org = Organisation(slug="vocab", display_name="Vocabulary Clinic")
        session.add(org)
        await session.flush()
        ep = EhrEndpoint(organisation_id=org.id, fhir_base="https://ehr.test/fhir", client_id="c")
        visit = Visit(organisation_id=org.id)
        session.add_all([ep, visit])
        await session.flush()
        appt = Appointment(organisation_id=org.id, endpoint_id=ep.id, ehr_appointment_id="a1")
        session.add_all([appt, Participant(visit_id=visit.id, role="patient")])
        await session.flush()
        session.add(Contact(appointment_id=appt.id, kind="sms", value_enc="x", purge_at=utcnow()))
        await enqueue(session, "test.vocabulary")
    with pytest.raises(IntegrityError, match=f"ck_{table}_{column}"):
        async with ctx.transaction() as session:
            await session.execute(text(f"UPDATE {table} SET {column} = :value"), {"value": value})
    async with ctx.transaction() as session:  # a value of the vocabulary is fine
        allowed = {("visit", "status"): "ended", ("visit", "kind"): "devicetest",
                   ("participant", "lobby_state"): "admitted", ("participant", "role"): "guest",
                   ("contact", "kind"): "email", ("job", "state"): "cancelled",
                   ("ehr_endpoint", "state"): "approved", ("ehr_endpoint", "vendor"): "epic",
                   ("ehr_endpoint", "environment"): "production",
                   ("ehr_endpoint", "auth_method"): "none",
                   ("visit", "media_backend"): "janus", ("appointment", "source"): "hl7",
                   ("participant", "invited_by"): "patient",
                   ("organisation", "provider_label_mode"): "display"}[(table, column)]
        await session.execute(text(f"UPDATE {table} SET {column} = :value"), {"value": allowed})


def test_it_names_the_same_providers_and_backends_in_their_tables_as_in_the_vocabulary() -> None:
    """Settings, the CHECK constraints and the tables that serve each name agree."""
    from openvisit.media.backends import BACKENDS
    from openvisit.models import choices
    from openvisit.notify import providers

    assert tuple(providers.SMS_PROVIDERS) == choices.SMS_PROVIDERS
    assert tuple(providers.EMAIL_PROVIDERS) == choices.EMAIL_PROVIDERS
    assert set(providers.NUMBER_PROVIDERS) <= set(choices.SMS_PROVIDERS)
    assert tuple(BACKENDS) == choices.MEDIA_BACKENDS
