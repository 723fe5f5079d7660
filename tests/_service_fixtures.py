"""docker-compose.yml's services as processes on this machine, for the Celery end-to-end test and bench/throughput.py.

What stands in for the compose file's images: a database of the caller's own on the machine's PostgreSQL
(127.0.0.1:5432, role postgres, trust) for Airflow, another created by airflow-init for the DODAS store, both
dropped at the end; a redis-server of the caller's own on a free loopback port. The caller's settings are `.env`
lines after those `dodas service env` writes (later lines win), as a site would edit its .env.

Two services run on hosts of their own, network namespaces made and removed here (netns.mesh): the local cloud
service (its VMs on that namespace's loopback, which no other host reaches) and airflow-worker-2, which reaches
the local cloud's API and gateway over its link to that host, and PostgreSQL, Redis and the api-server at this
machine's address on its link, through a forwarder (they listen on 127.0.0.1 only). Everything else, the other
worker included, runs here and reaches the local cloud over this machine's link to it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import redis
import sqlalchemy as sa

from dodas_tasks.clouds.local import LocalCloud
from dodas_tasks.devstack import netns
from dodas_tasks.devstack.compose import LOCALCLOUD_SERVICE, Host, Placement, compose_stack
from dodas_tasks.devstack.forward import forwarding
from dodas_tasks.devstack.local_airflow import AirflowStack, Component

REPO = Path(__file__).resolve().parents[1]
POSTGRES_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"
REMOTE_WORKER = "airflow-worker-2"  # runs on a host of its own; airflow-worker-1 on this machine
CLOUD_API = f"{LOCALCLOUD_SERVICE}:8780"  # as the compose file names it


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def postgres(statement: str) -> None:
    server = sa.create_engine(f"{POSTGRES_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    try:
        with server.connect() as connection:
            connection.execute(sa.text(statement))
    finally:
        server.dispose()


def write_env_file(path: Path, settings: Mapping[str, str]) -> None:
    """`dodas service env > .env`, as the README says, then the caller's settings."""
    made = subprocess.run(
        [sys.executable, "-m", "dodas_tasks.cli", "service", "env"], capture_output=True, text=True, timeout=120
    )
    if made.returncode != 0:
        raise RuntimeError(f"dodas service env failed: {made.stderr}")
    path.write_text(made.stdout + "".join(f"{key}={value}\n" for key, value in settings.items()))
    path.chmod(0o600)


@contextmanager
def celery_service(
    root: Path, settings: Mapping[str, str] | None = None, extra_env: Mapping[str, str] | None = None
) -> Iterator[AirflowStack]:
    """The compose file's stack, started (local cloud, init, api-server, scheduler, dag-processor, triggerer, two
    Celery workers), stopped, its VMs, hosts and databases removed on exit. `settings`: .env lines (default: small
    pools for a 2-core machine); `extra_env`: the caller's documented overrides on top of the compose file."""
    suffix = uuid.uuid4().hex[:10]
    airflow_db, dodas_db = f"dodas_test_airflow_{suffix}", f"dodas_test_store_{suffix}"
    root.mkdir(parents=True, exist_ok=True)
    env_file = root / ".env"
    own = {
        "POSTGRES_USER": "postgres",  # the machine's server: trust, so the generated password is not checked
        "POSTGRES_DB": airflow_db,
        "DODAS_DB": dodas_db,
        "AIRFLOW_PARALLELISM": "4",
        "AIRFLOW_WORKER_CONCURRENCY": "2",
        "AIRFLOW_API_WORKERS": "1",
        "AIRFLOW_UID": str(os.getuid()),
    }
    write_env_file(env_file, {**own, **(settings or {})})
    redis_port, api_port = free_port(), free_port()
    redis = Component(  # stands in for the compose `redis` service
        "redis",
        ("/usr/bin/redis-server", "--bind", "127.0.0.1", "--port", str(redis_port), "--save", "", "--appendonly", "no"),
        tcp_port=redis_port,
    )
    with netns.mesh(["cloud", "worker"]) as hosts:
        here = hosts.address(netns.MACHINE, seen_from="worker")  # this machine, as the worker's host reaches it
        placement = Placement(
            addresses={
                "postgres:5432": "127.0.0.1:5432",
                "redis:6379": f"127.0.0.1:{redis_port}",
                CLOUD_API: f"{hosts.address('cloud')}:8780",
            },
            paths={"/opt/airflow": root / "home", "/opt/dodas-airflow": REPO},
            env_file=env_file,
            hosts={
                LOCALCLOUD_SERVICE: Host(hosts.netns("cloud"), {}),
                REMOTE_WORKER: Host(
                    hosts.netns("worker"),
                    {
                        "postgres:5432": f"{here}:5432",
                        "redis:6379": f"{here}:{redis_port}",
                        "airflow-apiserver:8080": f"{here}:{api_port}",
                        CLOUD_API: f"{hosts.address('cloud', seen_from='worker')}:8780",
                    },
                ),
            },
        )
        stack = compose_stack(root / "home", placement, port=api_port, extra_components=(redis,), extra_env=extra_env)
        routes = {port: ("127.0.0.1", port) for port in (5432, redis_port, api_port)}
        postgres(f'CREATE DATABASE "{airflow_db}"')  # the compose postgres service's POSTGRES_DB; the store's: init's
        try:
            with forwarding(here, routes, root / "forward.log"):
                try:
                    stack.start(timeout=400)
                    yield stack
                finally:
                    stack.stop()
        finally:
            try:
                LocalCloud(home=stack.env()["DODAS_HOME"]).cleanup()  # the VMs a failure left behind
            finally:
                for database in (airflow_db, dodas_db):
                    postgres(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


# -- what a failed test prints (a lost Celery message and a worker that no longer consumes look alike from outside) --

BROKER_VARIABLE = "AIRFLOW__CELERY__BROKER_URL"
INSPECTED = ("stats", "active", "reserved", "active_queues")


def redis_report(url: str, stack: AirflowStack | None = None, most: int = 60) -> str:
    """Every key of the broker with its type and size, and the members of kombu's binding tables: a task message
    waiting in a queue (no worker takes it), in `unacked` (taken, not acknowledged) or nowhere (lost). Then every
    client connection with its process (and the stack's component owning it), its last command and flags: a worker
    consuming has a connection blocked on BRPOP (flags b, cmd brpop); one subscribed (sub=1) answers broadcasts."""
    client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    try:
        found: list[str] = []
        for key in sorted(client.scan_iter(count=1000))[:most]:
            kind = client.type(key).decode()
            size = {"list": client.llen, "hash": client.hlen, "set": client.scard, "zset": client.zcard}.get(kind)
            line = f"{key!r}: {kind}" + (f" {size(key)}" if size else "")
            if kind == "set" and key.startswith(b"_kombu.binding."):
                line += f" {sorted(client.smembers(key))!r}"
            found.append(line)
        clients = [_described(c, stack) for c in client.client_list()]
        return "\n".join([*(found or ["(no keys)"]), f"clients ({len(clients)}):", *clients])
    finally:
        client.close()


def _described(connection: Mapping[str, str], stack: AirflowStack | None) -> str:
    """One Redis client connection, with the local process at its end (connections through a host's forwarder end
    at the forwarder)."""
    ip, _, port = connection["addr"].rpartition(":")
    pids = {
        c.pid
        for c in psutil.net_connections(kind="tcp")
        if c.pid and c.laddr and c.laddr.ip == ip and c.laddr.port == int(port)
    }
    owners = {
        component.name
        for component in (stack.components if stack else ())
        for proc in stack.processes_of(component.name)
        if proc.pid in pids
    }
    if not owners:  # not a component's: this test, or the forwarder relaying a worker on a host of its own
        owners = {_command_of(pid) for pid in pids}
    fields = " ".join(f"{k}={connection.get(k)}" for k in ("age", "idle", "flags", "sub", "psub", "cmd"))
    return f"  {connection['addr']} pid={sorted(pids)} {sorted(owners)} {fields}"


def _command_of(pid: int) -> str:
    try:
        return " ".join(Path(word).name for word in psutil.Process(pid).cmdline()[:4])[:80]
    except psutil.Error:
        return "?"


def celery_report(stack: AirflowStack) -> str:
    """What each Celery worker of the stack answers over its broadcast queue (prefetch count, active and reserved
    tasks, queues consumed): a worker answering while its task queue's messages wait does not consume."""
    from celery import Celery

    nodes = [c.celery_node for c in stack.components if c.celery_node]
    if not nodes:
        return "(no Celery worker in the stack)"
    app = Celery(broker=stack.env()[BROKER_VARIABLE])
    try:  # a connection of its own: a pooled one may be from before a broker restart
        with app.connection_for_write() as connection:
            inspector = app.control.inspect(destination=nodes, timeout=2.0, connection=connection)
            answers = {method: getattr(inspector, method)() for method in INSPECTED}
    finally:
        app.close()
    return "\n".join(f"{method}: {json.dumps(answer, default=str)[:4000]}" for method, answer in answers.items())


def log_tails(stack: AirflowStack, lines: int = 40, width: int = 400) -> str:
    """The last lines of each component's output (logs/<name>.out), each line cut to `width` characters."""
    parts = []
    for component in stack.components:
        path = stack.logs_dir / f"{component.name}.out"
        try:
            tail = path.read_text(errors="replace").splitlines()[-lines:]
        except OSError as exc:
            tail = [f"(unreadable: {exc})"]
        parts.append(f"--- {path}\n" + "\n".join(line[:width] for line in tail))
    return "\n".join(parts)


def stack_report(stack: AirflowStack) -> str:
    """The broker's content, the Celery workers' answers and each component's log tail; a part that cannot be had
    says why instead (the report is printed while a test fails, and must not hide that failure)."""
    parts: list[tuple[str, Any]] = [
        ("Redis", lambda: redis_report(stack.env()[BROKER_VARIABLE], stack)),
        ("Celery workers", lambda: celery_report(stack)),
        ("component logs", lambda: log_tails(stack)),
    ]
    out = []
    for title, make in parts:
        try:
            body = make()
        except Exception as exc:
            body = f"(unavailable: {type(exc).__name__}: {exc})"
        out.append(f"===== {title}\n{body}")
    return "\n".join(out)


@contextmanager
def reported_on_failure(stack: AirflowStack) -> Iterator[None]:
    """Prints `stack_report` when the block fails (shown under the test's captured output), then lets it fail."""
    try:
        yield
    except BaseException as exc:  # an error, an assertion, pytest.fail's Failed (a BaseException); not an interrupt
        if not isinstance(exc, KeyboardInterrupt | SystemExit):
            print(stack_report(stack))
        raise
