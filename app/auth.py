"""Bearer tokens (CONTRACT.md section 7): `sub` is the user, `roles` a list, `exp` a number.

The library decodes the claims' JSON itself, so what the codec refuses everywhere else (NUL, lone
surrogates) is refused here, and `sub` must be an id the domain takes (domain/validation.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import jwt

from app.settings import Settings
from domain.validation import InvalidText, check_id, poison_in


class Unauthorized(Exception):
    """Missing, malformed, badly signed or expired token."""


@dataclass(frozen=True)
class Principal:
    user_id: str
    roles: frozenset[str]

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles


class TokenVerifier:
    def __init__(self, settings: Settings) -> None:
        if settings.jwt_public_key:
            self._key: str = settings.jwt_public_key
            self._algorithms = ["RS256"]
        elif settings.jwt_secret:
            self._key = settings.jwt_secret
            self._algorithms = ["HS256"]
        else:
            raise ValueError("JWT_SECRET or JWT_PUBLIC_KEY is required")

    def verify(self, authorization: str | None) -> Principal:
        if not authorization:
            raise Unauthorized("missing bearer token")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("expected 'Authorization: Bearer <token>'")
        try:
            claims = jwt.decode(
                token.strip(),
                self._key,
                algorithms=self._algorithms,
                options={"require": ["exp", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("token expired") from None
        except (jwt.PyJWTError, ValueError) as exc:  # ValueError: bytes that are not text
            raise Unauthorized(f"invalid token: {exc}") from None
        exp = claims.get("exp")
        if isinstance(exp, bool) or not isinstance(exp, int | float):
            # PyJWT takes anything int() takes, "1900000000" included; the contract says a number.
            raise Unauthorized("token 'exp' must be a number (seconds since the epoch)")
        sub = claims.get("sub")
        roles = claims.get("roles", [])
        if not isinstance(sub, str):
            raise Unauthorized("token 'sub' must be a string")
        try:
            # The user id the account agent's parser takes (the same check): a 'sub' it would
            # refuse must never get as far as a command.
            check_id(sub)
        except InvalidText as exc:
            raise Unauthorized(f"token 'sub' {exc.reason}") from None
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise Unauthorized("token 'roles' must be a list of strings")
        for role in roles:
            problem = poison_in(role)
            if problem is not None:
                raise Unauthorized(f"a token role {problem}")
        return Principal(user_id=sub, roles=frozenset(roles))
