"""PKCE (RFC 7636) and state/nonce generation."""

from __future__ import annotations

import re

import pytest

from openvisit.errors import InvalidInput
from openvisit.smart.pkce import Pkce, code_challenge_s256, new_code_verifier
from openvisit.smart.state import new_nonce, new_state, values_match


def test_it_matches_rfc7636_appendix_b_vector() -> None:
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert code_challenge_s256(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_it_makes_256_bit_verifiers_of_legal_length() -> None:
    verifiers = {new_code_verifier() for _ in range(50)}
    assert len(verifiers) == 50
    for verifier in verifiers:
        assert len(verifier) == 43
        assert re.fullmatch(r"[A-Za-z0-9\-._~]+", verifier)
    assert len(new_code_verifier(nbytes=96)) == 128


@pytest.mark.parametrize("nbytes", [31, 97])
def test_it_refuses_verifier_sizes_outside_rfc_bounds(nbytes: int) -> None:
    with pytest.raises(InvalidInput):
        new_code_verifier(nbytes=nbytes)


@pytest.mark.parametrize("bad", ["short", "a" * 129, "x" * 42 + "!", "é" * 43])
def test_it_refuses_malformed_verifiers(bad: str) -> None:
    with pytest.raises(InvalidInput, match="43–128"):
        code_challenge_s256(bad)


def test_it_pairs_verifier_and_challenge_and_hides_the_verifier() -> None:
    pair = Pkce.new()
    assert pair.challenge == code_challenge_s256(pair.verifier)
    assert pair.method == "S256"
    assert pair.verifier not in repr(pair)


def test_it_makes_unguessable_state_and_nonce() -> None:
    values = {new_state() for _ in range(100)} | {new_nonce() for _ in range(100)}
    assert len(values) == 200
    # token_urlsafe(32): 32 random bytes = 256 bits ≥ the 122 bits SMART asks for.
    assert all(len(v) == 43 for v in values)


def test_it_compares_state_safely() -> None:
    state = new_state()
    assert values_match(state, state)
    assert not values_match(state, state[:-1] + ("A" if state[-1] != "A" else "B"))
    assert not values_match(state, None)
    assert not values_match("", "")
