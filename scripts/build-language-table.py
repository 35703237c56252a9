#!/usr/bin/env python3
"""Rebuild openvisit/hl7v2/languages.json from the installed Babel (run after upgrading it).

    .venv/bin/python scripts/build-language-table.py
"""

from openvisit.hl7v2 import languages

if __name__ == "__main__":
    tables = languages.build_from_babel()
    languages.write(tables)
    print(
        f"{languages.TABLE}: {len(tables['codes'])} codes, {len(tables['aliases'])} aliases, "
        f"{len(tables['english'])} English and {len(tables['native'])} native names"
    )
