"""Chronos jobs (indigo Container.Application.Docker.Chronos) on a site's Chronos, as the INDIGO orchestrator's
Chronos provider posted them: scheduled jobs (ISO 8601 repeat) and jobs run after their `parent_job`s.

Job names carry the deployment (`dodas-<deployment id>-<node>`), so deployments sharing a Chronos never meet and
undeploy deletes exactly its own jobs, children before parents.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from dodas_tasks.frameworks.base import (
    Cluster,
    DeployContext,
    NoNodeScripts,
    Runner,
    SiteServices,
    VerificationFailed,
    Verified,
)
from dodas_tasks.frameworks.marathon import Transport, contains
from dodas_tasks.frameworks.marathon_apps import text
from dodas_tasks.naming import chronos_job_name, chronos_job_prefix
from dodas_tasks.tosca.units import size_to_mib


class ChronosError(RuntimeError):
    """Chronos refused a request; the message names the job and why."""


def chronos_job(
    name: str,
    props: Mapping[str, Any],
    image: str,
    parents: Sequence[str] = (),
    resources: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """An indigo Container.Application.Docker.Chronos node as a Chronos job (scheduled, or dependent on parents).

    resources: the hosting Container.Runtime.Docker's `host` capability (num_cpus, mem_size).
    """
    resources = resources or {}
    job: dict[str, Any] = {
        "name": name,
        "command": str(props["command"]),
        "retries": int(props.get("retries") or 0),
        "epsilon": str(props.get("epsilon", "PT10S")),
        "container": {"type": "DOCKER", "image": image, "forcePullImage": bool(props.get("force_pull_image", True))},
        "environmentVariables": [
            {"name": str(k), "value": text(v)} for k, v in (props.get("environment_variables") or {}).items()
        ],
        "uris": list(props.get("uris") or []),
        "shell": True,
        "cpus": float(resources.get("num_cpus", 1.0)),
        "mem": float(size_to_mib(resources["mem_size"])) if resources.get("mem_size") else 512.0,
    }
    if props.get("description"):
        job["description"] = str(props["description"])
    if parents:
        job["parents"] = list(parents)
    else:
        job["schedule"] = str(props.get("schedule") or "R/2000-01-01T00:00:00Z/PT24H")
    return job


class ChronosClient:
    """The Chronos v1 scheduler calls DODAS needs."""

    def __init__(self, transport: Transport) -> None:
        self._call = transport

    def jobs(self) -> list[dict[str, Any]]:
        status, body = self._call("GET", "/v1/scheduler/jobs")
        if status != 200:
            raise ChronosError(f"Chronos GET jobs: HTTP {status}")
        return list(body or [])

    def put_job(self, job: Mapping[str, Any]) -> None:
        """POST a scheduled job to /iso8601 or a dependent one to /dependency (both create or replace)."""
        kind = "dependency" if job.get("parents") else "iso8601"
        status, body = self._call("POST", f"/v1/scheduler/{kind}", dict(job))
        if status not in (200, 201, 204):
            raise ChronosError(f"Chronos refused job {job['name']}: HTTP {status} {body or ''}".strip())

    def ensure_jobs(self, jobs: Sequence[Mapping[str, Any]]) -> list[str]:
        """POST the jobs Chronos does not hold as desired, parents first; returns their names."""
        current = {j.get("name"): j for j in self.jobs()}
        changed = []
        for job in jobs:
            if not contains(current.get(job["name"]), job):
                self.put_job(job)
                changed.append(job["name"])
        return changed

    def delete_job(self, name: str) -> bool:
        status, _ = self._call("DELETE", f"/v1/scheduler/job/{quote(name, safe='')}")
        if status in (200, 204):
            return True
        if status == 404:
            return False
        raise ChronosError(f"Chronos refused to delete job {name}: HTTP {status}")


def children_first(jobs: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Jobs ordered so that no job comes after one of its parents (the order to delete them in)."""
    remaining, ordered = list(jobs), []
    while remaining:
        parents = {p for j in remaining for p in j.get("parents") or ()}
        leaves = [j for j in remaining if j.get("name") not in parents] or remaining[:1]
        ordered += leaves
        remaining = [j for j in remaining if j not in leaves]
    return ordered


class ChronosJobs(NoNodeScripts):
    """Jobs on the site's Chronos (the `chronos_conn_id` connection); each deploy task posts one job."""

    name = "chronos-jobs"
    roles = ("job",)

    def __init__(
        self,
        *,
        chronos_conn_id: str = "dodas_chronos",
        deployment_id: str | None = None,
        site_services: SiteServices | None = None,
    ) -> None:
        self.chronos_conn_id = chronos_conn_id
        self.deployment_id = deployment_id
        self.site_services = site_services

    def _owner(self) -> str:
        if not self.deployment_id:
            raise ChronosError("chronos-jobs needs the deployment id to name its jobs")
        return self.deployment_id

    @property
    def prefix(self) -> str:
        return chronos_job_prefix(self._owner())

    def job_name(self, component: str) -> str:
        return chronos_job_name(self._owner(), component)

    def site(self) -> ChronosClient:
        """The site's Chronos (connection `chronos_conn_id`), through the site services handed in."""
        if self.site_services is None:
            raise ChronosError(f"{self.name}: no site services were handed in to reach {self.chronos_conn_id}")
        return self.site_services.chronos(self.chronos_conn_id)

    def own_jobs(self, client: ChronosClient) -> list[dict[str, Any]]:
        return [j for j in client.jobs() if str(j.get("name", "")).startswith(self.prefix)]

    def deploy(self, context: DeployContext) -> list[str]:
        if context.cluster.nodes(context.role):
            raise ChronosError(
                f"{context.component}: Chronos jobs go to the site's Chronos ({self.chronos_conn_id}); host the job "
                "on a Container.Runtime.Docker that is hosted on no VM of the deployment"
            )
        image = (context.artifacts.get("image") or {}).get("file")
        if not image:
            raise ChronosError(f"{context.component}: no Docker image (give the image artifact's file)")
        parents = [self.job_name(p) for p in context.requirements.get("parent_job", ())]
        job = chronos_job(
            self.job_name(context.component), context.properties, str(image), parents, context.host.get("host")
        )
        try:
            changed = self.site().ensure_jobs([job])
        except ChronosError as exc:
            raise ChronosError(f"{context.component}: site Chronos ({self.chronos_conn_id}): {exc}") from None
        context.log(f"{context.component}: Chronos job {job['name']} {'posted' if changed else 'unchanged'}")
        return changed

    def verify(self, cluster: Cluster, run: Runner) -> Verified:
        """Every job of the deployment is known to Chronos, enabled, and has not failed its last run."""
        try:
            jobs = self.own_jobs(self.site())
        except ChronosError as exc:
            raise VerificationFailed(str(exc)) from None
        if not jobs:
            raise VerificationFailed(f"no job named {self.prefix}* is known to the site's Chronos")
        problems = []
        for job in jobs:
            if job.get("disabled"):
                problems.append(f"job {job['name']} is disabled (it failed more often than Chronos allows)")
            elif job.get("lastError") and job.get("lastError", "") >= job.get("lastSuccess", ""):
                problems.append(f"job {job['name']} failed its last run at {job['lastError']}")
        if problems:
            raise VerificationFailed("; ".join(problems))
        return Verified(f"jobs {', '.join(sorted(j['name'] for j in jobs))} scheduled", {"jobs": float(len(jobs))})

    def release(self) -> list[str]:
        """Delete the deployment's jobs from the site's Chronos, children before parents."""
        client = self.site()
        return [str(j["name"]) for j in children_first(self.own_jobs(client)) if client.delete_job(str(j["name"]))]
