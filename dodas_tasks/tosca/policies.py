"""A template's policies: placement (availability zone, SLA) and partial-boot handling put on its compute groups.

The INDIGO orchestrator read policies leniently: a normative `tosca.policies.Placement` carrying `availability_zone`
(AWS templates) or `sla_id` deployed, although the normative type declares no property, and properties it did not
know were ignored. tosca-parser refuses them as unknown fields, so it is shown the normative policies without their
properties (`parser_view`); the compiler keeps them for the Plan, and those nothing reads become warnings.
"""

from __future__ import annotations

import copy
from typing import Any

from dodas_tasks.tosca.errors import TemplateProblem
from dodas_tasks.tosca.functions import Resolver, is_ref
from dodas_tasks.tosca.plan import Plan
from dodas_tasks.tosca.stages import TypeRegistry

PLACEMENT = "tosca.policies.Placement"
SCALING = "tosca.policies.Scaling"
PROVISIONING = "tosca.policies.indigo.dodas.Provisioning"
ELASTIC_SETTINGS = ("poll_interval", "backlog_window", "idle_time", "grace", "cooldown", "max_booting")

# Placement properties the INDIGO stack read (the orchestrator: sla_id and the CredentialsAware credentials; the
# IM: cloud_id, availability_zone). Only these two change where VMs go here; the others are kept and reported.
HONOURED_PLACEMENT = frozenset({"availability_zone", "sla_id"})
UNUSED_PLACEMENT = frozenset({"cloud_id", "username", "password", "subscription_id"})
# What the compiler reads on the normative policies (TOSCA 1.2's Scaling properties and our elastic settings).
_READ_ON_NORMATIVE = {
    PLACEMENT: HONOURED_PLACEMENT | UNUSED_PLACEMENT,
    SCALING: frozenset({"min_instances", "max_instances", "default_instances", "increment", *ELASTIC_SETTINGS}),
}
_UNUSED_HINT = {
    "cloud_id": "the cloud is chosen at submission (cloud, failover clouds) or by an SLA (DODAS_SLA_SITES)",
    "username": "cloud credentials come from the site's Airflow connection",
    "password": "cloud credentials come from the site's Airflow connection",
    "subscription_id": "cloud credentials come from the site's Airflow connection",
}


def _normative_policy_types() -> frozenset[str]:
    from toscaparser.elements.entity_type import EntityType

    return frozenset(name for name in EntityType.TOSCA_DEF if name.startswith("tosca.policies."))


def _policies(data: dict[str, Any]) -> list[tuple[int, str, dict[str, Any]]]:
    """(position, name, definition) of each well-formed policy of a template."""
    policies = (data.get("topology_template") or {}).get("policies") or []
    if not isinstance(policies, list):
        return []
    found = []
    for position, policy in enumerate(policies):
        if isinstance(policy, dict) and len(policy) == 1:
            ((name, spec),) = policy.items()
            if isinstance(spec, dict):
                found.append((position, str(name), spec))
    return found


def parser_view(data: dict[str, Any]) -> tuple[dict[str, Any], list[TemplateProblem]]:
    """A copy of the template for tosca-parser, its normative policies without properties (they declare none), and
    one warning for each of those properties that nothing here reads (the orchestrator accepted and ignored them)."""
    view = copy.deepcopy(data)
    normative = _normative_policy_types()
    warnings = []
    for position, name, spec in _policies(view):
        ptype = spec.get("type")
        if ptype not in normative or not isinstance(spec.get("properties"), dict):
            continue
        read = _READ_ON_NORMATIVE.get(str(ptype), frozenset())
        for key in spec.pop("properties"):
            if key not in read:
                warnings.append(
                    TemplateProblem(
                        "policy",
                        f"policy {name!r}: {ptype} has no property {key!r}; it is ignored",
                        node=name,
                        path=("topology_template", "policies", position, name, "properties", key),
                        hint=f"properties read here: {', '.join(sorted(read)) or 'none'}",
                    )
                )
    return view, warnings


def apply_policies(
    plan: Plan, data: dict[str, Any], groups_of: dict[str, list[str]], resolver: Resolver
) -> tuple[list[dict[str, Any]], list[TemplateProblem], list[TemplateProblem]]:
    """Put placement and provisioning policies on the compute groups they target.

    groups_of: the compute groups a target name stands for (a group itself, a TOSCA group's members, a component's
    host group). Returns the placement policies as recorded in the Plan, problems (conflicting zones or SLAs on one
    group), and warnings (placement properties kept but not used).
    """
    registry = TypeRegistry()
    groups = {g.name: g for g in plan.groups}
    recorded: list[dict[str, Any]] = []
    problems: list[TemplateProblem] = []
    warnings: list[TemplateProblem] = []
    for position, name, spec in _policies(data):
        ptype = str(spec.get("type", ""))
        raw = spec.get("properties") if isinstance(spec.get("properties"), dict) else {}
        props = {k: resolver.resolve(v, f"policy {name}") for k, v in raw.items()}
        targets = [str(t) for t in spec.get("targets") or []]
        targeted = list(dict.fromkeys(g for t in targets for g in groups_of.get(t, []) if g in groups))
        where = ("topology_template", "policies", position, name)
        if registry.derives_from(ptype, PROVISIONING):
            for group in targeted:
                groups[group].provisioning.update({k: props[k] for k in ("on_partial", "min_ready") if k in props})
            continue
        if not registry.derives_from(ptype, PLACEMENT):
            continue
        props = {k: resolver.protect_secrets(v, f"{name}.{k}", k) for k, v in props.items()}
        for key in sorted(UNUSED_PLACEMENT & set(props)):
            warnings.append(
                TemplateProblem(
                    "policy",
                    f"policy {name!r}: {key} is accepted but not used",
                    node=name,
                    path=(*where, "properties", key),
                    hint=_UNUSED_HINT[key],
                )
            )
        for group_name in targeted:
            group = groups[group_name]
            group.placement.update(props)
            for key in sorted(HONOURED_PLACEMENT & set(props)):
                value = props[key]
                if value is None or is_ref(value):
                    continue  # an input not given yet (validate-only): known at submission
                current = getattr(group, key)
                if current is not None and current != str(value):
                    problems.append(
                        TemplateProblem(
                            "policy",
                            f"compute group {group_name!r} is placed by two policies with different {key}: "
                            f"{current!r} and {value!r}",
                            node=name,
                            path=(*where, "properties", key),
                            hint="give each compute group one placement",
                        )
                    )
                setattr(group, key, str(value))
        recorded.append({"name": name, "type": ptype, "targets": targets, "properties": props})
    return recorded, problems, warnings
