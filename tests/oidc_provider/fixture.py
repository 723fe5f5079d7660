"""Start the test OpenID provider (server.py) as a process on a free loopback port; stop it by its PID."""

from __future__ import annotations

import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

SERVER = Path(__file__).with_name("server.py")
CLIENT_ID = "dodas"
START_DEADLINE_S = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Provider:
    """A running provider: its issuer URL, this service's client, and the test-only controls."""

    issuer: str
    client_id: str
    client_secret: str = field(repr=False)
    pid: int
    access_ttl: int

    def login(self, sub: str, **claims: Any) -> str:
        """The access token a user would get by logging in (device flow etc.): aud, groups, ttl, scope, format."""
        answer = httpx.post(f"{self.issuer}/test/login", json={"sub": sub, **claims}, timeout=10)
        answer.raise_for_status()
        return answer.json()["access_token"]

    def rotate_keys(self, drop_old: bool = False) -> str:
        answer = httpx.post(f"{self.issuer}/test/rotate-keys", json={"drop_old": drop_old}, timeout=30)
        answer.raise_for_status()
        return answer.json()["kid"]

    def counters(self) -> dict[str, int]:
        return httpx.get(f"{self.issuer}/test/counters", timeout=10).json()

    def registered_clients(self) -> list[str]:
        """Ids of the clients registered dynamically (RFC 7591) and not deleted since."""
        return httpx.get(f"{self.issuer}/test/clients", timeout=10).json()

    def revoke(self, token: str) -> None:
        """RFC 7009 revocation, as the user (or an admin) would do at the IdP."""
        answer = httpx.post(
            f"{self.issuer}/revoke",
            data={"token": token, "token_type_hint": "refresh_token"},
            auth=(self.client_id, self.client_secret),
            timeout=10,
        )
        answer.raise_for_status()


@contextmanager
def running_provider(access_ttl: int = 30, *extra: str) -> Iterator[Provider]:
    """The provider as a subprocess; ready when discovery answers (polled with a deadline)."""
    port, secret = free_port(), secrets.token_urlsafe(24)
    process = subprocess.Popen(
        [sys.executable, str(SERVER), "--port", str(port), "--access-ttl", str(access_ttl),
         "--client", f"{CLIENT_ID}:{secret}", *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    issuer = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_DEADLINE_S
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the test OIDC provider exited with {process.returncode}")
            try:
                if httpx.get(f"{issuer}/.well-known/openid-configuration", timeout=2).is_success:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the test OIDC provider did not answer within {START_DEADLINE_S} s")
            time.sleep(0.05)
        yield Provider(issuer, CLIENT_ID, secret, process.pid, access_ttl)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
