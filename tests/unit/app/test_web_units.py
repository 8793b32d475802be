from __future__ import annotations

import time

import jwt
import pytest

from app.auth import TokenVerifier, Unauthorized
from app.idempotency import fingerprint
from app.ratelimit import RateLimiter
from app.settings import Settings

SECRET = "unit-test-secret-that-is-32-bytes-long"


def _verifier() -> TokenVerifier:
    return TokenVerifier(Settings.from_env({"JWT_SECRET": SECRET}))


def _token(claims: dict[str, object], key: str = SECRET) -> str:
    return "Bearer " + jwt.encode(claims, key, algorithm="HS256")


def test_valid_token_gives_user_and_roles() -> None:
    p = _verifier().verify(_token({"sub": "u1", "roles": ["admin"], "exp": time.time() + 60}))
    assert p.user_id == "u1" and p.is_admin


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Basic abc",
        "Bearer ",
        _token({"sub": "u1", "exp": time.time() - 5}),
        _token({"sub": "u1"}),
        _token({"exp": time.time() + 60}),
        _token({"sub": "u1", "exp": time.time() + 60}, key="another-key-of-32-bytes-or-more-x"),
        _token({"sub": "u1", "roles": "admin", "exp": time.time() + 60}),
    ],
)
def test_bad_tokens_are_refused(header: str | None) -> None:
    with pytest.raises(Unauthorized):
        _verifier().verify(header)


def _exp() -> float:
    # Taken when the parameters are collected: an hour, so a long run before it never
    # turns these refusals into "token expired".
    return time.time() + 3600


@pytest.mark.parametrize(
    ("claims", "why"),
    [
        ({"sub": "u1", "exp": str(int(time.time()) + 3600)}, "'exp' must be a number"),
        ({"sub": "u1", "exp": f"{time.time() + 3600:.3f}"}, "exp"),
        ({"sub": " u1", "exp": _exp()}, "'sub' must be a non-empty string without padding"),
        ({"sub": "u1 ", "exp": _exp()}, "'sub' must be a non-empty string without padding"),
        ({"sub": "", "exp": _exp()}, "sub"),
        ({"sub": "u" * 201, "exp": _exp()}, "'sub' is longer than 200 characters"),
        ({"sub": "u1\x00", "exp": _exp()}, "'sub' holds NUL"),
        ({"sub": "u1\ud800", "exp": _exp()}, "'sub' holds a lone surrogate"),
        ({"sub": "u1", "roles": ["admin\x00"], "exp": _exp()}, "role holds NUL"),
        ({"sub": "u1", "roles": ["\udfff"], "exp": _exp()}, "role holds a lone surrogate"),
    ],
)
def test_claims_the_domain_would_refuse_are_refused_with_the_reason(
    claims: dict[str, object], why: str
) -> None:
    with pytest.raises(Unauthorized, match=why):
        _verifier().verify(_token(claims))


def test_exp_may_be_an_int_or_a_float_and_sub_up_to_200_characters() -> None:
    verifier = _verifier()
    assert verifier.verify(_token({"sub": "u1", "exp": int(time.time()) + 60})).user_id == "u1"
    assert verifier.verify(_token({"sub": "u1", "exp": time.time() + 60.5})).user_id == "u1"
    assert verifier.verify(_token({"sub": "u" * 200, "exp": _exp()})).user_id == "u" * 200
    with pytest.raises(Unauthorized):
        verifier.verify(_token({"sub": "u1", "exp": True}))


def test_verifier_needs_a_key() -> None:
    with pytest.raises(ValueError):
        TokenVerifier(Settings.from_env({}))


async def test_rate_limit_lets_requests_through_when_redis_is_down() -> None:
    # Port 1 on loopback: nothing listens, the connection is refused at once.
    limiter = RateLimiter("redis://127.0.0.1:1/0", per_minute=1)
    assert (await limiter.check("u1")).allowed
    assert (await limiter.check("u1")).allowed
    assert limiter.redis_failures == 2


def test_fingerprint_depends_on_route_and_body() -> None:
    a = fingerprint("/x", {"amount": "1.00"})
    assert a == fingerprint("/x", {"amount": "1.00"})
    assert a != fingerprint("/x", {"amount": "1.01"})
    assert a != fingerprint("/y", {"amount": "1.00"})


def test_fingerprint_does_not_depend_on_key_order() -> None:
    body = {"amount": "1.00", "payment_method": "stripe_connect", "destination": "acct_1"}
    reordered = {"destination": "acct_1", "amount": "1.00", "payment_method": "stripe_connect"}
    assert fingerprint("/x", body) == fingerprint("/x", reordered)
    nested = {"a": {"y": 1, "x": 2}}
    assert fingerprint("/x", nested) == fingerprint("/x", {"a": {"x": 2, "y": 1}})


def test_rs256_tokens_with_a_public_key() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    verifier = TokenVerifier(Settings.from_env({"JWT_PUBLIC_KEY": public_pem}))
    good = jwt.encode({"sub": "u9", "roles": [], "exp": time.time() + 60}, private, "RS256")
    assert verifier.verify(f"Bearer {good}").user_id == "u9"
    # An HS256 token signed with the public key text must not pass (algorithm confusion).
    with pytest.raises(Unauthorized):
        verifier.verify(_token({"sub": "u9", "exp": time.time() + 60}, key=SECRET))
