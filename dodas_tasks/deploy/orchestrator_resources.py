"""A deployment's resources as the orchestrator lists them: one per TOSCA node instance.

Each VM of a compute group is one resource (its id is the node's id, the one `removal_list` takes); each software
component is one resource per VM of the group it is hosted on (deterministic ids), or one for the deployment when
it runs on a site service. States are the orchestrator's NodeStates.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field

from dodas_tasks.deploy.orchestrator_view import Link, orchestrator_time
from dodas_tasks.store import DeploymentRecord, NodeRecord, NodeState
from dodas_tasks.tosca.plan import DEPLOY, Component

COMPUTE_TYPE = "tosca.nodes.indigo.Compute"  # compute groups' type (every DODAS template uses it)
_READY = {NodeState.CREATED, NodeState.CONFIGURING, NodeState.CONFIGURED, NodeState.STARTED}


class ResourceBody(BaseModel):
    """The orchestrator's BaseResource: one TOSCA node instance (a VM, or a component on one VM)."""

    uuid: str
    creationTime: str
    updateTime: str | None = None
    state: str = Field(description="INITIAL, CREATING, CREATED, CONFIGURING, CONFIGURED, STARTED, DELETING, ERROR")
    toscaNodeType: str
    toscaNodeName: str
    requiredBy: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    links: list[Link] = Field(default_factory=list)


def _component_id(anchor: str, component: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"dodas:{anchor}:{component}"))


def _component_state(dep: DeploymentRecord, component: Component, node: NodeRecord | None) -> str:
    if node is not None and node.state in (NodeState.ERROR, NodeState.DELETING):
        return node.state
    applied = node.applied if node is not None else {}
    if component.name in applied or (node is None and dep.status.endswith("_COMPLETE")):
        return NodeState.STARTED if component.stage == DEPLOY else NodeState.CONFIGURED
    if dep.status.endswith("_FAILED"):
        return NodeState.ERROR
    if dep.status.endswith("_IN_PROGRESS") and (node is None or node.state in _READY):
        return NodeState.CONFIGURING
    return NodeState.INITIAL


def deployment_resources(dep: DeploymentRecord, nodes: Sequence[NodeRecord], base_url: str) -> list[ResourceBody]:
    """Every node instance of the deployment: VMs first (by group and index), then components."""
    plan = dep.plan
    own = f"{base_url}/deployments/{dep.id}"

    def body(rid: str, created: Any, updated: Any, **fields: Any) -> ResourceBody:
        links = [Link(rel="self", href=f"{own}/resources/{rid}"), Link(rel="deployment", href=own)]
        created_at, updated_at = orchestrator_time(created), orchestrator_time(updated)
        return ResourceBody(uuid=rid, creationTime=created_at, updateTime=updated_at, links=links, **fields)

    by_group: dict[str, list[NodeRecord]] = {}
    for node in nodes:
        by_group.setdefault(node.group, []).append(node)
    vms, components = [], []
    for comp in plan.components:
        hosts = by_group.get(comp.host_group or "", []) if comp.host_group else [None]
        for node in hosts:
            anchor = node.id if node is not None else dep.id
            metadata = {"stage": comp.stage, "host": node.id if node is not None else None}
            components.append(
                body(
                    _component_id(anchor, comp.name),
                    node.created_at if node is not None else dep.created_at,
                    node.updated_at if node is not None else dep.updated_at,
                    state=_component_state(dep, comp, node),
                    toscaNodeType=comp.type,
                    toscaNodeName=comp.name,
                    metadata={k: v for k, v in metadata.items() if v is not None},
                )
            )
    for node in nodes:
        required_by = [c.uuid for c in components if c.metadata.get("host") == node.id]
        vms.append(
            body(
                node.id,
                node.created_at,
                node.updated_at,
                state=node.state if node.state != NodeState.DELETED else NodeState.DELETING,
                toscaNodeType=COMPUTE_TYPE,
                toscaNodeName=node.group,
                requiredBy=required_by,
                metadata=vm_info(node),
            )
        )
    return vms + components


def vm_info(node: NodeRecord) -> dict[str, Any]:
    """What the orchestrator's /extrainfo and a VM resource's metadata say about one VM."""
    info = {
        "vmName": node.name,
        "vmId": node.cloud_id,
        "cloud": node.cloud,
        "group": node.group,
        "index": node.index,
        "state": node.state,
        "privateIp": node.private_ip,
        "publicIp": node.public_ip,
        "stateReason": node.state_reason,
    }
    return {k: v for k, v in info.items() if v is not None}
