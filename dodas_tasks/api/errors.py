"""Errors as the orchestrator answers them: its status codes and its body {"code", "title", "message"}.

Every failure the API reports goes through ApiError or these handlers: one line saying why, never a traceback.
"""

from __future__ import annotations

import logging
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

log = logging.getLogger(__name__)


class ErrorBody(BaseModel):
    code: int
    title: str
    message: str


class ApiError(Exception):
    """An answer other than success; `headers` e.g. WWW-Authenticate for 401."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = ErrorBody(code=status, title=HTTPStatus(status).phrase, message=message)
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def unauthorized(reason: str) -> ApiError:
    """401 with the reason, also in WWW-Authenticate as RFC 6750 asks."""
    quoted = reason.replace("\\", "\\\\").replace('"', "'")
    return ApiError(401, reason, {"WWW-Authenticate": f'Bearer error="invalid_token", error_description="{quoted}"'})


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ())[1:]) or "body"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(400, _validation_message(exc))

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
        return error_response(500, f"the service failed to answer ({type(exc).__name__}); see its log")
