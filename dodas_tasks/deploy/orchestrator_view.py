"""A deployment as INDIGO PaaS orchestrator clients see it: the JSON of `GET /deployments/{id}` and the body of the
callback POSTed when it reaches a final state. One home for both: the REST API and the deployment DAG use it.
"""

from __future__ import annotations

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


def orchestrator_time(moment: datetime) -> str:
    """The orchestrator's time format (yyyy-MM-dd'T'HH:mmZ in UTC), e.g. 2026-12-05T14:03+0000."""
    return moment.strftime("%Y-%m-%dT%H:%M%z")


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
