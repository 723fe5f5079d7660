"""Deterministic names and tags of cloud resources, so a retry or a restart finds what exists instead of duplicating."""

from __future__ import annotations

import re

from dodas_tasks.clouds.base import TAG_DEPLOYMENT, TAG_GROUP, TAG_INDEX, TAG_PROJECT
from dodas_tasks.settings import PROJECT_TAG


def short_id(deployment_id: str) -> str:
    return deployment_id.replace("-", "")[:8]


def server_name(deployment_id: str, group: str, index: int) -> str:
    """dodas-<8 hex>-<group>-<index>: readable in any cloud console and unique per deployment."""
    clean = re.sub(r"[^a-z0-9-]+", "-", group.lower()).strip("-")[:40]
    return f"dodas-{short_id(deployment_id)}-{clean}-{index}"


def key_pair_name(deployment_id: str) -> str:
    return f"dodas-{deployment_id}"


def site_name(deployment_id: str) -> str:
    """dodas-<deployment id>: the deployment's name on a site's shared services (Marathon group, Chronos jobs)."""
    return f"dodas-{deployment_id.lower()}"


def deployment_tags(deployment_id: str) -> dict[str, str]:
    return {TAG_PROJECT: PROJECT_TAG, TAG_DEPLOYMENT: deployment_id}


def server_tags(deployment_id: str, group: str, index: int) -> dict[str, str]:
    return {**deployment_tags(deployment_id), TAG_GROUP: group, TAG_INDEX: str(index)}


def dag_id(deployment_id: str) -> str:
    """The Airflow DAG that deploys, scales, heals and undeploys one deployment."""
    return f"dodas_deployment_{short_id(deployment_id)}"
