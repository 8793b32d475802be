"""Shared HTTP plumbing: JSON answers, the contract's error shape, and request parsing."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar, cast

from aiohttp import web

from app.auth import Principal, Unauthorized
from app.codec import WireError, dumps, loads_object

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = "2"
# aiohttp's `client_max_size`, which Faust leaves at its default: a longer body raises
# HTTPRequestEntityTooLarge on reading, answered 413 in the contract's shape by `api`.
MAX_BODY_BYTES = 1024**2


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


def unavailable(message: str) -> ApiError:
    """503 with Retry-After: the caller may try again; nothing was done."""
    return ApiError(503, "unavailable", message, {"Retry-After": RETRY_AFTER_SECONDS})


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=dumps(body), status=status, content_type="application/json", headers=headers
    )


def payload_too_large() -> ApiError:
    return ApiError(
        413, "payload_too_large", f"the request body is over {MAX_BODY_BYTES} bytes (1 MiB)"
    )


def error_response(err: ApiError) -> web.Response:
    return json_response(
        {"error": {"code": err.code, "message": err.message}}, err.status, err.headers
    )


F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def api(fn: F) -> F:
    """Every answer of a route in the contract's shape, whatever goes wrong inside.

    A POST's body is read first, whether the route uses it or not: a body over 1 MiB is 413 on
    every POST route, on the worker that takes the request (aiohttp keeps the bytes read)."""

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            request = next((a for a in args if isinstance(a, web.BaseRequest)), None)
            if request is not None and request.method == "POST":
                await request.read()
            return await fn(*args, **kwargs)
        except ApiError as err:
            return error_response(err)
        except web.HTTPRequestEntityTooLarge:
            return error_response(payload_too_large())
        except Unauthorized as exc:
            return error_response(ApiError(401, "unauthorized", str(exc)))
        except Exception:
            log.exception("unexpected error in %s", fn.__qualname__)
            return error_response(ApiError(500, "internal_error", "unexpected server error"))

    return cast(F, wrapper)


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The body through the codec every topic is read with: malformed or too deep JSON, huge
    numbers, NUL or lone surrogates in any string are 400 here, before any domain code."""
    raw = await request.read()
    try:
        return loads_object(raw)
    except WireError as exc:
        raise ApiError(400, "invalid_request", f"body must be a JSON object: {exc}") from None


def require_admin(principal: Principal) -> None:
    if not principal.is_admin:
        raise ApiError(403, "forbidden", "this route needs the admin role")


def not_found(what: str = "funded account") -> ApiError:
    return ApiError(404, "not_found", f"{what} not found")


def page(app: Any, path: str) -> Callable[[F], F]:
    """`app.page` for plain async handlers that answer aiohttp responses."""

    def decorate(fn: F) -> F:
        app.page(path)(fn)
        return fn

    return decorate
