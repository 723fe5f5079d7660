"""moto's EC2 server on loopback, an HTTP proxy in front of it (latency, faults, call counts), Airflow connections.

Also used by bench/provision_ec2.py. Every process started here is stopped by its PID.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import httpx

REGION = "us-east-1"
UBUNTU_AMI = "ami-1e749f67"  # one of the AMIs moto ships (ubuntu-trusty-14.04-amd64-server-20170727)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_listening(port: int, deadline_s: float = 60.0) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {deadline_s} s")


@dataclass
class MotoServer:
    """`moto_server -H 127.0.0.1 -p PORT` as a child process."""

    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MotoServer:
        exe = Path(sys.executable).with_name("moto_server")
        self.process = subprocess.Popen(
            [str(exe), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_listening(self.port)
        return self

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 1 s (werkzeug takes ~4 s to wind down; moto keeps nothing worth saving)."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=1)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait()


@dataclass
class Fault:
    """Answer the next `times` calls of `action` with an EC2 error instead of forwarding them."""

    action: str
    code: str
    message: str
    status: int = 400
    times: int = 1


@dataclass(frozen=True)
class SignedCall:
    """A call as AWS would attribute it: its Action and the access key id that signed it (None: unsigned)."""

    action: str
    access_key: str | None


@dataclass(frozen=True)
class RoleSession:
    """What one AssumeRoleWithWebIdentity asked for and got: the session, the web identity token, the key id."""

    session_name: str
    web_identity_token: str = field(repr=False)
    access_key: str


class AwsProxy:
    """A threaded HTTP proxy to an EC2 endpoint: delays chosen actions, injects EC2 errors, counts calls by Action,
    records who signed each call and the role sessions STS handed out (AssumeRoleWithWebIdentity through it)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = httpx.Client(base_url=upstream, timeout=120, trust_env=False)
        self.latency: dict[str, float] = {}
        self.faults: list[Fault] = []
        self.calls: Counter[str] = Counter()
        self.signed: list[SignedCall] = []
        self.role_sessions: dict[str, RoleSession] = {}  # by the access key id STS returned
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                proxy._handle(self)

            do_GET = do_POST

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> AwsProxy:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.upstream.close()

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.signed.clear()
            self.faults.clear()
            self.latency.clear()

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        body = request.rfile.read(int(request.headers.get("Content-Length") or 0))
        form = parse_qs(body.decode(errors="replace"))
        action = (form.get("Action") or ["?"])[0]
        signer = re.search(r"Credential=([^/]+)/", request.headers.get("Authorization") or "")
        with self._lock:
            self.calls[action] += 1
            self.signed.append(SignedCall(action, signer.group(1) if signer else None))
            fault = next((f for f in self.faults if f.action == action and f.times > 0), None)
            if fault:
                fault.times -= 1
        if fault:
            xml = (
                '<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error>'
                f"<Code>{fault.code}</Code><Message>{fault.message}</Message>"
                "</Error></Errors><RequestID>dodas-proxy</RequestID></Response>"
            ).encode()
            self._reply(request, fault.status, {"Content-Type": "text/xml"}, xml)
            return
        time.sleep(self.latency.get(action, 0.0))
        status, headers, payload = self._forward(request.command, request.path, dict(request.headers), body)
        issued = re.search(rb"<AccessKeyId>([^<]+)</AccessKeyId>", payload)
        if action == "AssumeRoleWithWebIdentity" and issued:
            session = RoleSession(form["RoleSessionName"][0], form["WebIdentityToken"][0], issued.group(1).decode())
            with self._lock:
                self.role_sessions[session.access_key] = session
        self._reply(request, status, headers, payload)

    def _forward(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict, bytes]:
        with self.upstream.stream(method, path, content=body, headers=headers) as response:
            return response.status_code, dict(response.headers), b"".join(response.iter_raw())

    @staticmethod
    def _reply(request: BaseHTTPRequestHandler, status: int, headers: dict, payload: bytes) -> None:
        request.send_response(status)
        for key, value in headers.items():
            if key.lower() not in ("content-length", "transfer-encoding", "connection", "server", "date"):
                request.send_header(key, value)
        request.send_header("Content-Length", str(len(payload)))
        request.end_headers()
        request.wfile.write(payload)


def aws_connection(endpoint: str, **extra: object) -> str:
    """An Airflow `aws` connection as the JSON an AIRFLOW_CONN_<ID> variable holds."""
    return json.dumps(
        {
            "conn_type": "aws",
            "login": "testing",
            "password": "testing",
            "extra": {"region_name": REGION, "endpoint_url": endpoint, **extra},
        }
    )


DIRECT_CONN = "dodas_moto"  # straight to moto; what get_driver("ec2") uses in these tests (DODAS_EC2_CONN_ID)
PROXY_CONN = "dodas_moto_proxy"  # through the proxy: latency, faults, counts


@contextmanager
def ec2_connections(moto_server: MotoServer, aws_proxy: AwsProxy) -> Iterator[dict[str, str]]:
    """Airflow connections to moto (direct and proxied) as env vars; get_driver("ec2") picks the direct one."""
    env = {
        f"AIRFLOW_CONN_{DIRECT_CONN.upper()}": aws_connection(moto_server.url, dodas_default_image=UBUNTU_AMI),
        f"AIRFLOW_CONN_{PROXY_CONN.upper()}": aws_connection(aws_proxy.url, dodas_default_image=UBUNTU_AMI),
        "DODAS_EC2_CONN_ID": DIRECT_CONN,
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield {"direct": DIRECT_CONN, "proxy": PROXY_CONN}
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
