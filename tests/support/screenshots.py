"""What the ``make_*screenshots`` scripts share: OpenVisit on a fresh SQLite database, served
by uvicorn on loopback, and Debian's Chromium driven by Playwright (never a downloaded one)."""

from __future__ import annotations

import asyncio
import socket
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn
from playwright.async_api import Browser, async_playwright

from openvisit.app import create_app
from openvisit.context import AppContext
from openvisit.db import Database
from openvisit.migrate import upgrade_async
from tests.support.backend import make_settings

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
#: Suffix of the file name → viewport: the laptop and the small phone every page is shot at.
SIZES = {"": (1280, 800), "-phone": (390, 844)}


@dataclass
class Served:
    ctx: AppContext
    base: str
    browser: Browser
    seeded: Any


@asynccontextmanager
async def served(seed: Callable[[AppContext], Awaitable[Any]]) -> AsyncIterator[Served]:
    """The app with ``seed(ctx)`` done, on a free loopback port, and a Chromium to shoot it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{tmp}/shots.db"
        db = Database(url)
        await upgrade_async(db)
        await db.dispose()
        ctx = AppContext.create(make_settings(url, environment="development", public_url=base))
        await ctx.start()
        seeded = await seed(ctx)
        server = uvicorn.Server(uvicorn.Config(create_app(ctx=ctx), host="127.0.0.1", port=port,
                                               lifespan="off", log_config=None))
        serving = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.05)
        try:
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path="/usr/bin/chromium",
                                                   args=ARGS)
                try:
                    yield Served(ctx, base, browser, seeded)
                finally:
                    await browser.close()
        finally:
            server.should_exit = True
            await serving
            await ctx.close()
