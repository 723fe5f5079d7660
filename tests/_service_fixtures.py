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

import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

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
