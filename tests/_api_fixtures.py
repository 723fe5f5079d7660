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
from fastapi import FastAPI
from oidc_provider.fixture import Provider

from dodas_tasks.api.app import create_app
from dodas_tasks.api.settings import ApiSettings
from dodas_tasks.deploy.orchestrator_view import API_PREFIX
from dodas_tasks.iam import IamClient, IamConfig
from dodas_tasks.store import Store

START_DEADLINE_S = 30.0
AUDIENCE = "dodas"  # the audience of the test provider's tokens this service accepts


def orchestrator_app(provider: Provider, store: Store, admin_groups: frozenset[str] = frozenset()) -> FastAPI:
    """The API over `store`, checking the test provider's access tokens (audience AUDIENCE) with the IAM layer;
    nothing runs the deployment DAGs (requests are only recorded)."""
    iam = IamClient(
        IamConfig(provider.issuer, provider.client_id, provider.client_secret, audience=AUDIENCE, jwks_min_refetch_s=0)
    )
    return create_app(store=store, iam=lambda: iam, settings=ApiSettings(admin_groups=admin_groups))


def under_api_prefix(app: FastAPI) -> FastAPI:
    """`app` at /dodas/orchestrator of an otherwise empty server, as the plugin mounts it in Airflow's api-server."""
    server = FastAPI()
    server.mount(API_PREFIX, app)
    return server


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
