"""The orchestrator API served by a real HTTP server (uvicorn in a thread of the test, on 127.0.0.1), with users of
the test OpenID provider; shared by the API's test files and its benchmark."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import uvicorn

START_DEADLINE_S = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serving(app: Any, log_level: str = "warning") -> Iterator[str]:
    """Serve `app` on a free loopback port until the block ends; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level=log_level, lifespan="off", log_config=None)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"api-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_DEADLINE_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the API server on port {port} did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def client(base: str, token: str | None, seen: list[str] | None = None) -> httpx.Client:
    """An HTTP client acting with one access token (None: no Authorization header); every answer (headers and
    body) is appended to `seen`, for checking that no token ever comes back."""

    def record(response: httpx.Response) -> None:
        response.read()
        if seen is not None:
            seen.append(f"{response.headers}\n{response.text}")

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=base, headers=headers, timeout=60.0, event_hooks={"response": [record]})
