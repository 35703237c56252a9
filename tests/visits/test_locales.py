"""The translation catalogue: complete in es/cs/it, compiled .mo in step with .po."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

from openvisit import i18n
from openvisit.devicetest.strings import DEVICETEST_STRINGS
from openvisit.visits.strings import ROOM_STRINGS

REPO = Path(__file__).resolve().parents[2]
LOCALES = REPO / "openvisit" / "locales"
JS_DIR = REPO / "openvisit" / "static" / "js"
TRANSLATED = ("es", "cs", "it")


@pytest.fixture(scope="module")
def extracted(tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    out = tmp_path_factory.mktemp("i18n") / "messages.pot"
    subprocess.run(
        [str(Path(sys.executable).parent / "pybabel"), "-q", "extract", "-F",
         str(LOCALES / "babel.cfg"), "-k", "N_", "--no-location", "--omit-header",
         "-o", str(out), "."],
        cwd=REPO, check=True, capture_output=True,
    )
    with out.open("rb") as f:
        return read_po(f)


def _po(lang: str) -> Catalog:
    with (LOCALES / lang / "LC_MESSAGES" / "messages.po").open("rb") as f:
        return read_po(f)


@pytest.mark.parametrize("lang", TRANSLATED)
def test_it_translates_every_message_of_the_pages_and_the_room_script(
    extracted: Catalog, lang: str
) -> None:
    catalogue = _po(lang)
    problems = []
    for message in extracted:
        if not message.id:
            continue
        translated = catalogue.get(message.id)
        if translated is None or not translated.string or translated.fuzzy:
            problems.append(message.id)
        elif set(re.findall(r"\{\w+\}|%\(\w+\)s", str(message.id))) != set(
            re.findall(r"\{\w+\}|%\(\w+\)s", str(translated.string))
        ):
            problems.append(f"placeholders differ: {message.id!r}")
    assert not problems, f"{lang}: untranslated or broken: {problems}"


@pytest.mark.parametrize("lang", (*TRANSLATED, "en"))
def test_it_ships_compiled_catalogues_that_match_their_sources(lang: str) -> None:
    def key(value: object) -> object:  # a plural entry's forms: a tuple in .po, a list in .mo
        return tuple(value) if isinstance(value, list | tuple) else value

    source = {key(m.id): key(m.string) for m in _po(lang)
              if m.id and m.string and not m.fuzzy}
    with (LOCALES / lang / "LC_MESSAGES" / "messages.mo").open("rb") as f:
        compiled = {key(m.id): key(m.string) for m in read_mo(f) if m.id}
    assert compiled == source


def test_it_defines_every_string_the_room_script_asks_for() -> None:
    asked: set[str] = set()
    for path in JS_DIR.glob("*.js"):
        asked |= set(re.findall(r"""\bt\(\s*["']([\w.]+)["']""", path.read_text()))
    # Keys built at run time: end.<reason>.*, state.<lobby state>, role.<role>[.n].
    for reason in ("left", "ended", "removed", "replaced"):
        asked |= {f"end.{reason}.title", f"end.{reason}.text"}
    asked |= {f"state.{s}" for s in ("invited", "left", "removed")}
    asked |= {f"role.{r}" for r in ("patient", "interpreter", "guest")}
    asked |= {f"role.{r}.n" for r in ("patient", "interpreter", "guest")}
    # The device test's status.<outcome>, built at run time too.
    asked |= {f"status.{s}" for s in ("checking", "passed", "failed", "skipped")}
    assert sorted(asked - set(ROOM_STRINGS) - set(DEVICETEST_STRINGS)) == []


def test_it_renders_the_room_strings_in_the_active_language() -> None:
    from openvisit.visits.strings import room_strings

    i18n.activate("cs")
    try:
        assert room_strings()["role.provider.patient_view"] == "Váš lékař"
    finally:
        i18n.activate("en")
    assert room_strings()["role.provider.patient_view"] == "Your clinician"
