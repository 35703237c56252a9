"""A bare ``pip install openvisit`` (no extras) starts and serves (issue 11 item 19)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.peers.fixtures import free_port
from tests.support.backend import REPO

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600), pytest.mark.postgres_pass]

OPTIONAL = ("twilio", "smpplib", "aiortc", "livekit", "hl7")


def test_it_serves_from_a_bare_install_without_any_extra(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         str(REPO)],
        check=True, timeout=500,
    )
    # None of the optional providers came along.
    probe = "import importlib.util as u, sys; " + "; ".join(
        f"sys.exit(1) if u.find_spec({name.split('.')[0]!r}) else None" for name in OPTIONAL
    )
    assert subprocess.run([str(python), "-c", probe]).returncode == 0
    port = free_port()
    workdir = tmp_path / "run"
    workdir.mkdir()
    log = (workdir / "serve.log").open("wb")
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path)}
    serve = subprocess.Popen(
        [str(venv / "bin" / "openvisit"), "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=workdir, env={**env, "OPENVISIT_MLLP_PORT": str(free_port())},
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        ready = None
        while time.monotonic() < deadline and serve.poll() is None:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        text = (workdir / "serve.log").read_text(errors="replace")
        assert ready is not None and ready.status_code == 200, text[-3000:]
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 200
        assert "Traceback" not in text, text[-3000:]
    finally:
        serve.terminate()
        serve.wait(timeout=20)
        log.close()


def test_it_ships_its_licence_and_no_test_peer_as_a_runtime_dependency() -> None:
    """Issue 11 item 20: the licence pyproject declares is in the tree, and python-hl7 and
    Authlib (test peers the product never imports) are only in the dev extra."""
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    licence = (REPO / "LICENSE").read_text()

    assert project["license"] == "Apache-2.0"
    assert "Apache License" in licence and "Version 2.0" in licence
    def name(dep: str) -> str:
        return re.split(r"[<>=\[ ]", dep, maxsplit=1)[0].lower()

    runtime = {name(dep) for dep in project["dependencies"]}
    dev = {name(dep) for dep in project["optional-dependencies"]["dev"]}
    assert not runtime & {"hl7", "authlib"}
    assert {"hl7", "authlib"} <= dev
    peer_import = re.compile(r"^\s*(import|from) (hl7|authlib)\b", re.MULTILINE)
    imports = [p for p in (REPO / "openvisit").rglob("*.py") if peer_import.search(p.read_text())]
    assert imports == []
