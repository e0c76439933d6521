"""Digest authentication (RFC 7616 / RFC 8760): challenges, verification, stale nonces, nc replay."""

from __future__ import annotations

import hashlib

import pytest

from ivr.sip.digest import (
    Credentials,
    DigestAuthenticator,
    DigestOutcome,
    expected_response,
    parse_authorization,
)

CREDS = Credentials("trunk1", "s3cret-pw")
URI = "sip:1000@192.0.2.1"
HOST = "192.0.2.10"


def _client(header: str, *, nc: str = "1", **over: str) -> str:
    """A UAC's Authorization for a challenge, computed here with hashlib (not with the module under test);
    `over` changes password, method, username, uri, nonce, algorithm or qop."""
    password, method = over.get("password", "s3cret-pw"), over.get("method", "INVITE")
    params = parse_authorization(header)
    assert params is not None
    algorithm = params["algorithm"]
    h = {"SHA-256": hashlib.sha256, "MD5": hashlib.md5}[algorithm]
    username, uri, cnonce, nc_text = (
        over.get("username", "trunk1"),
        over.get("uri", URI),
        "0a4f113b",
        f"{int(nc):08x}",
    )
    ha1 = h(f"{username}:{params['realm']}:{password}".encode()).hexdigest()
    ha2 = h(f"{method}:{uri}".encode()).hexdigest()
    response = h(f"{ha1}:{params['nonce']}:{nc_text}:{cnonce}:auth:{ha2}".encode()).hexdigest()
    fields = {
        "username": f'"{username}"',
        "realm": f'"{params["realm"]}"',
        "nonce": f'"{over.get("nonce", params["nonce"])}"',
        "uri": f'"{uri}"',
        "response": f'"{response}"',
        "algorithm": over.get("algorithm", algorithm),
        "qop": over.get("qop", "auth"),
        "nc": nc_text,
        "cnonce": f'"{cnonce}"',
    }
    return "Digest " + ", ".join(f"{k}={v}" for k, v in fields.items() if v)


def test_rfc7616_example_responses() -> None:
    # RFC 7616 §3.9.1: the same request digested with MD5 and SHA-256.
    params = {
        "username": "Mufasa",
        "realm": "http-auth@example.org",
        "nonce": "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
        "uri": "/dir/index.html",
        "nc": "00000001",
        "cnonce": "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
    }
    assert expected_response(params, "GET", "Circle of Life", "MD5") == "8ca523f5e9506fed4657c9700eebdbec"
    assert (
        expected_response(params, "GET", "Circle of Life", "SHA-256")
        == "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
    )


def test_challenges_offer_sha256_then_md5_with_qop_auth() -> None:
    auth = DigestAuthenticator("ivr", secret=b"k" * 32)
    headers = auth.challenges(HOST, 10.0)
    assert [name for name, _ in headers] == ["WWW-Authenticate", "WWW-Authenticate"]
    parsed = [parse_authorization(value) for _, value in headers]
    assert [p and p["algorithm"] for p in parsed] == ["SHA-256", "MD5"]
    assert all(p and p["qop"] == "auth" and p["realm"] == "ivr" and "stale" not in p for p in parsed)
    stale = parse_authorization(auth.challenges(HOST, 10.0, stale=True)[0][1])
    assert stale is not None and stale["stale"] == "true"


@pytest.mark.parametrize("algorithm_index", [0, 1], ids=["SHA-256", "MD5"])
def test_right_password_accepted_then_replay_refused(algorithm_index: int) -> None:
    auth = DigestAuthenticator("ivr")
    challenge = auth.challenges(HOST, 10.0)[algorithm_index][1]
    first = _client(challenge, nc="1")
    assert auth.verify("INVITE", URI, [first], CREDS, HOST, 11.0) is DigestOutcome.ACCEPTED
    assert auth.verify("INVITE", URI, [first], CREDS, HOST, 12.0) is DigestOutcome.REPLAYED
    assert (
        auth.verify("INVITE", URI, [_client(challenge, nc="2")], CREDS, HOST, 12.0) is DigestOutcome.ACCEPTED
    )
    assert (
        auth.verify("INVITE", URI, [_client(challenge, nc="2")], CREDS, HOST, 12.0) is DigestOutcome.REPLAYED
    )


CASES = [
    ("wrong password", {"password": "guess"}, DigestOutcome.REJECTED),
    ("wrong username", {"username": "admin"}, DigestOutcome.REJECTED),
    ("other request uri", {"uri": "sip:2000@192.0.2.1"}, DigestOutcome.REJECTED),
    ("other method", {"method": "REGISTER"}, DigestOutcome.REJECTED),
    ("no qop (RFC 2069)", {"qop": ""}, DigestOutcome.REJECTED),
    ("unknown algorithm", {"algorithm": "SHA-512-256"}, DigestOutcome.REJECTED),
    ("forged nonce, wrong password", {"nonce": "1f4.0000", "password": "x"}, DigestOutcome.REJECTED),
]


@pytest.mark.parametrize(("name", "change", "outcome"), CASES, ids=[c[0] for c in CASES])
def test_bad_credentials(name: str, change: dict[str, str], outcome: DigestOutcome) -> None:
    auth = DigestAuthenticator("ivr")
    challenge = auth.challenges(HOST, 10.0)[1][1]
    header = _client(challenge, **change)
    assert auth.verify("INVITE", URI, [header], CREDS, HOST, 11.0) is outcome
    assert auth.tracked_nonces == 0  # nothing is remembered for a request that did not verify


def test_nonce_from_another_host_or_process_is_stale_never_accepted() -> None:
    auth = DigestAuthenticator("ivr")
    challenge = auth.challenges(HOST, 10.0)[0][1]
    header = _client(challenge)
    assert auth.verify("INVITE", URI, [header], CREDS, "198.51.100.7", 11.0) is DigestOutcome.STALE
    restarted = DigestAuthenticator("ivr")  # a new per-process secret
    assert restarted.verify("INVITE", URI, [header], CREDS, HOST, 11.0) is DigestOutcome.STALE
    wrong = _client(challenge, password="guess")
    assert restarted.verify("INVITE", URI, [wrong], CREDS, HOST, 11.0) is DigestOutcome.REJECTED
    assert restarted.tracked_nonces == 0


def test_algorithms_can_be_narrowed_for_uacs_that_read_one_challenge() -> None:
    auth = DigestAuthenticator("ivr", algorithms=("MD5",))
    (only,) = auth.challenges(HOST, 10.0)
    assert "algorithm=MD5" in only[1]
    sha = _client(DigestAuthenticator("ivr").challenges(HOST, 10.0)[0][1])  # a SHA-256 answer
    assert auth.verify("INVITE", URI, [sha], CREDS, HOST, 11.0) is DigestOutcome.REJECTED
    assert auth.verify("INVITE", URI, [_client(only[1])], CREDS, HOST, 11.0) is DigestOutcome.ACCEPTED
    with pytest.raises(ValueError, match="digest algorithms"):
        DigestAuthenticator("ivr", algorithms=("SHA-512",))


def test_expired_nonce_is_stale_only_with_the_right_password() -> None:
    auth = DigestAuthenticator("ivr", nonce_lifetime=60.0)
    challenge = auth.challenges(HOST, 10.0)[0][1]
    assert auth.verify("INVITE", URI, [_client(challenge)], CREDS, HOST, 71.0) is DigestOutcome.STALE
    wrong = _client(challenge, password="guess")
    assert auth.verify("INVITE", URI, [wrong], CREDS, HOST, 71.0) is DigestOutcome.REJECTED


def test_missing_or_foreign_realm_is_missing() -> None:
    auth = DigestAuthenticator("ivr")
    assert auth.verify("INVITE", URI, [], CREDS, HOST, 1.0) is DigestOutcome.MISSING
    other = _client(auth.challenges(HOST, 1.0)[0][1]).replace('realm="ivr"', 'realm="elsewhere"')
    assert (
        auth.verify("INVITE", URI, [other, "Basic dXNlcjpwdw=="], CREDS, HOST, 1.0) is DigestOutcome.MISSING
    )


def test_replay_table_is_bounded_and_forgets_expired_nonces() -> None:
    auth = DigestAuthenticator("ivr", nonce_lifetime=10.0, max_tracked=3)
    for i in range(5):
        header = _client(auth.challenges(HOST, float(i))[0][1])
        assert auth.verify("INVITE", URI, [header], CREDS, HOST, float(i)) is DigestOutcome.ACCEPTED
    assert auth.tracked_nonces == 3
    header = _client(auth.challenges(HOST, 100.0)[0][1])
    assert auth.verify("INVITE", URI, [header], CREDS, HOST, 100.0) is DigestOutcome.ACCEPTED
    assert auth.tracked_nonces == 1


def test_password_is_not_in_repr() -> None:
    assert "s3cret-pw" not in repr(CREDS)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('Digest username="a\\"b", nc=00000001', {"username": 'a"b', "nc": "00000001"}),
        ("Basic abc", None),
        ('Digest username="unterminated', None),
    ],
)
def test_parse_authorization(value: str, expected: dict[str, str] | None) -> None:
    assert parse_authorization(value) == expected
