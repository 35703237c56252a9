"""The shape every package follows (STYLE.md, DEVELOPERS.md), checked on the source itself.

1. Only repositories build SQL: a call of SQLAlchemy's ``select``/``insert``/``update``/
   ``delete`` (the core functions, the dialect inserts, ``text``) appears only in a
   ``repository.py`` or in ``db.py``.
   Nor does any other module run a statement on a session (``session.execute``/``scalar``/
   ``scalars``/``stream``): a statement run elsewhere was built elsewhere.
2. Views call services: a module that serves pages or JSON (``views.py``, ``endpoints.py``,
   ``api.py``, ``views_*.py``, ``api_*.py``, ``routes.py``, ``hooks.py``, ``http.py``) and the
   CLI import no repository and load nothing through the session themselves (not even
   ``session.get``, which services may use on the unit of work).
3. No string registries: ``importlib.import_module`` only where a deployment names modules in
   its configuration (``OPENVISIT_JOB_MODULES``).

The checks read the code as Python (``ast``), so a ``select(`` in a docstring or a method of
another object (``dict.update``, ``router.delete``, ``session.delete``) is not mistaken for
SQL, while an aliased import (``from sqlalchemy import select as s``) still is.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "openvisit"

#: SQLAlchemy modules whose statement builders count as SQL.
SQL_MODULES = ("sqlalchemy", "sqlalchemy.sql", "sqlalchemy.sql.expression",
               "sqlalchemy.dialects.postgresql", "sqlalchemy.dialects.sqlite")
SQL_FUNCTIONS = frozenset({"select", "insert", "update", "delete", "text", "tuple_"})
#: Session methods that run a statement (only repositories and db.py call them).
SESSION_RUNS = frozenset({"execute", "scalar", "scalars", "stream", "stream_scalars"})
#: ... and the ones a view may not call either: it asks a service for the row.
VIEW_SESSION_LOADS = SESSION_RUNS | {"get", "get_one"}

#: Files that may still build SQL outside a repository (none: keep it so).
SQL_ALLOWED: dict[str, str] = {}
#: Views that may still import a repository (none).
VIEW_REPOSITORY_ALLOWED: dict[str, str] = {}
#: The one legitimate dynamic import: plug-in job modules named in the configuration.
DYNAMIC_IMPORT_ALLOWED = frozenset({"jobs/registry.py"})

VIEW_NAMES = ("views.py", "api.py", "endpoints.py", "routes.py", "hooks.py", "http.py", "cli.py")
VIEW_PREFIXES = ("views_", "api_")  # and api.py (VIEW_NAMES)


def _modules() -> list[tuple[str, ast.Module]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.startswith("migrations/"):
            continue
        found.append((relative, ast.parse(path.read_text(encoding="utf-8"), filename=relative)))
    return found


def _sql_names(tree: ast.Module) -> tuple[set[str], set[str]]:
    """(names bound to SQL builders, names bound to SQL modules) by this module's imports."""
    functions: set[str] = set()
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in SQL_MODULES:
            for alias in node.names:
                if alias.name in SQL_FUNCTIONS:
                    functions.add(alias.asname or alias.name)
        if isinstance(node, ast.ImportFrom) and node.module == "sqlalchemy.dialects":
            modules.update(alias.asname or alias.name for alias in node.names)
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in SQL_MODULES:
                    modules.add(alias.asname or alias.name.split(".")[0])
    return functions, modules


def sql_calls(tree: ast.Module) -> list[tuple[int, str]]:
    """``(line, name)`` of every call of a SQLAlchemy statement builder in ``tree``."""
    functions, modules = _sql_names(tree)
    calls = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id in functions:
            calls.append((node.lineno, func.id))
        elif isinstance(func, ast.Attribute) and func.attr in SQL_FUNCTIONS:
            # sqlalchemy.select(...), postgresql.insert(...), sa.sql.expression.update(...)
            root = func.value
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and root.id in modules:
                calls.append((node.lineno, func.attr))
    return calls


def session_calls(tree: ast.Module, methods: frozenset[str]) -> list[tuple[int, str]]:
    """``(line, method)`` of every call of one of ``methods`` on a session in ``tree``.

    A session is whatever the code calls one: a name or attribute ending in ``session``
    (``session``, ``job.session``, ``read_session``); ``dict.get`` or ``request.stream`` is not.
    """
    calls = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in methods):
            continue
        receiver = node.func.value
        name = receiver.id if isinstance(receiver, ast.Name) else \
            receiver.attr if isinstance(receiver, ast.Attribute) else ""
        if name.endswith("session"):
            calls.append((node.lineno, node.func.attr))
    return calls


def _is_view(relative: str) -> bool:
    name = relative.rsplit("/", 1)[-1]
    return name in VIEW_NAMES or name.startswith(VIEW_PREFIXES)


def _imports_repository(tree: ast.Module) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module.endswith(".repository") or node.module == "openvisit.repository":
                return True
            if any(alias.name == "repository" for alias in node.names):
                return True
        if isinstance(node, ast.Import) and any(
                alias.name.endswith(".repository") for alias in node.names):
            return True
    return False


def test_it_finds_sql_only_in_repositories_and_db() -> None:
    outside = sorted(
        f"openvisit/{relative}:{line} {name}()"
        for relative, tree in _modules()
        if not relative.endswith("repository.py") and relative != "db.py"
        and relative not in SQL_ALLOWED
        for line, name in sql_calls(tree)
    )
    assert outside == [], "SQL belongs in the package's repository.py:\n" + "\n".join(outside)


def test_it_runs_statements_on_the_session_only_in_repositories_and_db() -> None:
    outside = sorted(
        f"openvisit/{relative}:{line} session.{method}()"
        for relative, tree in _modules()
        if not relative.endswith("repository.py") and relative != "db.py"
        and relative not in SQL_ALLOWED
        for line, method in session_calls(tree, SESSION_RUNS)
    )
    assert outside == [], "statements run in the package's repository.py:\n" + \
        "\n".join(outside)


def test_it_keeps_the_sql_allow_list_to_files_that_still_need_it() -> None:
    modules = dict(_modules())
    stale = [relative for relative in SQL_ALLOWED
             if relative not in modules or not sql_calls(modules[relative])]
    assert stale == [], f"no SQL left here any more, remove from SQL_ALLOWED: {stale}"


def test_it_lets_views_reach_the_database_only_through_services() -> None:
    direct = [f"openvisit/{relative}" for relative, tree in _modules()
              if _is_view(relative) and relative not in VIEW_REPOSITORY_ALLOWED
              and _imports_repository(tree)]
    assert direct == [], "views call services, never a repository:\n" + "\n".join(direct)


def test_it_lets_views_load_rows_only_through_services() -> None:
    direct = sorted(
        f"openvisit/{relative}:{line} session.{method}()"
        for relative, tree in _modules()
        if _is_view(relative) and relative not in VIEW_REPOSITORY_ALLOWED
        for line, method in session_calls(tree, VIEW_SESSION_LOADS)
    )
    assert direct == [], "views ask a service for rows, never the session:\n" + \
        "\n".join(direct)


def test_it_keeps_the_view_allow_list_to_files_that_still_need_it() -> None:
    modules = dict(_modules())
    stale = [relative for relative in VIEW_REPOSITORY_ALLOWED
             if relative not in modules or not _imports_repository(modules[relative])]
    assert stale == [], f"remove from VIEW_REPOSITORY_ALLOWED: {stale}"


def test_it_imports_modules_by_name_only_for_configured_plug_ins() -> None:
    dynamic = []
    for relative, tree in _modules():
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "import_module"
                    and relative not in DYNAMIC_IMPORT_ALLOWED):
                dynamic.append(f"openvisit/{relative}:{node.lineno}")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                    and node.func.id == "__import__":
                dynamic.append(f"openvisit/{relative}:{node.lineno}")
    assert dynamic == [], "import directly (optional providers: one lazy import):\n" + \
        "\n".join(dynamic)


def test_it_recognises_sql_however_it_is_imported() -> None:
    """The detector itself: aliased and dialect builders count, look-alikes do not."""
    source = '''
import sqlalchemy as sa
from sqlalchemy import select as pick, func
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.sqlite import insert

"""select(x) in a docstring"""
pick(1)
sa.update(2)
postgresql.insert(3)
insert(4)
func.count()
settings.update(a=1)
router.delete("/x")
'''
    assert [name for _line, name in sql_calls(ast.parse(source))] == [
        "pick", "update", "insert", "insert"]


def test_it_recognises_a_session_however_it_is_named() -> None:
    """The session detector: any name ending in ``session``; other objects' methods do not."""
    source = '''
await session.get(Model, 1)
await job.session.execute(statement)
await read_session.scalars(statement)
await self.session.scalar(statement)
settings.get("x")
request.stream()
engine.execute(statement)
'''
    assert [method for _line, method in session_calls(ast.parse(source), VIEW_SESSION_LOADS)] \
        == ["get", "execute", "scalars", "scalar"]
