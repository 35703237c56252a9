"""The command line: every command has --help; admin create; migrate."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from openvisit.cli import app
from tests.support.backend import subprocess_env

COMMANDS = [
    [], ["serve"], ["web"], ["worker"], ["mllp"], ["migrate"], ["sandbox"],
    ["admin"], ["admin", "create"], ["admin", "roles"],
    ["jobs"], ["jobs", "list"], ["jobs", "retry"],
    ["keys"], ["keys", "generate"], ["keys", "rotate-signing"],
    ["endpoint"], ["endpoint", "add"], ["endpoint", "list"], ["endpoint", "epic-link"],
    ["endpoint", "certificate"], ["endpoint", "hl7-senders"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "root")
def test_it_explains_every_command(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_it_creates_an_admin_and_refuses_a_weak_password(db_url: str) -> None:
    env = subprocess_env(db_url)
    run = [
        sys.executable,
        "-m",
        "openvisit",
        "admin",
        "create",
        "--username",
        "ada",
        "--org",
        "sandbox-clinic",
        "--password-stdin",
    ]  # username at [6]
    ok = subprocess.run(
        run,
        input="correct horse battery staple\n",
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    assert "created account ada" in ok.stdout
    again = subprocess.run(
        run,
        input="correct horse battery staple\n",
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 1 and "already an account named 'ada'" in again.stderr
    weak = subprocess.run(
        [*run[:6], "bob", *run[7:]],
        input="short\n",
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert weak.returncode == 1 and "at least 12 characters" in weak.stderr


def test_it_migrates_from_the_command_line(db_url: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "openvisit", "migrate"],
        env=subprocess_env(db_url),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "database at revision 0001" in result.stdout


def test_it_passes_trusted_proxies_and_the_frame_limit_to_uvicorn() -> None:
    from openvisit.cli import uvicorn_options
    from openvisit.config import Settings
    from openvisit.signalling.server import SignallingWebSocketProtocol

    options = uvicorn_options(Settings(_env_file=None,  # type: ignore[call-arg]
                                       forwarded_allow_ips="10.0.0.0/8,127.0.0.1",
                                       ws_max_size=70_000))
    assert options["proxy_headers"] is True
    assert options["forwarded_allow_ips"] == "10.0.0.0/8,127.0.0.1"
    assert options["ws_max_size"] == 70_000 and options["ws"] is SignallingWebSocketProtocol
    default = uvicorn_options(Settings(_env_file=None))  # type: ignore[call-arg]
    # Loopback only by default (uvicorn's own default), and a bit over 64 KiB.
    assert default["forwarded_allow_ips"] == "127.0.0.1,::1"
    assert 64 * 1024 < default["ws_max_size"] <= 80 * 1024


def test_it_refuses_to_start_behind_a_proxy_list_that_is_not_addresses(db_url: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "openvisit", "web", "--port", "0"],
        env=subprocess_env(db_url, OPENVISIT_FORWARDED_ALLOW_IPS="10.0.0.0/8,lb.internal"),
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "OPENVISIT_FORWARDED_ALLOW_IPS" in result.stderr and "'lb.internal'" in result.stderr
