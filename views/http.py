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


def error_response(err: ApiError) -> web.Response:
    return json_response(
        {"error": {"code": err.code, "message": err.message}}, err.status, err.headers
    )


F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def api(fn: F) -> F:
    """Every answer of a route in the contract's shape, whatever goes wrong inside."""

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return await fn(*args, **kwargs)
        except ApiError as err:
            return error_response(err)
        except Unauthorized as exc:
            return error_response(ApiError(401, "unauthorized", str(exc)))
        except Exception:
            log.exception("unexpected error in %s", fn.__qualname__)
            return error_response(ApiError(500, "internal_error", "unexpected server error"))

    return cast(F, wrapper)


async def read_json_object(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    try:
        return loads_object(raw)
    except WireError as exc:
        raise ApiError(400, "invalid_request", f"body must be a JSON object: {exc}") from None
    except RecursionError:
        raise ApiError(400, "invalid_request", "body is nested too deeply") from None
    except ValueError as exc:
        # e.g. an integer literal past Python's 4300-digit conversion limit
        raise ApiError(400, "invalid_request", f"body cannot be parsed: {exc}") from None


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
