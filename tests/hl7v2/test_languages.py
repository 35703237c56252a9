"""PID-15 language tables: small, loaded on first use (issue 11, item 8).

Before, the first language name that was not an English name or a code loaded every Babel
locale to look for native names: about 110 MB and 1.25 s inside the listener. The tables are
now one small file built from Babel (``scripts/build-language-table.py``) and read lazily.
"""

from __future__ import annotations

import json
import subprocess
import sys

MEASURE = """
import json, sys, time
import psutil
from openvisit.hl7v2 import contact, er7
pid = er7.parse("MSH|^~\\\\&|A|B|C|D|1||SIU^S12|1|P|2.5\\rPID|1||1||||||||||||" + sys.argv[1])
pid = pid.first("PID")
me = psutil.Process()
before, started = me.memory_info().rss, time.perf_counter()
code = contact.language(pid)
print(json.dumps({"code": code, "seconds": time.perf_counter() - started,
                  "mib": (me.memory_info().rss - before) / 2**20,
                  "babel": [m for m in sys.modules if m.startswith("babel")]}))
"""


def measure(value: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, value], capture_output=True, check=True, timeout=60
    ).stdout
    result: dict[str, object] = json.loads(out)
    return result


def test_it_reads_an_unknown_language_name_cheaply() -> None:
    unknown = measure("Klingon")

    assert unknown["code"] is None
    assert float(unknown["seconds"]) < 0.25, unknown  # type: ignore[arg-type]
    assert float(unknown["mib"]) < 10, unknown  # type: ignore[arg-type]
    assert unknown["babel"] == []


def test_it_still_reads_native_names_and_codes_from_the_small_table() -> None:
    assert measure("Español")["code"] == "es"
    assert measure("čeština")["code"] == "cs"
    assert measure("ger")["code"] == "de"


def test_it_ships_the_table_babel_would_build() -> None:
    # The committed table is what the build script makes from the installed Babel: rebuild it
    # with scripts/build-language-table.py after upgrading Babel.
    from openvisit.hl7v2 import languages

    assert languages.load() == languages.build_from_babel()
