"""A real Janus (Debian's ``janus``) for tests: HTTP API on 127.0.0.1, VideoRoom only.

Its configuration is written to a temporary folder: the HTTP transport bound to loopback on
a free port (no WebSocket, no admin API), only the VideoRoom plugin and the HTTP transport
loaded (symlinks to Debian's modules), an ``api_secret`` and a VideoRoom ``admin_key`` made
per run. Media is not needed for the API tests; the browser tests run Janus inside a network
namespace with a veth pair instead (PEERS.md), through ``config_dir(..., ice_interface=)``.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MODULES = Path("/usr/lib/x86_64-linux-gnu/janus")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Janus:
    url: str
    api_secret: str
    admin_key: str
    log: Path


def config_dir(root: Path, *, port: int, api_secret: str, admin_key: str,
               bind: str = "127.0.0.1") -> Path:
    """A Janus configuration folder under ``root`` (see the module docstring)."""
    conf, plugins, transports, empty = (root / n for n in ("conf", "plugins", "transports",
                                                          "empty"))
    for folder in (conf, plugins, transports, empty):
        folder.mkdir(parents=True, exist_ok=True)
    for folder, name in ((plugins, "plugins/libjanus_videoroom.so"),
                         (transports, "transports/libjanus_http.so")):
        link = folder / Path(name).name
        if not link.exists():
            link.symlink_to(MODULES / name)
    (conf / "janus.jcfg").write_text(f"""general: {{
  configs_folder = "{conf}"
  plugins_folder = "{plugins}"
  transports_folder = "{transports}"
  events_folder = "{empty}"
  loggers_folder = "{empty}"
  debug_level = 4
  api_secret = "{api_secret}"
  session_timeout = 60
}}
media: {{
  rtp_port_range = "20000-40000"
}}
nat: {{
  ice_ignore_list = "vmnet"
}}
""")
    (conf / "janus.transport.http.jcfg").write_text(f"""general: {{
  json = "plain"
  base_path = "/janus"
  http = true
  port = {port}
  ip = "{bind}"
  https = false
}}
admin: {{
  admin_http = false
}}
""")
    (conf / "janus.plugin.videoroom.jcfg").write_text(f"""general: {{
  admin_key = "{admin_key}"
  lock_rtp_forward = true
}}
""")
    return conf


@contextlib.contextmanager
def janus(root: Path) -> Iterator[Janus]:
    """Janus on a free loopback port until the block ends (stopped by pid)."""
    binary = shutil.which("janus")
    if binary is None:
        raise RuntimeError("janus is not installed: run scripts/bootstrap-system.sh")
    port, api_secret, admin_key = _free_port(), secrets.token_hex(12), secrets.token_hex(12)
    conf = config_dir(root, port=port, api_secret=api_secret, admin_key=admin_key)
    log = root / "janus.log"
    proc = subprocess.Popen([binary, "-F", str(conf), "-o", "-N", "-L", str(log)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"janus exited: {log.read_text(errors='replace')[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", port), timeout=0.2):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"janus did not listen: {log.read_text()[-2000:]}")
            time.sleep(0.05)
        yield Janus(f"http://127.0.0.1:{port}/janus", api_secret, admin_key, log)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
