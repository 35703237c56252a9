"""Outside test peers as pytest fixtures.

A pytest plugin: ``pytest_plugins = ["tests.peers.fixtures"]`` in tests/conftest.py.

Every peer is a real program started in the background on 127.0.0.1 with its output in a
file under pytest's tmp dir; its pid is remembered, its port waited for with a bounded
loop, and it is ended by pid (its own process group: SIGTERM, then SIGKILL) at teardown.

Session-scoped fixtures (what they return):

``start_oidc_idp``  factory ``(redirect_uris, *, client_id=..., client_secret=...,
                    token_endpoint_auth_method="client_secret_basic", accounts=None) -> OidcIdp``;
                    one npm ``oidc-provider`` process per distinct argument set (cached).
``oidc_idp``        an ``OidcIdp`` whose one client has redirect URI ``OIDC_DEFAULT_REDIRECT_URI``
                    (a port nobody listens on: read the ``Location`` header).
``prism_twilio``    ``PrismTwilio`` - Prism mocking Twilio's API 2010-04-01 (``base_url``).
``smsc``            ``Smsc`` - SMPP server (npm ``smpp``); ``submitted()`` reads its log.
``smtp_server``     ``SmtpServer`` - aiosmtpd writing a Maildir; ``messages()`` reads it.
``coturn``          ``Coturn`` - turnserver with a random static auth secret (TURN REST creds).
``hl7_noop_server`` ``Hl7Peer`` - npm node-hl7-server answering every message with AA.
``openvisit_port``  a free TCP port reserved for the session's tests (for an app under test).

Helpers: ``free_port()``, ``PeerProcess``, ``netns_available()``, ``netns_argv(cmd)``,
``run_in_netns(cmd)``.

A missing binary or npm package is an error, never a skip: the message says to run
``make test`` (which runs ``scripts/bootstrap-system.sh``, ``scripts/ensure-services.sh``
and ``scripts/bootstrap-npm.sh``).

Janus in a network namespace (not a fixture yet; what it needs): Janus ignores ``lo`` for
media, so inside ``unshare -n`` it needs a veth pair with addresses on both ends, e.g.
``ip link add v0 type veth peer name v1; ip addr add 10.99.0.1/24 dev v0;
ip addr add 10.99.0.2/24 dev v1; ip link set v0 up; ip link set v1 up; ip link set lo up``
and then ``janus -F /etc/janus -E v0 -i 10.99.0.1 -N`` (HTTP API :8088/janus, WebSocket
:8188, VideoRoom plugin). Everything that talks to it (browser, app, test) must run inside
the same namespace, since those addresses exist only there; Janus's transports bind
0.0.0.0 unless their config files (a copy of /etc/janus passed with ``-F``) say otherwise.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import email
import email.policy
import functools
import hashlib
import hmac
import json
import mailbox
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest

PEERS_DIR = Path(__file__).resolve().parent
REPO_ROOT = PEERS_DIR.parent.parent
NODE_MODULES = PEERS_DIR / "node_modules"
SHARED_PEERS_DIR = REPO_ROOT.parent / "shared" / "peers"
TWILIO_SPEC = SHARED_PEERS_DIR / "twilio_api_v2010.json"

HOST = "127.0.0.1"
DEFAULT_START_TIMEOUT = 30.0
PRISM_START_TIMEOUT = 90.0  # ~3 s here on the 1.8 MB Twilio spec; generous for a busy CI
OIDC_DEFAULT_REDIRECT_URI = "http://127.0.0.1:9/callback"  # discard port: nobody listens

MAKE_TEST_HINT = (
    "run `make test` (it installs the test peers: scripts/bootstrap-system.sh, "
    "scripts/ensure-services.sh, scripts/bootstrap-npm.sh)"
)


class PeerStartError(RuntimeError):
    """A peer program died or did not open its port in time."""


def require_binary(name: str, package: str | None = None) -> str:
    """Absolute path of ``name`` on PATH, or fail the test with an actionable message."""
    path = shutil.which(name)
    if path is None:
        what = f" (Debian package {package})" if package else ""
        pytest.fail(f"`{name}`{what} is not installed: {MAKE_TEST_HINT}", pytrace=False)
    return path


def require_npm_bin(name: str) -> Path:
    """A binary from tests/peers/node_modules/.bin, or fail with an actionable message."""
    path = NODE_MODULES / ".bin" / name
    if not path.exists():
        pytest.fail(
            f"{path} is missing (npm test peers not installed): {MAKE_TEST_HINT}", pytrace=False
        )
    return path


def require_npm_package(name: str) -> Path:
    path = NODE_MODULES / name / "package.json"
    if not path.exists():
        pytest.fail(
            f"npm package {name} is missing from {NODE_MODULES}: {MAKE_TEST_HINT}", pytrace=False
        )
    return path.parent


def free_port(host: str = HOST, *, udp_too: bool = False) -> int:
    """A port that is free on ``host`` right now (TCP; and UDP too if ``udp_too``).

    Another process may take it before the caller binds it; peers are started soon after.
    """
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((host, 0))
            port: int = tcp.getsockname()[1]
            if not udp_too:
                return port
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                    udp.bind((host, port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port found")


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


_live_peers: set[PeerProcess] = set()


@atexit.register
def _stop_leftover_peers() -> None:  # safety net if a session dies without teardown
    for peer in list(_live_peers):
        with contextlib.suppress(Exception):
            peer.stop(timeout=2.0)


@dataclass(eq=False)
class PeerProcess:
    """One peer program in the background, its output in ``log_path``.

    ``start()`` launches it in its own process group; ``wait_for_port()`` waits with a
    bounded loop and raises ``PeerStartError`` with the last 40 lines of its log if it dies
    or times out; ``stop()`` sends SIGTERM to its group, then SIGKILL after ``timeout``.
    Usable as a context manager.
    """

    name: str
    argv: Sequence[str]
    log_path: Path
    cwd: Path | None = None
    env: dict[str, str] | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} was not started"
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> PeerProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **(self.env or {})}
        with open(self.log_path, "ab") as log:
            log.write(f"$ {' '.join(map(str, self.argv))}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [str(a) for a in self.argv],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                env=env,
                start_new_session=True,  # its own process group: children die with it
            )
        _live_peers.add(self)
        return self

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def _failure(self, why: str) -> PeerStartError:
        return PeerStartError(
            f"{self.name} {why}; last 40 lines of {self.log_path}:\n{self.log_tail(40)}"
        )

    def wait_for_port(
        self,
        port: int,
        host: str = HOST,
        timeout: float = DEFAULT_START_TIMEOUT,
        ready_line: str | None = None,
    ) -> None:
        """Wait until ``host:port`` accepts TCP (and ``ready_line`` is in the log, if given)."""
        assert self.proc is not None, f"{self.name} was not started"
        deadline = time.monotonic() + timeout
        while True:
            code = self.proc.poll()
            if code is not None:
                raise self._failure(f"exited with code {code} before opening {host}:{port}")
            if port_open(host, port, timeout=0.5) and (
                ready_line is None or ready_line in self.log_tail(10_000)
            ):
                return
            if time.monotonic() > deadline:
                self.stop()
                raise self._failure(f"did not open {host}:{port} within {timeout:.0f} s")
            time.sleep(0.05)

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM the process group, SIGKILL it after ``timeout``; returns the exit code."""
        _live_peers.discard(self)
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=timeout)
        # the leader is gone; make sure nothing else of its group lingers
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        return proc.returncode

    def __enter__(self) -> PeerProcess:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _start(peer: PeerProcess, port: int, **wait: Any) -> PeerProcess:
    peer.start()
    try:
        peer.wait_for_port(port, **wait)
    except PeerStartError as e:
        peer.stop()
        pytest.fail(str(e), pytrace=False)
    return peer


# ------------------------------------------------------------------ network namespace


@functools.cache
def netns_available() -> bool:
    """True if ``unshare -n`` (a private network namespace, as root) works here."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    try:
        res = subprocess.run(
            ["unshare", "-n", "ip", "link", "set", "lo", "up"],
            capture_output=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return res.returncode == 0


NETNS_SCRIPT = 'ip link set lo up; exec "$@"'


def netns_argv(cmd: Sequence[str]) -> list[str]:
    """``cmd`` wrapped to run in a fresh private network namespace with ``lo`` up.

    Inside it only 127.0.0.1/::1 exist, so WebRTC ICE (Chromium, aiortc, coturn) can only
    pair on loopback. Every process that must talk to another has to be in the *same*
    namespace: run one driver script under it that starts the rest.
    """
    return ["unshare", "-n", "bash", "-c", NETNS_SCRIPT, "netns", *map(str, cmd)]


def run_in_netns(
    cmd: Sequence[str], *, timeout: float = 120.0, check: bool = True, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` to completion inside a private network namespace (see ``netns_argv``).

    Output is captured as text; extra keyword arguments go to ``subprocess.run``.
    Fails the test with an actionable message if namespaces are not available.
    """
    if not netns_available():
        require_binary("unshare", "util-linux")
        require_binary("ip", "iproute2")
        pytest.fail("`unshare -n` does not work here (needs root / CAP_SYS_ADMIN)", pytrace=False)
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    return subprocess.run(netns_argv(cmd), timeout=timeout, check=check, **kwargs)


# ------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="session")
def peers_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory for the peers' logs and data (under pytest's tmp dir)."""
    return tmp_path_factory.mktemp("peers")


@pytest.fixture(scope="session")
def openvisit_port() -> int:
    """A free TCP port on 127.0.0.1 for an app under test (e.g. to build redirect URIs)."""
    return free_port()


def _node() -> str:
    return require_binary("node", "nodejs")


# --- OpenID Connect IdP -------------------------------------------------------------


@dataclass(frozen=True)
class OidcIdp:
    issuer: str
    port: int
    client_id: str
    client_secret: str
    redirect_uris: tuple[str, ...]
    token_endpoint_auth_method: str
    log_path: Path

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    @property
    def authorization_endpoint(self) -> str:
        return f"{self.issuer}/auth"

    @property
    def token_endpoint(self) -> str:
        return f"{self.issuer}/token"

    @property
    def jwks_uri(self) -> str:
        return f"{self.issuer}/jwks"

    def dev_login(
        self, authorize_url: str, login: str, password: str = "any", *, max_steps: int = 12
    ) -> str:
        """Drive oidc-provider's dev login and consent pages for ``authorize_url``.

        Starts a fresh browser-like session (cookies kept), submits the login form with
        ``login``/``password`` (any are accepted) and confirms consent; returns the URL the
        IdP finally redirects to outside itself (the client's redirect URI with ``code``,
        ``state`` and ``iss``, or ``error``). Nothing needs to listen at the redirect URI.
        """
        import httpx

        issuer_origin = urlsplit(self.issuer)[:2]
        with httpx.Client(follow_redirects=False, timeout=10.0) as client:
            resp = client.get(authorize_url)
            for _ in range(max_steps):
                if resp.is_redirect:
                    target = urljoin(str(resp.url), resp.headers["location"])
                    if urlsplit(target)[:2] != issuer_origin:
                        return target
                    resp = client.get(target)
                    continue
                if resp.status_code != 200:
                    raise AssertionError(
                        f"IdP answered {resp.status_code} at {resp.url}: {resp.text[:500]}"
                    )
                action = re.search(r'<form[^>]*action="([^"]+)"', resp.text)
                prompt = re.search(r'name="prompt" value="(\w+)"', resp.text)
                if not action or not prompt:
                    raise AssertionError(f"no login/consent form at {resp.url}: {resp.text[:500]}")
                form = {"prompt": prompt.group(1)}
                if form["prompt"] == "login":
                    form |= {"login": login, "password": password}
                resp = client.post(urljoin(str(resp.url), action.group(1)), data=form)
        raise AssertionError(f"IdP did not redirect back within {max_steps} steps")


@pytest.fixture(scope="session")
def start_oidc_idp(peers_dir: Path) -> Iterator[Callable[..., OidcIdp]]:
    """Factory: ``start_oidc_idp(redirect_uris, ...) -> OidcIdp`` (npm oidc-provider 9).

    One confidential client; PKCE (S256) required; dev login accepts any login/password;
    the id_token and userinfo carry ``sub`` = login, ``name`` and ``email``
    (``<login>@example.test``, or what ``accounts={login: {claim: value}}`` says) when the
    scopes ``openid profile email`` are asked. Same arguments -> same running IdP.
    """
    started: dict[str, OidcIdp] = {}
    procs: list[PeerProcess] = []

    def start(
        redirect_uris: Sequence[str],
        *,
        client_id: str = "openvisit",
        client_secret: str | None = None,
        token_endpoint_auth_method: str = "client_secret_basic",
        accounts: dict[str, dict[str, Any]] | None = None,
    ) -> OidcIdp:
        key = json.dumps(
            [list(redirect_uris), client_id, client_secret, token_endpoint_auth_method, accounts],
            sort_keys=True,
        )
        if key in started:
            return started[key]
        node = _node()
        require_npm_package("oidc-provider")
        port = free_port()
        issuer = f"http://{HOST}:{port}"
        secret = client_secret or secrets.token_urlsafe(24)
        clients = [
            {
                "client_id": client_id,
                "client_secret": secret,
                "redirect_uris": list(redirect_uris),
                "token_endpoint_auth_method": token_endpoint_auth_method,
            }
        ]
        log = peers_dir / f"oidc_idp-{port}.log"
        peer = PeerProcess(
            "oidc_idp",
            [node, PEERS_DIR / "oidc_idp.mjs", "--port", str(port), "--issuer", issuer],
            log,
            cwd=PEERS_DIR,
            env={
                "OIDC_CLIENTS": json.dumps(clients),
                "OIDC_ACCOUNTS": json.dumps(accounts or {}),
                "NODE_ENV": "test",
            },
        )
        procs.append(_start(peer, port, ready_line="READY oidc_idp"))
        idp = OidcIdp(
            issuer=issuer,
            port=port,
            client_id=client_id,
            client_secret=secret,
            redirect_uris=tuple(redirect_uris),
            token_endpoint_auth_method=token_endpoint_auth_method,
            log_path=log,
        )
        started[key] = idp
        return idp

    yield start
    for p in procs:
        p.stop()


@pytest.fixture(scope="session")
def oidc_idp(start_oidc_idp: Callable[..., OidcIdp]) -> OidcIdp:
    """An IdP whose client's redirect URI is ``OIDC_DEFAULT_REDIRECT_URI``."""
    return start_oidc_idp([OIDC_DEFAULT_REDIRECT_URI])


# --- Twilio (Prism mock) --------------------------------------------------------------


@dataclass(frozen=True)
class PrismTwilio:
    base_url: str  # e.g. http://127.0.0.1:PORT, paths as in Twilio: /2010-04-01/Accounts/...
    host: str
    port: int
    spec_path: Path
    log_path: Path
    account_sid: str = "AC" + "0123456789abcdef" * 2
    auth_token: str = "test-auth-token"  # any token passes Prism's basic-auth check

    def messages_url(self, account_sid: str | None = None) -> str:
        return (
            f"{self.base_url}/2010-04-01/Accounts/{account_sid or self.account_sid}/Messages.json"
        )


@pytest.fixture(scope="session")
def prism_twilio(peers_dir: Path) -> Iterator[PrismTwilio]:
    """Prism mocking Twilio's 2010-04-01 API: validates each request against Twilio's
    OpenAPI spec (4xx/422 on invalid) and answers the spec's static examples."""
    _node()
    prism = require_npm_bin("prism")
    if not TWILIO_SPEC.exists():
        pytest.fail(f"Twilio OpenAPI spec not found at {TWILIO_SPEC} (shared/peers)", pytrace=False)
    port = free_port()
    log = peers_dir / "prism_twilio.log"
    peer = PeerProcess(
        "prism_twilio",
        [prism, "mock", "-h", HOST, "-p", str(port), TWILIO_SPEC],
        log,
        cwd=PEERS_DIR,
    )
    _start(peer, port, timeout=PRISM_START_TIMEOUT)
    yield PrismTwilio(
        base_url=f"http://{HOST}:{port}", host=HOST, port=port, spec_path=TWILIO_SPEC, log_path=log
    )
    peer.stop()


# --- SMSC (SMPP) ------------------------------------------------------------------------


@dataclass(frozen=True)
class Smsc:
    host: str
    port: int
    system_id: str
    password: str
    log_path: Path  # one JSON line per accepted submit_sm
    process_log_path: Path

    def submitted(self) -> list[dict[str, Any]]:
        """Every accepted submit_sm so far: message_id, source_addr, destination_addr,
        text, data_coding, esm_class, registered_delivery, udh, user_message_reference,
        tlvs (other optional parameters), submitted_at."""
        if not self.log_path.exists():
            return []
        return [json.loads(line) for line in self.log_path.read_text().splitlines() if line]

    def wait_for_submitted(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            subs = self.submitted()
            if len(subs) >= count:
                return subs
            if time.monotonic() > deadline:
                raise AssertionError(f"SMSC saw {len(subs)} submit_sm, expected {count}: {subs}")
            time.sleep(0.05)


@pytest.fixture(scope="session")
def smsc(peers_dir: Path) -> Iterator[Smsc]:
    """SMPP server (npm smpp): binds with ``system_id``/``password`` only; answers submit_sm
    with a unique id and sends a DELIVRD deliver_sm receipt when registered_delivery asks."""
    node = _node()
    require_npm_package("smpp")
    port = free_port()
    system_id, password = "openvisit", secrets.token_hex(4)  # SMPP passwords: <= 8 chars
    submits = peers_dir / "smsc-submits.jsonl"
    log = peers_dir / "smsc.log"
    peer = PeerProcess(
        "smsc",
        [
            node,
            PEERS_DIR / "smsc.mjs",
            "--port",
            str(port),
            "--system-id",
            system_id,
            "--password",
            password,
            "--log",
            submits,
        ],
        log,
        cwd=PEERS_DIR,
    )
    _start(peer, port, ready_line="READY smsc")
    yield Smsc(HOST, port, system_id, password, submits, log)
    peer.stop()


# --- SMTP (aiosmtpd) --------------------------------------------------------------------


@dataclass(frozen=True)
class SmtpServer:
    host: str
    port: int
    maildir: Path
    log_path: Path

    def messages(self) -> list[EmailMessage]:
        """Every message received so far (parsed with the modern email policy)."""
        if not (self.maildir / "new").exists():
            return []
        box = mailbox.Maildir(self.maildir, factory=None, create=False)
        out = []
        for key in sorted(box.keys()):
            with box.get_file(key) as f:
                msg = email.message_from_binary_file(f, policy=email.policy.default)
            assert isinstance(msg, EmailMessage)
            out.append(msg)
        return out

    def wait_for_messages(self, count: int, timeout: float = 10.0) -> list[EmailMessage]:
        deadline = time.monotonic() + timeout
        while True:
            msgs = self.messages()
            if len(msgs) >= count:
                return msgs
            if time.monotonic() > deadline:
                raise AssertionError(f"SMTP server got {len(msgs)} messages, expected {count}")
            time.sleep(0.05)


@pytest.fixture(scope="session")
def smtp_server(peers_dir: Path) -> Iterator[SmtpServer]:
    """aiosmtpd (``python -m aiosmtpd``) on 127.0.0.1 storing mail in a Maildir."""
    try:
        import aiosmtpd  # noqa: F401
    except ImportError:
        pytest.fail(f"aiosmtpd is not installed in this venv: {MAKE_TEST_HINT}", pytrace=False)
    port = free_port()
    maildir = peers_dir / "maildir"
    log = peers_dir / "smtp.log"
    peer = PeerProcess(
        "smtp_server",
        [
            sys.executable,
            "-m",
            "aiosmtpd",
            "-n",
            "-l",
            f"{HOST}:{port}",
            "-c",
            "aiosmtpd.handlers.Mailbox",
            maildir,
        ],
        log,
        env={"PYTHONWARNINGS": "ignore"},
    )
    _start(peer, port)
    yield SmtpServer(HOST, port, maildir, log)
    peer.stop()


# --- TURN (coturn) ---------------------------------------------------------------------


@dataclass(frozen=True)
class Coturn:
    host: str
    port: int  # UDP and TCP
    secret: str  # static auth secret (TURN REST API / use-auth-secret)
    realm: str
    log_path: Path

    @property
    def url(self) -> str:
        return f"turn:{self.host}:{self.port}?transport=udp"

    def credentials(self, name: str = "test", ttl: int = 3600) -> tuple[str, str]:
        """TURN REST credentials: user ``"<expiry>:<name>"``, password
        base64(HMAC-SHA1(secret, user))."""
        user = f"{int(time.time()) + ttl}:{name}"
        digest = hmac.new(self.secret.encode(), user.encode(), hashlib.sha1).digest()
        return user, base64.b64encode(digest).decode()

    def ice_server(self, name: str = "test", ttl: int = 3600) -> dict[str, Any]:
        user, password = self.credentials(name, ttl)
        return {"urls": [self.url], "username": user, "credential": password}


@pytest.fixture(scope="session")
def coturn(peers_dir: Path) -> Iterator[Coturn]:
    """turnserver on 127.0.0.1 (UDP+TCP, no TLS) with a random static auth secret;
    loopback peers allowed (for relay-only WebRTC tests inside a namespace)."""
    turnserver = require_binary("turnserver", "coturn")
    port = free_port(udp_too=True)
    secret = secrets.token_hex(16)
    realm = "openvisit.test"
    workdir = peers_dir / f"coturn-{port}"
    workdir.mkdir()
    log = peers_dir / "coturn.log"
    peer = PeerProcess(
        "coturn",
        [
            turnserver,
            "-n",
            f"--listening-ip={HOST}",
            f"--relay-ip={HOST}",
            f"--listening-port={port}",
            "--use-auth-secret",
            f"--static-auth-secret={secret}",
            f"--realm={realm}",
            "--allow-loopback-peers",
            "--no-tls",
            "--no-dtls",
            "--no-cli",
            "--log-file=stdout",
            "--simple-log",
            f"--pidfile={workdir / 'turnserver.pid'}",
            f"--db={workdir / 'turndb'}",
        ],
        log,
    )
    _start(peer, port)
    yield Coturn(HOST, port, secret, realm, log)
    peer.stop()


# --- HL7 v2 no-op peer ------------------------------------------------------------------


@dataclass(frozen=True)
class Hl7Peer:
    host: str
    port: int
    log_path: Path


@pytest.fixture(scope="session")
def hl7_noop_server(peers_dir: Path) -> Iterator[Hl7Peer]:
    """npm node-hl7-server on MLLP answering every message with an AA ACK (whose MSH-10
    is literally ``ACK``); the comparison peer for benchmarks."""
    node = _node()
    require_npm_package("node-hl7-server")
    port = free_port()
    log = peers_dir / "hl7_noop_server.log"
    peer = PeerProcess(
        "hl7_noop_server",
        [node, PEERS_DIR / "hl7_noop_server.mjs", "--port", str(port)],
        log,
        cwd=PEERS_DIR,
    )
    _start(peer, port, ready_line="READY hl7_noop_server")
    yield Hl7Peer(HOST, port, log)
    peer.stop()
