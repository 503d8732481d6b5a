"""Errors as HTTP problems: the `responses` each route declares, built by one helper, and the
handlers that turn the engine's refusals and bad requests into answers that name what to fix."""

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from thunder_dagster.serving.api.schemas import Problem
from thunder_dagster.serving.errors import (
    BaseUnavailable,
    Busy,
    Conflict,
    Forbidden,
    NotFound,
    OverLimit,
    RateLimited,
    ServingError,
    StoreUnavailable,
    TooLarge,
    Undeployed,
    UnknownAgent,
    Unreachable,
    WrongTask,
)

STATUS = {
    UnknownAgent: 404,
    Undeployed: 404,
    NotFound: 404,
    WrongTask: 409,
    Conflict: 409,
    Forbidden: 403,
    StoreUnavailable: 503,
    Unreachable: 503,
    BaseUnavailable: 503,
    Busy: 503,
    TooLarge: 413,
    RateLimited: 429,
}
# Seconds a client should wait before it tries a refused request again.
RETRY_AFTER = {Busy: 2, StoreUnavailable: 2}
# The answers a server with keys gives a request without the right one; an open server's
# document drops them (api/app.py), since it answers neither.
KEYED = {
    401: "no API key, or one that is not valid",
    403: "the key lacks the scope or the agent",
}
UNREADABLE_BODY = "the body cannot be read as JSON"
STORE_DOWN = "the query-log store is unavailable"


def described(problems: dict[int, str], *, body: bool = False, keyed: bool = True) -> dict:
    """A route's `responses`: each status with the Problem it answers and what it means."""
    declared = {400: UNREADABLE_BODY} if body else {}
    declared |= KEYED if keyed else {}
    declared |= problems
    return {
        status: {"model": Problem, "description": description}
        for status, description in sorted(declared.items())
    }


def field_error(field: str, message: str) -> RequestValidationError:
    """A 422 for a value the schema allows but this server's settings do not."""
    return RequestValidationError([{"loc": ("body", field), "msg": message, "type": "value_error"}])


async def unauthenticated(request: Request) -> JSONResponse | None:
    """The 401 (or 503) a keyed server gives a /v1 request without a valid key; None when the
    key is valid, the server is open, or the path needs none."""
    from starlette.concurrency import run_in_threadpool

    state = request.app.state.serving
    if not request.url.path.startswith("/v1/"):
        return None
    keys = await run_in_threadpool(state.keys.keys)  # may read the store: off the event loop
    if state.settings.auth == "open" and not keys:
        return None
    try:
        await run_in_threadpool(state.keys.authenticate, request)
    except HTTPException as error:
        request.state.problem = str(error.detail)[:500]
        return JSONResponse(
            {"detail": error.detail}, status_code=error.status_code, headers=error.headers
        )
    return None


def install(app: FastAPI) -> None:
    """The handlers; each notes its detail on the request for the audit trail."""

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        """A 422 naming each bad field. FastAPI's own handler echoes the input back, and an
        input of NaN, which JSON cannot carry, turned the 422 into a 500. A body that is not
        JSON is read before the route's key check: a caller without a valid key gets that
        check's 401 instead."""
        if any(problem["type"] == "json_invalid" for problem in error.errors()):
            refused = await unauthenticated(request)
            if refused is not None:
                return refused
        details = [
            {"loc": list(problem["loc"]), "msg": problem["msg"], "type": problem["type"]}
            for problem in error.errors()
        ]
        request.state.problem = "; ".join(str(d["msg"]) for d in details)[:500]
        return JSONResponse({"detail": details}, status_code=422)

    @app.exception_handler(ServingError)
    async def refused(request: Request, error: ServingError) -> JSONResponse:
        if isinstance(error, OverLimit):
            return await invalid_request(request, field_error(error.field, str(error)))
        request.state.problem = str(error)[:500]
        retry = getattr(error, "retry_after", None) or RETRY_AFTER.get(type(error))
        headers = {"Retry-After": str(retry)} if retry else None
        return JSONResponse(
            {"detail": str(error)}, status_code=STATUS[type(error)], headers=headers
        )

    @app.exception_handler(HTTPException)
    async def http_problem(request: Request, error: HTTPException) -> JSONResponse:
        request.state.problem = str(error.detail)[:500]
        return JSONResponse(
            {"detail": error.detail}, status_code=error.status_code, headers=error.headers
        )
