"""What every ``openvisit`` command group shares: settings read once (a clear message and
exit 2 when they are wrong), a started context for one command (OpenVisit errors as a
message and exit 1), and printing settings as text or JSON."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer

from openvisit.config import Settings, load_settings
from openvisit.context import AppContext
from openvisit.errors import OpenVisitError

T = TypeVar("T")
#: ``--org SLUG``, the option every organisation command takes.
OrgOpt = Annotated[str, typer.Option("--org", help="Organisation slug.")]


def settings_or_exit(**overrides: Any) -> Settings:
    try:
        return load_settings(**{k: v for k, v in overrides.items() if v is not None})
    except OpenVisitError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(2) from exc


def run(func: Callable[[AppContext], Awaitable[T]], settings: Settings | None = None) -> T:
    """Run ``func`` with a started context; OpenVisit errors become a clear message + exit 1."""

    async def main() -> T:
        ctx = AppContext.create(settings or settings_or_exit())
        try:
            await ctx.start()
            return await func(ctx)
        finally:
            await ctx.close()

    try:
        return asyncio.run(main())
    except OpenVisitError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from exc


def print_settings(values: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(values))
        return
    for key, value in values.items():
        typer.echo(f"{key:<16} {value}")
