"""Pages from templates: every value HTML-escaped (autoescape), scripts only from the app's own static files (CSP),
and errors as a page saying why (pages) or as the orchestrator's JSON error body (actions)."""

from __future__ import annotations

from http import HTTPStatus
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from dodas_tasks.api.errors import error_response

HERE = Path(__file__).parent
TEMPLATES = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True, undefined=StrictUndefined)
# Scripts and styles only from our own static files: no inline script can run, whatever a page shows.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "frame-ancestors 'self'; base-uri 'none'; form-action 'self'; object-src 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def base_path(request: Request) -> str:
    """Where the pages live as the browser sees them (the plugin's mount point, or '' when served alone)."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def render(request: Request, template: str, *, http_status: int = 200, **context: Any) -> HTMLResponse:
    """A page (or a page's live part) from a template, every value HTML-escaped."""
    html = TEMPLATES.get_template(template).render(base=base_path(request), **context)
    return HTMLResponse(html, status_code=http_status, headers=PAGE_HEADERS)


def error(request: Request, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """Actions (POST) get the orchestrator's JSON error body; pages get a page saying why."""
    if request.method != "GET":
        return error_response(status, message, headers)
    page = render(
        request, "error.html", http_status=status, title=HTTPStatus(status).phrase, message=message, status=status
    )
    page.headers.update(headers or {})
    return page
