"""Unix-socket → TCP forwarders, so processes inside a private network namespace can reach
PostgreSQL and Redis that listen on the host's 127.0.0.1.

A new network namespace has its own loopback: 127.0.0.1:5432 there is nobody. A Unix socket
is a file, reachable from any namespace, so a small forwarder in the test process (outside)
listens on ``<dir>/.s.PGSQL.5432`` and ``<dir>/redis.sock`` and pipes bytes to the real
servers. PostgreSQL then sees TCP clients from 127.0.0.1 (the test's trust rule applies);
asyncpg connects with ``?host=<dir>`` and redis-py with ``unix://<dir>/redis.sock``.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


def _handler(host: str, port: int):  # type: ignore[no-untyped-def]
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(host, port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    return handle


@contextlib.contextmanager
def unix_forwarders(routes: dict[Path, tuple[str, int]]) -> Iterator[None]:
    """Serve each Unix socket path → (host, port) in a background thread until exit."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    servers: list[asyncio.AbstractServer] = []

    async def start() -> None:
        for path, (host, port) in routes.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            servers.append(await asyncio.start_unix_server(_handler(host, port), path=str(path)))
        ready.set()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        loop.run_forever()
        for server in servers:
            server.close()
        loop.run_until_complete(asyncio.sleep(0))
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.close()

    thread = threading.Thread(target=run, name="unix-forwarders", daemon=True)
    thread.start()
    if not ready.wait(10):
        raise RuntimeError("forwarders did not start")
    try:
        yield
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
