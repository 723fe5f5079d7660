"""Read a Spark standalone master's state (its /json/ page and app pages) and turn it into a Load."""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from dodas_tasks.frameworks.base import Load

# no proxy from the environment (masters sit on loopback/private IPs); no kept connection to outlive a fork
_MASTERS = httpx.Client(trust_env=False, follow_redirects=True, limits=httpx.Limits(max_keepalive_connections=0))
_CORES_LINE = re.compile(r"<strong>Cores:</strong>\s*(?:(\d+)|Unlimited)\s*\((\d+) granted(?:,\s*(\d+) left)?\)")


class SparkStateError(RuntimeError):
    """The master could not be read; the message names the URL and the reason."""


@dataclass(frozen=True)
class AppCores:
    """An application's cores from its page: requested is None when unlimited (spark.cores.max unset)."""

    requested: int | None
    granted: int

    @property
    def left(self) -> int | None:
        """Cores requested and not granted; None when the app did not say how many it wants."""
        return None if self.requested is None else max(self.requested - self.granted, 0)


def _get(url: str, timeout: float) -> str:
    try:
        response = _MASTERS.get(url, timeout=timeout)
    except (httpx.HTTPError, httpx.InvalidURL) as error:
        raise SparkStateError(f"cannot read the Spark master at {url}: {error}") from None
    if response.is_error:
        reason = f"HTTP {response.status_code} {response.reason_phrase}"
        raise SparkStateError(f"cannot read the Spark master at {url}: {reason}")
    return response.content.decode("utf-8", "replace")


def read_master_state(ip: str, webui_port: int = 8080, timeout: float = 5.0) -> dict[str, Any]:
    """The master's /json/ document (workers, activeapps, status)."""
    url = f"http://{ip}:{webui_port}/json/"
    text = _get(url, timeout)
    try:
        state = json.loads(text)
    except json.JSONDecodeError:
        raise SparkStateError(f"the Spark master at {url} did not answer JSON: {text[:120]!r}") from None
    if not isinstance(state, dict):
        raise SparkStateError(f"the Spark master at {url} answered {type(state).__name__}, not an object")
    return state


def parse_app_cores(html: str) -> AppCores | None:
    """The "Cores: 4 (1 granted, 3 left)" / "Cores: Unlimited (0 granted)" line of an app page, if present."""
    match = _CORES_LINE.search(html)
    if match is None:
        return None
    requested, granted, _left = match.groups()
    return AppCores(requested=int(requested) if requested else None, granted=int(granted))


def read_app_cores(ip: str, app_id: str, webui_port: int = 8080, timeout: float = 5.0) -> AppCores | None:
    """Cores an active app asked for and got, from the master's HTML app page (not in /json/)."""
    query = urllib.parse.urlencode({"appId": app_id})
    return parse_app_cores(_get(f"http://{ip}:{webui_port}/app/?{query}", timeout))


def app_pending_cores(app: Mapping[str, Any], cores: AppCores | None) -> int:
    """Cores an app still wants: those left from its page; for a WAITING app of unknown size, at least 1."""
    left = cores.left if cores is not None else None
    if left is not None:
        return left
    return 1 if app.get("state") == "WAITING" else 0


def load_from_state(
    state: Mapping[str, Any],
    app_cores: Mapping[str, AppCores | None] | None = None,
    name_of: Callable[[str], str] = str,
) -> Load:
    """The Load of a master's /json/ state.

    A host is healthy when it has an ALIVE worker, idle when no worker of it uses cores, busy otherwise (a
    decommissioning worker still running executors counts as busy). pending_demand sums every active app's
    cores still wanted (app_cores, from the app pages); name_of turns worker IPs into node names.
    """
    app_cores = app_cores or {}
    used_by_host: dict[str, int] = {}
    alive_hosts: set[str] = set()
    for worker in state.get("workers", []):
        host = str(worker.get("host", ""))
        if worker.get("state") == "DEAD" or not host:
            continue
        used_by_host[host] = used_by_host.get(host, 0) + int(worker.get("coresused", 0))
        if worker.get("state") == "ALIVE":
            alive_hosts.add(host)
    apps = list(state.get("activeapps", []))
    return Load(
        pending_demand=sum(app_pending_cores(app, app_cores.get(str(app.get("id")))) for app in apps),
        waiting_apps=sum(1 for app in apps if app.get("state") == "WAITING"),
        idle_nodes=sorted(name_of(host) for host in alive_hosts if used_by_host[host] == 0),
        busy_nodes=sorted(name_of(host) for host, used in used_by_host.items() if used > 0),
        healthy_nodes=sorted(name_of(host) for host in alive_hosts),
    )


def read_load(ip: str, webui_port: int = 8080, name_of: Callable[[str], str] = str) -> Load:
    """The master's Load now: /json/ plus one app page per active app (for the cores it still wants)."""
    state = read_master_state(ip, webui_port)
    app_cores: dict[str, AppCores | None] = {}
    for app in state.get("activeapps", []):
        app_id = str(app.get("id", ""))
        try:
            app_cores[app_id] = read_app_cores(ip, app_id, webui_port)
        except SparkStateError:
            app_cores[app_id] = None  # the app ended between the two reads
    return load_from_state(state, app_cores, name_of)
