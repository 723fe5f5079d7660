"""Which site an SLA placement stands for: the `DODAS_SLA_SITES` site setting, applied at submission.

The INDIGO orchestrator asked its SLA manager (SLAM) which provider an `sla_id` of a `SlaPlacement` policy meant;
here the service's operator says it in one setting, read by every process that accepts submissions (the workers
running `dodas_submit`, the api-server):

    DODAS_SLA_SITES='{"SLA_provider-AWS-us-east-1_indigo-dc": {"cloud": "ec2", "availability_zone": "us-east-1b"},
                      "sla-recas": "openstack"}'

An SLA maps to a cloud name (as `cloud` at submission) and optionally a zone, given to the groups the policy
targets unless a Placement policy names their zone itself. A deployment with SLAs goes to their cloud only (no
failover elsewhere); an SLA that maps to nothing, or SLAs of one template on different clouds, are refused.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from dodas_tasks.clouds.base import known_clouds
from dodas_tasks.tosca.errors import DodasTemplateError, TemplateProblem
from dodas_tasks.tosca.plan import Plan

SLA_SITES_ENV = "DODAS_SLA_SITES"


@dataclass(frozen=True)
class SlaSite:
    """Where an SLA's VMs go: a cloud (as named at submission) and optionally one of its availability zones."""

    cloud: str
    availability_zone: str | None = None


class SiteSettingError(ValueError):
    """DODAS_SLA_SITES is not what it should be; the message shows the expected form."""


def sla_sites() -> dict[str, SlaSite]:
    """The SLA → site mapping of this service (empty when DODAS_SLA_SITES is unset)."""
    text = os.environ.get(SLA_SITES_ENV, "").strip()
    if not text:
        return {}
    expected = f'{SLA_SITES_ENV} must be JSON {{"<sla_id>": "<cloud>" or {{"cloud": …, "availability_zone": …}}}}'
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SiteSettingError(f"{expected}: {exc}") from None
    if not isinstance(data, dict):
        raise SiteSettingError(expected)
    sites = {}
    for sla, site in data.items():
        if isinstance(site, str):
            site = {"cloud": site}
        valid = isinstance(site, dict) and isinstance(site.get("cloud"), str)
        if not valid or set(site) - {"cloud", "availability_zone"}:
            raise SiteSettingError(f"{expected}; SLA {sla!r} has {site!r}")
        zone = site.get("availability_zone")
        sites[str(sla)] = SlaSite(site["cloud"], str(zone) if zone else None)
    return sites


def place(
    plan: Plan,
    clouds: list[str],
    source: str = "template",
    sites: dict[str, SlaSite] | None = None,
) -> list[str]:
    """The clouds a submission may use once its SLAs are placed; the SLAs' zones are set on their groups.

    Without SLA placement the requested clouds stand. Raises DodasTemplateError for an SLA no site setting maps
    (listing the known ones), SLAs on different clouds, or an SLA whose cloud is not configured here.
    """
    slas = {g.name: g.sla_id for g in plan.groups if g.sla_id}
    if not slas:
        return clouds
    if sites is None:
        try:
            sites = sla_sites()
        except SiteSettingError as exc:
            problem = TemplateProblem("placement", f"this service's SLA setting is broken: {exc}",
                                      hint="tell the service's operator")  # fmt: skip
            raise DodasTemplateError([problem], source) from None
    unknown = sorted(set(slas.values()) - set(sites))
    if unknown:
        known = ", ".join(sorted(sites)) or f"none ({SLA_SITES_ENV} is not set)"
        raise DodasTemplateError(
            [
                TemplateProblem(
                    "placement",
                    f"SLA {sla!r} maps to no site of this service",
                    hint=f"known SLAs: {known}",
                )
                for sla in unknown
            ],
            source,
        )
    chosen = sorted({sites[sla].cloud for sla in slas.values()})
    if len(chosen) > 1:
        raise DodasTemplateError(
            [TemplateProblem("placement", f"the template's SLAs map to different clouds ({', '.join(chosen)})",
                             hint="one deployment lives on one cloud: use SLAs of one site")],
            source,
        )  # fmt: skip
    if chosen[0] not in known_clouds():
        raise DodasTemplateError(
            [TemplateProblem("placement", f"the SLAs map to cloud {chosen[0]!r}, which is not configured",
                             hint=f"fix {SLA_SITES_ENV}; configured clouds: {', '.join(known_clouds())}")],
            source,
        )  # fmt: skip
    for group in plan.groups:
        if group.sla_id and group.availability_zone is None:
            group.availability_zone = sites[group.sla_id].availability_zone
    return chosen


def keep_site_placement(old: Plan, new: Plan) -> None:
    """A template update keeps the zones its SLAs were given at submission (the setting may have changed since)."""
    before = {g.name: g for g in old.groups}
    for group in new.groups:
        previous = before.get(group.name)
        if previous and group.sla_id and group.sla_id == previous.sla_id and group.availability_zone is None:
            group.availability_zone = previous.availability_zone
