"""A deployment as INDIGO PaaS orchestrator clients see it: the JSON of `GET /deployments/{id}` and the body of the
callback POSTed when it reaches a final state, and its log. One home for each: the REST API and the deployment DAG
write them, the CLI reads them back (remote) or builds the same from the store (local).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from pydantic import BaseModel, Field

from dodas_tasks.naming import deployment_dag_id
from dodas_tasks.store import DeploymentStatus

API_PREFIX = "/dodas/orchestrator"  # where Airflow's api-server mounts the orchestrator API (plugins/dodas_plugin.py)
FINAL_STATUSES = frozenset(
    {
        DeploymentStatus.CREATE_COMPLETE,
        DeploymentStatus.CREATE_FAILED,
        DeploymentStatus.UPDATE_COMPLETE,
        DeploymentStatus.UPDATE_FAILED,
        DeploymentStatus.DELETE_COMPLETE,
        DeploymentStatus.DELETE_FAILED,
    }
)
ORCHESTRATOR_TIME_FORMAT = "%Y-%m-%dT%H:%M%z"
_LOG_LINE = re.compile(r"^(\S+) (\S+): (.*)$")


def orchestrator_time(moment: datetime) -> str:
    """The orchestrator's time format (yyyy-MM-dd'T'HH:mmZ in UTC), e.g. 2026-12-05T14:03+0000."""
    return moment.strftime(ORCHESTRATOR_TIME_FORMAT)


def parse_orchestrator_time(text: str) -> datetime:
    """The moment an orchestrator time string names (to the minute, as the orchestrator gives it)."""
    return datetime.strptime(text, ORCHESTRATOR_TIME_FORMAT)


@dataclass(frozen=True)
class LogEntry:
    """One line of a deployment's history (a store event), as `GET /deployments/{id}/log` serves it."""

    time: datetime
    kind: str
    message: str


class EventLike(Protocol):
    """What the log needs of an event (a store EventRecord or a LogEntry)."""

    time: datetime
    kind: str
    message: str


def log_text(events: Iterable[EventLike]) -> str:
    """The deployment's log: one `<ISO time> <kind>: <message>` line per event, oldest first."""
    return "".join(f"{e.time.isoformat()} {e.kind}: {e.message}\n" for e in events)


def parse_log(text: str) -> list[LogEntry]:
    """The entries of a log that log_text wrote; a line that starts no entry continues the previous message."""
    entries: list[LogEntry] = []
    for line in text.splitlines():
        match = _LOG_LINE.match(line)
        moment = _iso_time(match[1]) if match else None
        if match and moment is not None:
            entries.append(LogEntry(moment, match[2], match[3]))
        elif entries:
            last = entries[-1]
            entries[-1] = LogEntry(last.time, last.kind, f"{last.message}\n{line}")
    return entries


def _iso_time(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


class Link(BaseModel):
    rel: str
    href: str


class CreatedBy(BaseModel):
    """The owner: the (issuer, subject) of the token that submitted the deployment."""

    subject: str
    issuer: str


class DeploymentResource(BaseModel):
    """The orchestrator's DeploymentResource; None fields are left out of the JSON, as the orchestrator does."""

    uuid: str
    creationTime: str
    updateTime: str
    physicalId: str | None = Field(None, description="the Airflow DAG that runs this deployment")
    status: DeploymentStatus
    statusReason: str | None = None
    outputs: dict[str, Any] = Field(default_factory=dict)
    task: str = Field("NONE", description="DEPLOYER while a run works on it, else NONE")
    callback: str | None = None
    userGroup: str | None = None
    cloudProviderName: str | None = None
    createdBy: CreatedBy
    links: list[Link] = Field(default_factory=list)


class DeploymentLike(Protocol):
    """What the view needs of a deployment (a DeploymentRecord or a listing's DeploymentSummary)."""

    id: str
    owner_subject: str
    owner_issuer: str
    status: str
    status_reason: str | None
    outputs: dict[str, Any]
    cloud: str
    user_group: str | None
    callback: str | None
    created_at: datetime
    updated_at: datetime


def deployment_links(base_url: str, deployment_id: str) -> list[Link]:
    """self, resources and template, absolute under the API's base URL (which ends with its prefix)."""
    own = f"{base_url}/deployments/{deployment_id}"
    return [
        Link(rel="self", href=own),
        Link(rel="resources", href=f"{own}/resources"),
        Link(rel="template", href=f"{own}/template"),
    ]


def deployment_resource(dep: DeploymentLike, base_url: str | None = None) -> DeploymentResource:
    """The orchestrator JSON of one deployment; links only when the API's base URL is known."""
    return DeploymentResource(
        uuid=dep.id,
        creationTime=orchestrator_time(dep.created_at),
        updateTime=orchestrator_time(dep.updated_at),
        physicalId=deployment_dag_id(dep.id),
        status=DeploymentStatus(dep.status),
        statusReason=dep.status_reason,
        outputs=dict(dep.outputs),
        task="DEPLOYER" if dep.status.endswith("_IN_PROGRESS") else "NONE",
        callback=dep.callback,
        userGroup=dep.user_group,
        cloudProviderName=dep.cloud,
        createdBy=CreatedBy(subject=dep.owner_subject, issuer=dep.owner_issuer),
        links=deployment_links(base_url, dep.id) if base_url else [],
    )
