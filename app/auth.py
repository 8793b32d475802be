"""Bearer tokens (CONTRACT.md section 7): `sub` is the user, `roles` a list, `exp` required."""

from __future__ import annotations

from dataclasses import dataclass

import jwt

from app.settings import Settings


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
        sub = claims.get("sub")
        roles = claims.get("roles", [])
        if not isinstance(sub, str) or not sub:
            raise Unauthorized("token 'sub' must be a non-empty string")
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise Unauthorized("token 'roles' must be a list of strings")
        return Principal(user_id=sub, roles=frozenset(roles))
