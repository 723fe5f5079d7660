"""docker-compose.yml run as processes on this machine: the same Airflow services, commands and environment.

The end-to-end test and the throughput bench start the service's shape from the compose file itself, so the file
and what is tested cannot drift apart. Compose's own rules are applied: YAML merge keys, `${VAR}`,
`${VAR:-default}`, `${VAR-default}`, `${VAR:?error}` and `$$` interpolated from the `.env` (as
`docker compose --env-file FILE` in a clean shell), `env_file` entries under `environment`, `entrypoint` + `command`.

What only exists in containers is mapped by a `Placement`, and by nothing else:
- a `service:port` address in a value (`postgres:5432`, `redis:6379`, `airflow-apiserver:8080`) → an address here;
- a container path prefix (`/opt/airflow`, `/opt/dodas-airflow`) → a folder here;
- the api-server's bind address and every URL reaching it → the stack's loopback host:port (AirflowStack);
- a service's `hostname:` → the same host name, given by UTS and mount namespaces (processes.spawn);
- a service on a host of its own (`Placement.hosts`) → a network namespace, where the other services' addresses
  are those that host reaches them at.
The services run are those of the project's image (the common block's): the Airflow services and the local cloud
service. Services `postgres` and `redis` are other images: the caller supplies their equivalents (a database of
its own on the machine's PostgreSQL, a redis-server of its own).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from dotenv import dotenv_values

from dodas_tasks.devstack.local_airflow import AirflowStack, Component

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
COMMON_BLOCK = "x-airflow-common"
INIT_SERVICE = "airflow-init"
AIRFLOW_SERVICE_PREFIX = "airflow-"
LOCALCLOUD_SERVICE = "dodas-localcloud"

_VARIABLE = re.compile(r"\$(?:(?P<escaped>\$)|\{(?P<braced>(?:[^{}]|\{[^{}]*\})*)\}|(?P<named>[A-Za-z_][A-Za-z0-9_]*))")
_BRACED = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>.*))?$", re.DOTALL)


class ComposeError(ValueError):
    """The compose file (or its .env) cannot be read as the service's shape; the message says where."""


def interpolate(value: str, variables: Mapping[str, str]) -> str:
    """Compose's variable interpolation of one string value."""

    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        if match["named"]:
            return variables.get(match["named"], "")
        braced = _BRACED.match(match["braced"])
        if braced is None:
            raise ComposeError(f"invalid interpolation ${{{match['braced']}}}")
        name, op, arg = braced["name"], braced["op"], interpolate(braced["arg"] or "", variables)
        present = name in variables
        value = variables.get(name, "")
        if op in (":-", "-"):
            return value if (value if op == ":-" else present) else arg
        if op in (":?", "?"):
            if not (value if op == ":?" else present):
                raise ComposeError(f"required variable {name} is missing a value: {arg}")
            return value
        if op in (":+", "+"):
            return arg if (value if op == ":+" else present) else ""
        return value

    return _VARIABLE.sub(replace, value)


def _interpolated(node: Any, variables: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, variables)
    if isinstance(node, list):
        return [_interpolated(item, variables) for item in node]
    if isinstance(node, dict):
        return {key: _interpolated(value, variables) for key, value in node.items()}
    return node


def read_dotenv(path: Path) -> dict[str, str]:
    """A .env file's variables (compose's syntax: KEY=VALUE, quotes, comments), nothing interpolated."""
    return {key: value or "" for key, value in dotenv_values(path, interpolate=False).items()}


def load(compose_file: Path, env_file: Path) -> dict[str, Any]:
    """The compose file as `docker compose --env-file env_file config` would see it (merge keys resolved)."""
    document = yaml.safe_load(compose_file.read_text())
    if not isinstance(document, dict) or "services" not in document:
        raise ComposeError(f"{compose_file}: no services")
    return _interpolated(document, read_dotenv(env_file))


@dataclass(frozen=True)
class Host:
    """A host of its own for a service: a network namespace, and the service addresses as seen from there."""

    netns: str
    addresses: Mapping[str, str]  # "postgres:5432" → where this host reaches it; others as the Placement says


@dataclass(frozen=True)
class Placement:
    """Where the compose file's container-only values land when its services run as processes here."""

    addresses: Mapping[str, str]  # "postgres:5432" → "127.0.0.1:5432"
    paths: Mapping[str, Path]  # "/opt/airflow" → a folder here; the longest prefix wins
    env_file: Path  # the .env the services read (`env_file:` entries) and the file is interpolated from
    hosts: Mapping[str, Host] = field(default_factory=dict)  # service name → its own host; others run here

    def of(self, service: str) -> Placement:
        """The placement as `service` sees it: its host's addresses win."""
        host = self.hosts.get(service)
        if host is None:
            return self
        return Placement({**self.addresses, **host.addresses}, self.paths, self.env_file, self.hosts)

    def apply(self, value: str) -> str:
        for address, here in self.addresses.items():
            value = re.sub(rf"(?<=[/@]){re.escape(address)}(?=[/?]|$)", here, value)
        for prefix in sorted(self.paths, key=len, reverse=True):
            value = re.sub(rf"(?<![\w/]){re.escape(prefix)}(?=/|$|\s)", str(self.paths[prefix]), value)
        return value


def service_environment(service: Mapping[str, Any], placement: Placement) -> dict[str, str]:
    """A service's environment: its `env_file` entries (the placement's .env), then `environment`, mapped."""
    env: dict[str, str] = {}
    if service.get("env_file"):
        env.update(read_dotenv(placement.env_file))
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) if "=" in item else (item, "") for item in environment)
    for key, value in environment.items():
        env[key] = "" if value is None else _as_text(value)
    return {key: placement.apply(value) for key, value in env.items()}


def service_command(service: Mapping[str, Any], placement: Placement) -> tuple[str, ...]:
    """`entrypoint` + `command`; without an entrypoint the image's runs `airflow <command>`, as here."""
    entrypoint, command = _words(service.get("entrypoint")), _words(service.get("command"))
    argv = [*entrypoint, *command] if entrypoint else ["airflow", *command]
    return tuple(placement.apply(word) for word in argv)


def project_services(compose: Mapping[str, Any], placement: Placement) -> tuple[Component, list[Component]]:
    """The init job and the long-running services of the project's image (outside optional profiles): Airflow's,
    and the local cloud service, which is up once it accepts connections on its first `expose`d port."""
    init: Component | None = None
    services: list[Component] = []
    image = compose[COMMON_BLOCK].get("image")
    for name, service in compose["services"].items():
        if service.get("image") != image or service.get("profiles"):
            continue
        here = placement.of(name)
        host = placement.hosts.get(name)
        tcp_host, tcp_port = _reached_at(name, service, placement)
        component = Component(
            name=name,
            command=service_command(service, here),
            env=service_environment(service, here),
            hostname=service.get("hostname"),
            tcp_port=tcp_port,
            tcp_host=tcp_host,
            netns=host.netns if host else None,
        )
        if name == INIT_SERVICE:
            init = component
        else:
            services.append(component)
    if init is None:
        raise ComposeError(f"no {INIT_SERVICE} service")
    return init, services


def _reached_at(name: str, service: Mapping[str, Any], placement: Placement) -> tuple[str | None, int | None]:
    """Where a service that is not Airflow's is reached from here: its first exposed port, at the placement's
    address for it (None: the stack's host). Airflow's services have health checks of their own."""
    exposed = service.get("expose") or []
    if exposed and not name.startswith(AIRFLOW_SERVICE_PREFIX):
        port = int(str(exposed[0]).split("/")[0])
        address = placement.addresses.get(f"{name}:{port}")
        if address is None:
            return None, port
        host, _, mapped = address.rpartition(":")
        return host, int(mapped)
    return None, None


def compose_stack(
    airflow_home: Path,
    placement: Placement,
    port: int,
    extra_components: tuple[Component, ...] = (),
    extra_env: Mapping[str, str] | None = None,
    compose_file: Path = COMPOSE_FILE,
) -> AirflowStack:
    """The compose file's Airflow as an AirflowStack on 127.0.0.1:`port` (the api-server's address mapped there).

    `extra_components` start first (e.g. the Redis standing in for the compose `redis` service); `extra_env` is
    the caller's own, documented overrides (test speed-ups), applied last.
    """
    apiserver = f"{AIRFLOW_SERVICE_PREFIX}apiserver:8080"
    addresses = {**placement.addresses, apiserver: f"127.0.0.1:{port}"}
    placement = Placement(addresses, placement.paths, placement.env_file, placement.hosts)
    compose = load(compose_file, placement.env_file)
    init, services = project_services(compose, placement)
    settings = service_environment(compose[COMMON_BLOCK], placement)
    return AirflowStack(
        airflow_home,
        Path(settings["AIRFLOW__CORE__DAGS_FOLDER"]),
        Path(settings["AIRFLOW__CORE__PLUGINS_FOLDER"]),
        port=port,
        extra_env=extra_env,
        settings=settings,
        components=(*extra_components, *services),
        init=init,
    )


def _words(value: Any) -> list[str]:
    if value is None:
        return []
    return shlex.split(value) if isinstance(value, str) else [_as_text(word) for word in value]


def _as_text(value: Any) -> str:
    """Compose's scalar → string: booleans as `true`/`false`, numbers as written."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
