"""Errors as HTTP problems: the `responses` each route declares, built by one helper, and the
handlers that turn the engine's refusals and bad requests into answers that name what to fix."""

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from thunder_dagster.serving.api.schemas import Problem
from thunder_dagster.serving.errors import (
    BaseUnavailable,
    Conflict,
    Forbidden,
    NotFound,
    OverLimit,
    ServingError,
    StoreUnavailable,
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
}
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


def install(app: FastAPI) -> None:
    """The handlers; each notes its detail on the request for the audit trail."""

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        """A 422 naming each bad field. FastAPI's own handler echoes the input back, and an
        input of NaN, which JSON cannot carry, turned the 422 into a 500."""
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
        return JSONResponse({"detail": str(error)}, status_code=STATUS[type(error)])

    @app.exception_handler(HTTPException)
    async def http_problem(request: Request, error: HTTPException) -> JSONResponse:
        request.state.problem = str(error.detail)[:500]
        return JSONResponse(
            {"detail": error.detail}, status_code=error.status_code, headers=error.headers
        )
