"""Every deterministic name DODAS gives things, built and read back in one place.

A retry or a restart finds what already exists by its name or tags instead of making it twice, so each name
must come out the same wherever it is computed: cloud resources (servers, key pairs, security groups, tags),
names on a site's shared services (Marathon groups and apps, Chronos jobs), Airflow DAG ids, IAM client names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dodas_tasks.settings import PROJECT_TAG

PREFIX = "dodas-"  # every cloud resource and site-service name DODAS makes starts with it

# Tag keys put on every resource DODAS creates (OpenStack metadata, EC2 tags, the local cloud's server state)
TAG_PROJECT = "dodas:project"  # value: settings.PROJECT_TAG
TAG_DEPLOYMENT = "dodas:deployment"
TAG_GROUP = "dodas:group"
TAG_INDEX = "dodas:index"
TAG_ATTEMPT = "dodas:attempt"  # a slot deliberately created again: EC2 then spends fresh idempotency tokens

# Airflow DAGs that exist once (dags/dodas.py); the per-deployment ones are named by the functions below
SUBMIT_DAG_ID = "dodas_submit"
UNDEPLOY_DAG_ID = "dodas_undeploy"
SCALE_DAG_ID = "dodas_scale"

SHORT_ID_LENGTH = 8
GROUP_IN_SERVER_NAME_MAX = 40  # keeps a server name one valid host-name label (≤ 63 characters)
_DEPLOYMENT_ID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_DEPLOYMENT_IN_NAME = re.compile(rf"^{PREFIX}(?P<deployment>{_DEPLOYMENT_ID})(?:-|$)")
_DAG_OF_DEPLOYMENT = re.compile(rf"^dodas_(?:deployment|elastic)_(?P<short_id>[0-9a-f]{{{SHORT_ID_LENGTH}}})$")
_SERVER_NAME = re.compile(rf"^{PREFIX}(?P<short_id>[^-]{{1,{SHORT_ID_LENGTH}}})-(?P<group>[a-z0-9-]+)-(?P<index>\d+)$")


def short_id(deployment_id: str) -> str:
    """The first 8 characters of the id without dashes: unique among deployments (submission keeps it so)."""
    return deployment_id.replace("-", "")[:SHORT_ID_LENGTH]


def slug(text: str, limit: int) -> str:
    """`text` lowercased, runs of anything but a-z, 0-9 and '-' made one '-', trimmed, at most `limit` long."""
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:limit]


# -- cloud resources -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerName:
    """What a server name says: its deployment's short id, its compute group as written in it, its index."""

    short_id: str
    group: str  # the group's slug: lowercased, odd characters made '-', cut to GROUP_IN_SERVER_NAME_MAX
    index: int


def server_name(deployment_id: str, group: str, index: int) -> str:
    """dodas-<short id>-<group>-<index>: readable in any cloud console, a valid host name, unique per deployment."""
    group_part = slug(group, GROUP_IN_SERVER_NAME_MAX) or "node"
    return f"{PREFIX}{short_id(deployment_id)}-{group_part}-{index}"


def parse_server_name(name: str) -> ServerName | None:
    """The parts of a name made by server_name; None for any other name."""
    match = _SERVER_NAME.match(name)
    if match is None:
        return None
    return ServerName(match["short_id"], match["group"], int(match["index"]))


def resource_name(deployment_id: str, *parts: str) -> str:
    """dodas-<deployment id>[-<part>...]: a cloud resource one deployment owns (key pair, security groups)."""
    return "-".join((f"{PREFIX}{deployment_id}", *parts))


def key_pair_name(deployment_id: str) -> str:
    return resource_name(deployment_id)


def deployment_in_name(name: str) -> str | None:
    """The deployment id a resource_name carries (read back when a resource has no tags); None when none."""
    match = _DEPLOYMENT_IN_NAME.match(name)
    return match["deployment"] if match else None


def deployment_tags(deployment_id: str) -> dict[str, str]:
    return {TAG_PROJECT: PROJECT_TAG, TAG_DEPLOYMENT: deployment_id}


def group_tags(deployment_id: str, group: str) -> dict[str, str]:
    return {**deployment_tags(deployment_id), TAG_GROUP: group}


def server_tags(deployment_id: str, group: str, index: int) -> dict[str, str]:
    return {**group_tags(deployment_id, group), TAG_INDEX: str(index)}


# -- a site's shared services and the IdP ----------------------------------------------------------------------


def site_name(deployment_id: str) -> str:
    """dodas-<deployment id>: the deployment's name on a site's shared services (Marathon group, Chronos jobs)."""
    return f"{PREFIX}{deployment_id.lower()}"


def marathon_group(deployment_id: str) -> str:
    """/dodas-<deployment id>: the Marathon group holding the deployment's apps on a site's Marathon."""
    return "/" + site_name(deployment_id)


def marathon_app_id(deployment_id: str, component: str) -> str:
    """Marathon ids allow lowercase letters, digits, '-' and '.': TOSCA names are mapped onto them."""
    return f"{marathon_group(deployment_id)}/{re.sub(r'[^a-z0-9.-]', '-', component.lower())}"


def marathon_volume_name(app_id: str, container_path: str) -> str:
    """The external (dvdi) volume of one app and container path: each app keeps its own data."""
    return f"{app_id.strip('/')}{container_path}".replace("/", "-")


def chronos_job_prefix(deployment_id: str) -> str:
    """What every Chronos job name of the deployment starts with, so deployments sharing a Chronos never meet."""
    return site_name(deployment_id) + "-"


def chronos_job_name(deployment_id: str, component: str) -> str:
    return chronos_job_prefix(deployment_id) + re.sub(r"[^a-z0-9-]", "-", component.lower())


def iam_client_name(deployment_id: str) -> str:
    """The name of the OAuth client DODAS registers at the IdP for one deployment's cluster."""
    return f"{PREFIX}{deployment_id}"


ROLE_SESSION_NAME_MAX = 64  # AWS's limit for RoleSessionName


def role_session_name(subject: str) -> str:
    """dodas-<subject>: the AWS role session of an owner on a site that acts as the owners (CloudTrail shows who);
    characters AWS refuses become '-', cut to 64."""
    return (PREFIX + re.sub(r"[^\w+=,.@-]", "-", subject))[:ROLE_SESSION_NAME_MAX]


# -- Airflow ----------------------------------------------------------------------------------------------------


def deployment_dag_id(deployment_id: str) -> str:
    """The Airflow DAG that deploys, scales, heals and undeploys one deployment."""
    return f"dodas_deployment_{short_id(deployment_id)}"


def elastic_dag_id(deployment_id: str) -> str:
    """The Airflow DAG that watches one elastic deployment's load and scales it."""
    return f"dodas_elastic_{short_id(deployment_id)}"


def short_id_of_dag(dag_id: str) -> str | None:
    """The short id of the deployment a deployment or elastic DAG belongs to; None for any other DAG."""
    found = _DAG_OF_DEPLOYMENT.match(dag_id)
    return found["short_id"] if found else None
