"""The pure parts: join tokens, TURN credentials, signalling messages, who sees whom."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid

import pytest

from openvisit.config import Settings
from openvisit.signalling import protocol as p
from openvisit.visits.roster import Seat, VisitFacts, may_signal, view_for
from openvisit.visits.tokens import JoinLinks, participant_id_of
from openvisit.visits.turn import ice_config, turn_credentials

PID, VID = uuid.uuid4(), uuid.uuid4()


def test_it_makes_stable_tokens_bound_to_seat_visit_role_and_version() -> None:
    links = JoinLinks("k" * 40)
    token = links.make(participant_id=PID, visit_id=VID, role="patient", token_version=0)
    assert token == links.make(participant_id=PID, visit_id=VID, role="patient", token_version=0)
    assert participant_id_of(token) == PID
    assert links.verify(token, participant_id=PID, visit_id=VID, role="patient", token_version=0)
    for changed in ({"visit_id": uuid.uuid4()}, {"role": "provider"}, {"token_version": 1}):
        args = {"participant_id": PID, "visit_id": VID, "role": "patient", "token_version": 0}
        assert not links.verify(token, **{**args, **changed})  # type: ignore[arg-type]
    assert not JoinLinks("other" * 10).verify(
        token, participant_id=PID, visit_id=VID, role="patient", token_version=0)
    _head, mac = token.split(".")
    assert len(base64.urlsafe_b64decode(mac + "==")) == 24  # 192-bit MAC


@pytest.mark.parametrize("bad", ["", "abc", "a.b", "!!!!.xx", "x" * 200, "AAAA.AAAA",
                                 base64.urlsafe_b64encode(b"short").decode() + ".x"])
def test_it_rejects_malformed_tokens(bad: str) -> None:
    assert participant_id_of(bad) is None


def test_it_issues_turn_rest_credentials_coturn_accepts() -> None:
    user, credential = turn_credentials("s3cret", user="p1", ttl_seconds=600, now=1_000_000)
    assert user == "1000600:p1"
    expected = base64.b64encode(hmac.new(b"s3cret", user.encode(), hashlib.sha1).digest())
    assert credential == expected.decode()


def test_it_offers_turn_only_when_configured_and_passes_the_ice_policy() -> None:
    base = {"_env_file": None, "stun_urls": ["stun:stun.example:3478"]}
    plain = ice_config(Settings(**base), participant_id=PID)  # type: ignore[arg-type]
    assert plain["iceServers"] == [{"urls": ["stun:stun.example:3478"]}]
    assert plain["iceTransportPolicy"] == "all"
    relay = ice_config(Settings(**base, turn_urls=["turn:t:3478"], turn_secret="x",  # type: ignore[arg-type]
                                ice_transport_policy="relay"), participant_id=PID, now=10)
    turn = relay["iceServers"][1]
    assert turn["username"] == f"3610:{PID}" and turn["urls"] == ["turn:t:3478"]
    assert relay["iceTransportPolicy"] == "relay"


def test_it_parses_valid_messages_and_strips_unknown_candidate_fields() -> None:
    hello = p.parse(json.dumps({"type": "hello", "token": "t" * 20, "session": "abcdefgh1"}))
    assert isinstance(hello, p.Hello) and hello.session == "abcdefgh1"
    cand = p.parse(json.dumps({"type": "candidate", "to": str(PID), "candidate": {
        "candidate": "candidate:1 1 udp 1 127.0.0.1 5000 typ host", "sdpMid": "0", "x": 1}}))
    assert isinstance(cand, p.PeerSignal) and cand.candidate == {
        "candidate": "candidate:1 1 udp 1 127.0.0.1 5000 typ host", "sdpMid": "0"}
    end = p.parse(json.dumps({"type": "candidate", "to": str(PID), "candidate": None}))
    assert isinstance(end, p.PeerSignal) and end.relay_body() == {"type": "candidate",
                                                                  "candidate": None}
    quality = p.parse(json.dumps({"type": "quality", "rtt_ms": 20, "frame_width": 640.0}))
    assert isinstance(quality, p.Quality) and quality.values == {"rtt_ms": 20.0,
                                                                 "frame_width": 640}


@pytest.mark.parametrize(("frame", "code"), [
    ("not json", "bad_json"),
    ("[]", "bad_message"),
    ('{"type": "dance"}', "unknown_type"),
    ('{"type": "hello", "token": "short", "session": "abcdefgh"}', "bad_hello"),
    ('{"type": "hello", "token": "tttttttttttt", "session": "no spaces!"}', "bad_hello"),
    ('{"type": "offer", "to": "nobody", "sdp": "v=0"}', "bad_target"),
    (json.dumps({"type": "offer", "to": str(PID), "sdp": ""}), "bad_sdp"),
    (json.dumps({"type": "answer", "to": str(PID), "sdp": "x" * 50_000}), "bad_sdp"),
    (json.dumps({"type": "candidate", "to": str(PID), "candidate": "x"}), "bad_candidate"),
    (json.dumps({"type": "quality", "packet_loss_pct": 101}), "bad_quality"),
    (json.dumps({"type": "quality", "rtt_ms": True}), "bad_quality"),
    ("x" * (p.MAX_FRAME_BYTES + 1), "too_large"),
])
def test_it_refuses_malformed_messages_with_a_code(frame: str, code: str) -> None:
    with pytest.raises(p.ProtocolError) as caught:
        p.parse(frame)
    assert caught.value.code == code


def test_it_allows_peer_signalling_only_once_admitted() -> None:
    offer = p.PeerSignal(type="offer", to=PID, sdp="v=0")
    hello = p.Hello(token="t" * 20, session="abcdefgh")
    table = {
        (p.Phase.NEW, "hello"): p.Verdict.OK, (p.Phase.NEW, "offer"): p.Verdict.NEED_HELLO,
        (p.Phase.LOBBY, "offer"): p.Verdict.REJECTED_BEFORE_ADMIT,
        (p.Phase.LOBBY, "quality"): p.Verdict.OK, (p.Phase.LOBBY, "leave"): p.Verdict.OK,
        (p.Phase.LOBBY, "hello"): p.Verdict.ALREADY_JOINED,
        (p.Phase.ADMITTED, "offer"): p.Verdict.OK, (p.Phase.CLOSED, "ping"): p.Verdict.CLOSED,
    }
    messages = {"hello": hello, "offer": offer, "quality": p.Quality(values={}),
                "leave": p.Leave(), "ping": p.Ping()}
    for (phase, kind), verdict in table.items():
        assert p.check(phase, messages[kind]) is verdict, (phase, kind)
    assert p.phase_of("waiting", visit_status="active") is p.Phase.LOBBY
    assert p.phase_of("admitted", visit_status="ended") is p.Phase.CLOSED
    assert p.phase_of("removed", visit_status="active") is p.Phase.CLOSED


def _seat(role: str, state: str, n: int = 1, *, connected: bool = True) -> Seat:
    return Seat(id=str(uuid.uuid4()), role=role, seat_no=n, label=f"{role} {n}", state=state,
                connected=connected, waiting_since="2030-01-01T10:00:00+00:00"
                if state == "waiting" else None, session="s" * 8, connection_id="s" * 8 + ".x",
                rev=1)


def test_it_shows_each_role_only_what_it_may_see() -> None:
    doc, waiting, inside, away = (_seat("provider", "admitted"), _seat("patient", "waiting"),
                                  _seat("patient", "admitted", 2),
                                  _seat("interpreter", "admitted", connected=False))
    seats = {s.id: s for s in (doc, waiting, inside, away)}
    visit = VisitFacts(id="v", status="active")

    lobby = view_for(waiting, seats, visit)
    assert lobby == {"you": {"id": waiting.id, "role": "patient", "n": 1, "state": "waiting",
                             "waiting_since": waiting.waiting_since},
                     "visit": {"status": "active"}, "peers": []}

    patient = view_for(inside, seats, visit)
    assert [peer["id"] for peer in patient["peers"]] == [doc.id]  # connected + admitted only
    assert "label" not in patient["peers"][0] and "roster" not in patient
    shown = view_for(inside, seats, VisitFacts(id="v", status="active",
                                                provider_label_mode="display"))
    assert shown["peers"][0]["label"] == doc.label

    staff = view_for(doc, seats, visit)
    assert {peer["id"] for peer in staff["peers"]} == {inside.id}
    assert {row["id"]: row["state"] for row in staff["roster"]} == {
        doc.id: "admitted", waiting.id: "waiting", inside.id: "admitted", away.id: "admitted"}
    assert next(r for r in staff["roster"] if r["id"] == waiting.id)["waiting_since"]
    assert view_for(doc, seats, visit.with_status("ended"))["peers"] == []

    assert may_signal(doc, inside) and may_signal(inside, doc)
    assert not may_signal(waiting, doc) and not may_signal(doc, waiting)
    assert not may_signal(doc, doc) and not may_signal(None, doc)


# ---------------------------------------------------------------- canonical tokens, strict JSON

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

LINKS = JoinLinks("k" * 40)
uuids = st.uuids()


def _seat_token(pid: uuid.UUID, vid: uuid.UUID) -> str:
    return LINKS.make(participant_id=pid, visit_id=vid, role="patient", token_version=0)


def _verify(token: str, pid: uuid.UUID, vid: uuid.UUID) -> bool:
    return LINKS.verify(token, participant_id=pid, visit_id=vid, role="patient", token_version=0)


def _respellings(token: str) -> list[str]:
    """Other ways to write the same bytes, or the token with something added."""
    head, mac = token.split(".")
    out = [f"{head}==.{mac}", f"{head}.{mac}=", f"{head}.{mac}==", token + ".", token + "x",
           token + " ", " " + token, token + "\n", token.replace("-", "+").replace("_", "/"),
           token.swapcase(), token.upper(), token.lower(), f"{head}..{mac}",
           f"{head}.{mac}.{mac}"]
    # A 16-byte id takes 22 characters whose last one carries 4 unused bits: the 15 other
    # characters with the same 2 leading bits decode to the same id.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(head[-1])
    out += [f"{head[:-1]}{alphabet[i]}.{mac}" for i in range(64)
            if i >> 4 == last >> 4 and i != last]
    return [t for t in out if t != token]


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(pid=uuids, vid=uuids)
def test_it_accepts_exactly_one_spelling_of_each_join_token(pid: uuid.UUID, vid: uuid.UUID) -> None:
    token = _seat_token(pid, vid)
    assert _verify(token, pid, vid) and participant_id_of(token) == pid
    for other in _respellings(token):
        assert not _verify(other, pid, vid), other
        # No other spelling of the head names the same seat (then the MAC decides).
        assert participant_id_of(other) != pid or other.split(".")[0] == token.split(".")[0]


@settings(max_examples=300)
@given(pid=uuids, vid=uuids, text=st.text(max_size=140))
def test_it_verifies_no_string_but_the_token_itself(
    pid: uuid.UUID, vid: uuid.UUID, text: str
) -> None:
    token = _seat_token(pid, vid)
    for candidate in (text, token[: len(text) % len(token)] + text, token + text):
        if candidate != token:
            assert not _verify(candidate, pid, vid)
        named = participant_id_of(candidate)
        # Whatever names a seat, names it in its one canonical spelling.
        if named is not None:
            head = candidate.split(".")[0]
            assert base64.urlsafe_b64encode(named.bytes).rstrip(b"=").decode() == head


json_leaves = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40)
json_values = st.recursive(json_leaves, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=12), inner, max_size=4),
                           max_leaves=30)
kinds = st.sampled_from(["hello", "ping", "leave", "quality", "offer", "answer", "candidate",
                         "restart", "welcome", "bye", "", "HELLO", "x" * 100])


def _frames() -> st.SearchStrategy[str | bytes]:
    keyed = st.fixed_dictionaries({"type": kinds}, optional={
        "to": json_values | st.just(str(PID)), "sdp": json_values, "candidate": json_values,
        "t": json_values, "token": json_values, "session": json_values, "lang": json_values,
        "rtt_ms": json_values, "frame_width": json_values})
    as_text = keyed.map(lambda d: json.dumps(d, allow_nan=True))
    nested = st.integers(min_value=1, max_value=100_000).map(lambda n: "[" * n + "]" * n)
    bombs = st.sampled_from([
        '{"type":"ping","t":NaN}', '{"type":"ping","t":Infinity}', '{"type":"ping","t":-Infinity}',
        '{"type":"ping","t":1e400}', '{"type":"ping","t":' + "9" * 400 + "}",
        '{"type":"ping","t":' + "9" * 5000 + "}", '{"type":"quality","rtt_ms":NaN}',
        '{"type":"candidate","to":"' + str(PID) + '","candidate":{"candidate":NaN}}',
        '{"type":"candidate","to":"' + str(PID) + '","candidate":{"sdpMid":[[[[]]]]}}',
        '{"type":"hello","token":' + "[" * 5000 + "]" * 5000 + "}", "\ud800", '"\\ud800"',
        '{"type": "ping", "type": "offer"}', "{}", "[]", "null", "1", '"ping"', ""])
    return as_text | nested | bombs | st.binary(max_size=200) | st.text(max_size=200)


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(frame=_frames())
def test_it_parses_any_frame_into_a_message_or_a_protocol_error(frame: str | bytes) -> None:
    try:
        message = p.parse(frame)
    except p.ProtocolError as exc:
        assert exc.code and exc.message
        return
    # Anything accepted re-encodes as strict JSON (no NaN/Infinity reaches a browser) and,
    # if it is relayed, carries only the fields of its kind with their types.
    if isinstance(message, p.PeerSignal):
        body = message.relay_body()
        json.dumps(body, allow_nan=False)
        cand = body.get("candidate")
        if cand is not None:
            assert set(cand) <= {"candidate", "sdpMid", "sdpMLineIndex", "usernameFragment"}
            assert isinstance(cand.get("candidate", ""), str)
            assert cand.get("sdpMid") is None or isinstance(cand["sdpMid"], str)
            index = cand.get("sdpMLineIndex")
            assert index is None or (type(index) is int and 0 <= index <= 65535)
    elif isinstance(message, p.Ping):
        assert p.encode("pong", t=message.t) == json.dumps(
            {"type": "pong", "t": message.t}, allow_nan=False, separators=(",", ":"))
    elif isinstance(message, p.Quality):
        json.dumps(message.values, allow_nan=False)


# ---------------------------------------------------------------- staff addresses behind TURN

HOST = "candidate:1 1 udp 2122260223 10.20.30.40 50000 typ host generation 0"
SRFLX = "candidate:2 1 udp 1686052607 203.0.113.9 40000 typ srflx raddr 10.20.30.40 rport 50000"
RELAY = ("candidate:3 1 udp 41885439 198.51.100.3 61000 typ relay raddr 203.0.113.9 "
         "rport 40000 generation 0")
MDNS = "candidate:4 1 udp 2122260223 5f0c1a2b-aaaa.local 50001 typ host"


def test_it_gives_staff_relay_only_ice_when_the_setting_says_so() -> None:
    from openvisit.errors import ConfigurationError

    turn = {"turn_urls": ["turn:t:3478"], "turn_secret": "x"}
    hide = Settings(_env_file=None, staff_ice_transport_policy="relay", **turn)  # type: ignore[call-arg,arg-type]
    assert ice_config(hide, participant_id=PID, staff=True)["iceTransportPolicy"] == "relay"
    assert ice_config(hide, participant_id=PID)["iceTransportPolicy"] == "all"
    default = Settings(_env_file=None, **turn)  # type: ignore[call-arg,arg-type]
    assert ice_config(default, participant_id=PID, staff=True)["iceTransportPolicy"] == "all"
    # Without TURN there is nothing to hide behind: refused at start-up, with what to set.
    from openvisit.config import load_settings

    with pytest.raises(ConfigurationError, match="OPENVISIT_TURN_URLS"):
        load_settings(_env_file=None, staff_ice_transport_policy="relay")


def test_it_filters_staff_candidates_and_sdp_down_to_relays_without_addresses() -> None:
    from openvisit.signalling.ice import hide_in_candidate, hide_in_sdp

    for line in (HOST, SRFLX, MDNS):
        assert hide_in_candidate({"candidate": line, "sdpMid": "0"}) is False
    relayed = hide_in_candidate({"candidate": RELAY, "sdpMid": "0", "sdpMLineIndex": 0})
    assert isinstance(relayed, dict)
    assert relayed["candidate"].startswith("candidate:3 1 udp 41885439 198.51.100.3 61000 typ")
    assert "raddr 0.0.0.0 rport 0" in relayed["candidate"] and "203.0.113.9" not in str(relayed)
    assert hide_in_candidate(None) is None  # end-of-candidates passes
    assert hide_in_candidate({"candidate": ""}) == {"candidate": ""}
    sdp = "\r\n".join([
        "v=0", "o=- 1 2 IN IP4 127.0.0.1", "s=-", "t=0 0", "m=audio 50000 UDP/TLS/RTP/SAVPF 111",
        "c=IN IP4 10.20.30.40", "a=rtcp:50000 IN IP4 10.20.30.40", f"a={HOST}", f"a={SRFLX}",
        f"a={RELAY}", f"a={MDNS}", "a=end-of-candidates", "m=video 9 UDP/TLS/RTP/SAVPF 96",
        "c=IN IP6 2001:db8::7", ""])
    hidden = hide_in_sdp(sdp)
    for address in ("10.20.30.40", "203.0.113.9", "2001:db8::7", ".local"):
        assert address not in hidden, address
    assert "198.51.100.3 61000 typ relay raddr 0.0.0.0 rport 0" in hidden
    assert hidden.count("c=IN IP4 0.0.0.0") == 2 and "a=rtcp:50000 IN IP4 0.0.0.0" in hidden
    assert hidden.startswith("v=0\r\n") and hidden.endswith("\r\n")
    assert "a=end-of-candidates" in hidden


def test_it_keeps_within_a_seat_s_record_budget_and_counts_what_it_left_out() -> None:
    from openvisit.visits.records import RECORD_BURST, RECORD_REFILL_SECONDS, spend

    budget: dict[str, object] | None = None
    stored = 0
    for _ in range(1000):  # a thousand reconnects within the same second
        store, suppressed, budget = spend(budget, group="presence", now=1000.0)
        stored += store
        assert suppressed == 0
    assert stored == RECORD_BURST
    # Once a row's worth has refilled, the next row is stored and says how many were not.
    store, suppressed, budget = spend(budget, group="presence",
                                      now=1000.0 + RECORD_REFILL_SECONDS)
    assert store and suppressed == 1000 - RECORD_BURST
    # Groups are separate: refusals have their own budget.
    assert spend(budget, group="refused", now=1000.0)[0]
    # A damaged budget starts afresh rather than failing.
    assert spend({"presence": "garbage"}, group="presence", now=1.0)[0]


def test_it_counts_sockets_before_hello_per_address_and_ipv6_per_slash_64() -> None:
    from openvisit.signalling.limits import HelloGate, TokenBucket, address_key

    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2:ffff::9") == (
        "2001:db8:1:2::/64")
    assert address_key("2001:db8:1:3::1") != address_key("2001:db8:1:2::1")
    assert address_key("::ffff:192.0.2.1") == address_key("192.0.2.1") == "192.0.2.1"
    assert address_key(None) == "unknown"
    gate = HelloGate(per_address=2, total=3)
    assert gate.enter("a") and gate.enter("a") and not gate.enter("a")
    assert gate.enter("b") and not gate.enter("c")  # the process is full
    gate.leave("a")
    assert gate.enter("c") and gate.held() == 3 and gate.held("a") == 1
    gate.leave("zzz")  # leaving without a place is harmless
    assert gate.held() == 3
    bucket = TokenBucket(3, 1.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(1.0) and not bucket.take(1.0)
