"""PID-15 language look-up tables: ISO 639-1 codes, their aliases and names.

Built once from Babel's CLDR data (``scripts/build-language-table.py``) into the small
``languages.json`` beside this module, and read on first use. The listener never loads
Babel's locales for this: reading every locale to find native names ("español") cost about
110 MB and 1.25 s on the first unknown language name (issue 11, item 8).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import TypedDict

TABLE = Path(__file__).with_name("languages.json")


class Tables(TypedDict):
    """``codes``: ISO 639-1 codes; ``aliases``: other codes (ISO 639-2/T and /B, old
    codes) → ISO 639-1; ``english`` and ``native``: lower-case names → ISO 639-1."""

    codes: list[str]
    aliases: dict[str, str]
    english: dict[str, str]
    native: dict[str, str]


@functools.cache
def load() -> Tables:
    """The tables, read from ``languages.json`` once per process."""
    data: Tables = json.loads(TABLE.read_text(encoding="utf-8"))
    return data


def build_from_babel() -> Tables:
    """Build the tables from the installed Babel (slow: loads every locale; tooling only)."""
    from babel import Locale, UnknownLocaleError
    from babel.core import get_global

    english: dict[str, str] = {}
    for code, name in sorted(Locale("en").languages.items()):
        if len(code) == 2 and code.isalpha():
            english.setdefault(name.lower(), code)
    codes = sorted(set(english.values()))
    aliases = {
        alias.lower(): target.split("_")[0]
        for alias, target in sorted(get_global("language_aliases").items())
        if len(target.split("_")[0]) == 2 and alias.isalpha()
    }
    native: dict[str, str] = {}
    for code in codes:
        try:
            name = Locale(code).get_display_name(code)
        except UnknownLocaleError:
            continue
        if name:
            native.setdefault(name.lower(), code)
    return Tables(codes=codes, aliases=aliases, english=english, native=native)


def write(tables: Tables, path: Path = TABLE) -> None:
    """Write ``tables`` as the compact JSON file :func:`load` reads."""
    path.write_text(
        json.dumps(tables, ensure_ascii=False, sort_keys=True, separators=(",", ":")) + "\n",
        encoding="utf-8",
    )
