"""The Plan: what a TOSCA submission compiles to, computed once and stored.

Everything downstream (DAG factory, clouds, configurators, elasticity) reads the Plan, never the template, so that
parsing a DAG file stays cheap. The Plan is plain data: `to_dict()` gives JSON, `Plan.from_dict()` reads it back.

Values that are only known later, or must not be stored in clear, stay as typed references inside property values:
  {"$attr": {"node": "master", "path": ["private_address", 0]}}   -- get_attribute, resolved after provisioning
  {"$secret": "marathon_password"}                                  -- a secret input or literal; value kept apart
  {"$input": "slave_num"}                                           -- an input not given yet (validate-only mode)
  {"$concat": [part, ...]}                                          -- concat with at least one deferred part
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

PLAN_VERSION = 1

# Stages in execution order; a component's stage is chosen from its type's derivation chain (see stages.py).
PROVISION, CONFIGURE, DEPLOY, VERIFY = "provision", "configure", "deploy", "verify"
STAGES = (PROVISION, CONFIGURE, DEPLOY, VERIFY)


@dataclass
class PortRule:
    """One TOSCA endpoint port: a single port (`source`) or a range, open to `remote_cidr`."""

    name: str
    protocol: str = "tcp"
    source: int | None = None
    source_range: list[int] | None = None
    remote_cidr: str = "0.0.0.0/0"


@dataclass
class Volume:
    """A BlockStorage node attached to every VM of a group."""

    name: str
    size_gb: float | None = None
    mount_path: str | None = None
    device: str | None = None
    volume_type: str | None = None
    fs_type: str | None = None


@dataclass
class NodeGroup:
    """A Compute node template: `count` identical VMs, scalable between min and max."""

    name: str
    count: int = 1
    min_count: int = 1
    max_count: int = 1
    removal_list: list[str] = field(default_factory=list)
    num_cpus: int | None = None
    mem_mb: int | None = None
    disk_gb: float | None = None
    instance_type: str | None = None
    num_gpus: int | None = None
    image: str | None = None
    os_type: str | None = None
    os_distribution: str | None = None
    os_version: str | None = None
    network: str = "PRIVATE"
    dns_name: str | None = None
    ports: list[PortRule] = field(default_factory=list)
    volumes: list[Volume] = field(default_factory=list)
    placement: dict[str, Any] = field(default_factory=dict)  # properties of the placement policies targeting it
    availability_zone: str | None = None  # the cloud's zone every VM of the group is created in (None: the cloud's)
    sla_id: str | None = None  # an SLA placement: the site it maps to is chosen at submission (DODAS_SLA_SITES)
    provisioning: dict[str, Any] = field(default_factory=dict)  # on_partial, min_ready from a Provisioning policy
    ssh_jump_host: bool = False  # its VM is the front-end the others are reached through (an SshJumpHost policy)


@dataclass
class Component:
    """A software node template: installed in `stage` on the VMs of `host_group`."""

    name: str
    type: str
    stage: str
    type_chain: list[str]
    host: str | None = None  # the node it is HostedOn (may itself be a component)
    host_group: str | None = None  # the Compute group at the bottom of the HostedOn chain
    properties: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, Any] = field(default_factory=dict)
    capabilities: dict[str, dict[str, Any]] = field(default_factory=dict)  # e.g. a Container.Runtime's host


@dataclass
class Edge:
    """A requirement between two node templates: `source` needs `target`."""

    source: str
    target: str
    kind: str  # HostedOn | DependsOn | ConnectsTo | AttachesTo | Manages | other relationship type name
    requirement: str = ""


@dataclass
class Output:
    name: str
    value: Any
    description: str = ""


@dataclass
class InputUse:
    """A template input: its declaration and, unless secret, the value the submission used."""

    name: str
    type: str
    required: bool
    secret: bool
    has_default: bool
    given: bool
    value: Any = None  # None for secrets: their values live in Plan.secrets only
    description: str = ""


@dataclass
class Elasticity:
    """Switch for the elasticity sensor DAG: an ElasticCluster node or a scaling policy."""

    enabled: bool = False
    source: str = ""  # e.g. "node elastic_cluster_front_end" or "policy scale_workers"
    group: str | None = None  # the Compute group that grows and shrinks
    min_count: int = 0
    max_count: int = 0
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass
class Plan:
    version: int = PLAN_VERSION
    description: str = ""
    groups: list[NodeGroup] = field(default_factory=list)
    components: list[Component] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    outputs: list[Output] = field(default_factory=list)
    inputs: list[InputUse] = field(default_factory=list)
    elasticity: Elasticity = field(default_factory=Elasticity)
    placement: list[dict[str, Any]] = field(default_factory=list)
    missing_inputs: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # what the template says that is accepted but ignored
    # Clear values of secret inputs and secret-named literals, keyed like their "$secret" references.
    # Never serialised by to_dict(): the store keeps them encrypted.
    secrets: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def group(self, name: str) -> NodeGroup:
        for g in self.groups:
            if g.name == name:
                return g
        raise KeyError(f"no compute group {name!r} in plan")

    def component(self, name: str) -> Component:
        for c in self.components:
            if c.name == name:
                return c
        raise KeyError(f"no component {name!r} in plan")

    def components_in(self, stage: str) -> list[Component]:
        return [c for c in self.components if c.stage == stage]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("secrets")
        return data

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        if data.get("version") != PLAN_VERSION:
            raise ValueError(f"plan version {data.get('version')} is not supported (expected {PLAN_VERSION})")
        groups = [
            NodeGroup(
                **{
                    **g,
                    "ports": [PortRule(**p) for p in g.get("ports", [])],
                    "volumes": [Volume(**v) for v in g.get("volumes", [])],
                }
            )
            for g in data.get("groups", [])
        ]
        return cls(
            version=data["version"],
            description=data.get("description", ""),
            groups=groups,
            components=[Component(**c) for c in data.get("components", [])],
            edges=[Edge(**e) for e in data.get("edges", [])],
            outputs=[Output(**o) for o in data.get("outputs", [])],
            inputs=[InputUse(**i) for i in data.get("inputs", [])],
            elasticity=Elasticity(**data.get("elasticity", {})),
            placement=list(data.get("placement", [])),
            missing_inputs=list(data.get("missing_inputs", [])),
            warnings=list(data.get("warnings", [])),
        )

    @classmethod
    def from_json(cls, text: str) -> Plan:
        return cls.from_dict(json.loads(text))
