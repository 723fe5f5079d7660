"""The double's HTTP layer: a threaded stdlib server on 127.0.0.1, a regex router, call counting and fault
injection (error rates, latency per operation, hangs) applied before a request reaches the cloud state."""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    params: dict[str, str] = field(default_factory=dict)

    def arg(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None


@dataclass
class Response:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


class HttpError(Exception):
    """Raised by handlers: becomes a response with the service's own error body."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(status)
        self.status, self.body = status, body


@dataclass
class Faults:
    """What goes wrong, changed at run time by tests. `latency` maps an operation (e.g. "compute.servers.create")
    or "*" to seconds added before answering; `error_rate` of service calls answer one of `error_statuses`."""

    error_rate: float = 0.0
    error_statuses: tuple[int, ...] = (500, 503, 429)
    include_identity: bool = False
    latency: dict[str, float] = field(default_factory=dict)
    hang_rate: float = 0.0  # calls that sleep `hang_seconds` (longer than the client's timeout) before answering
    hang_seconds: float = 0.0
    seed: int | None = None


Handler = Callable[[Request], Response]


class Router:
    def __init__(self) -> None:
        self.routes: list[tuple[str, re.Pattern[str], str, Handler]] = []

    def add(self, method: str, pattern: str, op: str, handler: Handler) -> None:
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern.rstrip("/"))
        self.routes.append((method, re.compile(f"^{regex}/?$"), op, handler))

    def match(self, method: str, path: str) -> tuple[str, Handler, dict[str, str]] | None:
        for route_method, regex, op, handler in self.routes:
            found = regex.match(path)
            if found and route_method == method:
                return op, handler, found.groupdict()
        return None


class DoubleServer:
    """Serves a Router on a free loopback port in a thread; counts every call by operation."""

    def __init__(self, router: Router, faults: Faults, lock: threading.RLock, tick: Callable[[], None]) -> None:
        self.router, self.faults, self.lock, self.tick = router, faults, lock, tick
        self.authorize: Callable[[str, Request], None] | None = None  # raises HttpError(401) for bad tokens
        self.calls: Counter[str] = Counter()
        self.log: list[tuple[float, str, str, int]] = []  # (time, method, path, status)
        self._count_lock = threading.Lock()
        self._random = random.Random(faults.seed)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="openstack-double", daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)

    def _injected(self, op: str) -> Response | None:
        faults = self.faults
        delay = faults.latency.get(op, faults.latency.get("*", 0.0))
        if op.startswith("identity") and not faults.include_identity:
            return self._sleep(delay)
        with self._count_lock:
            roll, hang = self._random.random(), self._random.random()
            status = self._random.choice(faults.error_statuses) if faults.error_statuses else 500
        if faults.hang_rate and hang < faults.hang_rate:
            delay += faults.hang_seconds
        self._sleep(delay)
        if roll < faults.error_rate:
            headers = {"Retry-After": "1"} if status == 429 else {}
            message = {429: "Rate limit exceeded", 503: "Service Unavailable", 500: "Internal Server Error"}
            return Response(status, {"error": {"code": status, "message": message.get(status, "error")}}, headers)
        return None

    @staticmethod
    def _sleep(seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    def handle(self, request: Request) -> Response:
        found = self.router.match(request.method, request.path)
        if found is None:
            return Response(404, {"itemNotFound": {"code": 404, "message": f"no route {request.path}"}})
        op, handler, params = found
        with self._count_lock:
            self.calls[op] += 1
        injected = self._injected(op)
        if injected is not None:
            return injected
        request.params = params
        with self.lock:
            self.tick()
            try:
                if self.authorize is not None:
                    self.authorize(op, request)
                return handler(request)
            except HttpError as exc:
                return Response(exc.status, exc.body)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = None
                request = Request(
                    self.command, parts.path.rstrip("/") or "/", parse_qs(parts.query), dict(self.headers), body
                )
                response = server.handle(request)
                server.log.append((time.monotonic(), self.command, parts.path, response.status))
                payload = b"" if response.body is None else json.dumps(response.body).encode()
                self.send_response(response.status)
                if payload:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in response.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                if payload:
                    self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _serve

        return _Handler
