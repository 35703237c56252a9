"""An idempotent HTTP sink in its own thread: the 'outside world' jobs call in tests."""

from __future__ import annotations

import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Sink:
    """Counts requests and applies each ``Idempotency-Key`` once."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.applied: Counter[str] = Counter()
        self.fail_next = 0
        self._lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                key = self.headers.get("Idempotency-Key", "")
                with sink._lock:
                    sink.requests.append({"key": key, **body})
                    if sink.fail_next > 0:
                        sink.fail_next -= 1
                        status = 503
                    else:
                        status = 200
                        if key not in sink.applied:
                            sink.applied[key] += 1
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/effect"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Sink:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def keys_requested(self) -> list[str]:
        with self._lock:
            return [r["key"] for r in self.requests]
