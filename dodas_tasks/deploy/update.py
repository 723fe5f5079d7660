"""A template update, as orchestrator clients (CLUES, orchent) send it: a new template whose scalable counts and
removal lists scale the deployment, with new inputs merged into the old ones.

The DAG of a deployment is shaped by its stored plan, so an update may only change what the reconciler changes on
a live deployment: how many VMs each group has (and its scaling bounds) and which ones go. Anything else is
refused, saying what differs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dodas_tasks.deploy.placement import keep_site_placement
from dodas_tasks.deploy.service import RequestConflict, RequestRefused, request_scale, stored_inputs
from dodas_tasks.store import DeploymentStatus, Store
from dodas_tasks.tosca.compiler import compile as compile_template
from dodas_tasks.tosca.plan import Plan

DELETING = {DeploymentStatus.DELETE_IN_PROGRESS, DeploymentStatus.DELETE_COMPLETE, DeploymentStatus.DELETE_FAILED}
SCALING_FIELDS = ("count", "removal_list", "min_count", "max_count")  # what an update may change in a compute group


@dataclass
class UpdateOutcome:
    """What the update asked for: new counts per group (old, new) and the nodes to remove."""

    counts: dict[str, tuple[int, int]] = field(default_factory=dict)
    removals: dict[str, list[str]] = field(default_factory=dict)

    def describe(self) -> str:
        parts = [f"{g}: {old} → {new}" for g, (old, new) in self.counts.items()]
        parts += [f"{g}: remove {', '.join(ids)}" for g, ids in self.removals.items()]
        return "; ".join(parts) or "no change of counts"


def request_update(
    store: Store, deployment_id: str, template_text: str, parameters: dict[str, Any] | None, who: str = ""
) -> UpdateOutcome:
    """Compile the new template with the merged inputs; record the scaling it asks for (the next run applies it).

    Raises DodasTemplateError for a bad template, RequestConflict while the deployment is being deleted, and
    RequestRefused for changes other than scaling.
    """
    dep = store.get_deployment(deployment_id)
    if dep.status in DELETING:
        raise RequestConflict(f"deployment {deployment_id} is {dep.status}: it cannot be updated")
    inputs = {**store.get_inputs(deployment_id), **(parameters or {})}
    new = compile_template(template_text, inputs, source=f"update of {deployment_id}")
    old = dep.plan
    keep_site_placement(old, new)
    differences = _non_scaling_differences(old, new)
    if differences:
        raise RequestRefused(
            f"an update may only change the scalable count or removal_list of compute groups (and inputs that "
            f"only change those); this one also changes {', '.join(differences)}"
        )
    outcome = UpdateOutcome()
    for group in new.groups:
        current = dep.desired_counts.get(group.name, group.count)
        if group.count != current:
            outcome.counts[group.name] = (current, group.count)
        if group.removal_list:
            outcome.removals[group.name] = list(group.removal_list)
        if group.count != current or group.removal_list:
            request_scale(store, deployment_id, group.name, group.count, group.removal_list, reason="template update")
    kept_inputs, secret_names = stored_inputs(new)
    store.update_deployment(
        deployment_id, template=template_text, plan=new, inputs=kept_inputs, secret_inputs=secret_names
    )
    store.add_event(deployment_id, "update", f"template updated{' by ' + who if who else ''}: {outcome.describe()}")
    return outcome


def _non_scaling_differences(old: Plan, new: Plan) -> list[str]:
    """Names of what differs between two plans once counts, removal lists and input values are set aside."""

    def comparable(plan: Plan) -> dict[str, Any]:
        data = plan.to_dict()
        data.pop("inputs")  # values of inputs matter only through what they change elsewhere
        data.pop("warnings")  # the same warnings, located in another source
        for group in data["groups"]:
            for name in SCALING_FIELDS:
                group.pop(name)
        for name in ("min_count", "max_count"):  # elastic bounds follow the group's
            data["elasticity"].pop(name)
        return data

    before, after = comparable(old), comparable(new)
    out: list[str] = []
    for key in sorted(set(before) | set(after)):
        if before.get(key) == after.get(key):
            continue
        if key in ("groups", "components", "outputs"):
            named_before = {item["name"]: item for item in before.get(key, [])}
            named_after = {item["name"]: item for item in after.get(key, [])}
            changed = sorted(
                n for n in set(named_before) | set(named_after) if named_before.get(n) != named_after.get(n)
            )
            out.append(f"{key} {', '.join(changed)}")
        else:
            out.append(key)
    return out
