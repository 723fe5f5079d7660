"""Reading a Mesos 1.x master: active agents (/master/slaves) and load (/master/state), as plain parsers."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from dodas_tasks.frameworks.base import Load

_WAITING_TASK_STATES = {"TASK_STAGING", "TASK_STARTING"}


def active_agents(slaves: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Active agents by hostname (our agents register with their node IP as hostname)."""
    return {a.get("hostname", ""): a for a in slaves.get("slaves", []) if a.get("active", False)}


def agent_problems(slaves: Mapping[str, Any], expected: Iterable[tuple[str, str]]) -> list[str]:
    """One line per expected agent (name, ip) that Mesos does not list as active, saying what Mesos knows."""
    known = {a.get("hostname", ""): a for a in slaves.get("slaves", [])}
    problems = []
    for name, ip in expected:
        agent = known.get(ip)
        if agent is None:
            problems.append(f"agent {name} ({ip}) never registered with the Mesos master")
        elif not agent.get("active", False):
            problems.append(f"agent {name} ({ip}) is registered but not active (lost or disconnected)")
    return problems


def load_from_state(state: Mapping[str, Any], name_of: Callable[[str], str], queued: int = 0, demand: int = 0) -> Load:
    """Busy agents run tasks, idle ones run none; staging/starting tasks and Marathon's queue are pending demand.

    queued/demand: apps waiting for offers and their CPUs, read from Marathon's /v2/queue by the caller.
    """
    agents = {a["id"]: a for a in state.get("slaves", []) if a.get("active", False)}
    busy: set[str] = set()
    staging_cpus = 0.0
    for framework in state.get("frameworks", []):
        for task in framework.get("tasks", []):
            if task.get("state") == "TASK_RUNNING" and task.get("slave_id") in agents:
                busy.add(task["slave_id"])
            elif task.get("state") in _WAITING_TASK_STATES:
                staging_cpus += float(task.get("resources", {}).get("cpus", 0))
    busy_names = sorted(name_of(agents[i].get("hostname", "")) for i in busy)
    idle_names = sorted(name_of(a.get("hostname", "")) for i, a in agents.items() if i not in busy)
    return Load(
        pending_demand=demand + round(staging_cpus),
        waiting_apps=queued,
        idle_nodes=idle_names,
        busy_nodes=busy_names,
        healthy_nodes=sorted(busy_names + idle_names),
    )


def queue_demand(queue: Iterable[Mapping[str, Any]]) -> tuple[int, int]:
    """(apps waiting for offers, CPUs their waiting instances ask) from Marathon's /v2/queue entries."""
    entries = [e for e in queue if int(e.get("count", 0)) > 0]
    cpus = sum(int(e["count"]) * float(e.get("app", {}).get("cpus", 1)) for e in entries)
    return len(entries), round(cpus)


def split_sections(output: str) -> dict[str, str]:
    """verify.sh's output: '=== <service> <path>' headers, bodies, '=== error ...' marks; {service path: body}."""
    sections: dict[str, str] = {}
    current: str | None = None
    lines: list[str] = []
    for line in output.splitlines():
        if line.startswith("=== "):
            if current is not None:
                sections[current] = "\n".join(lines).strip()
            head = line[4:]
            if head.startswith("error "):
                sections[head[6:]] = "ERROR: " + sections.get(head[6:], "")
                current = None
            elif head == "end":
                current = None
            else:
                current = head
            lines = []
        elif current is not None:
            lines.append(line)
    return sections
