"""Every DODAS resource in the region (for the leak collector): instances, key pairs, security groups, volumes.

A resource is ours when it carries the dodas:project tag or a `dodas-` name; `deployment` is its
dodas:deployment tag (or, for key pairs and groups, read from the deterministic name) or None when unknown.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dodas_tasks.clouds.base import CloudError, ProjectResource
from dodas_tasks.clouds.ec2.errors import error_code
from dodas_tasks.naming import PREFIX, TAG_DEPLOYMENT, TAG_PROJECT, deployment_in_name
from dodas_tasks.settings import PROJECT_TAG

if TYPE_CHECKING:
    from dodas_tasks.clouds.ec2.driver import EC2Driver

KINDS = ("instance", "key_pair", "security_group", "volume")


def _tags(item: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in item.get("Tags", [])}


def _ours(tags: dict[str, str], name: str) -> bool:
    return tags.get(TAG_PROJECT) == PROJECT_TAG or name.startswith(PREFIX)


def _deployment(tags: dict[str, str], name: str) -> str | None:
    return tags.get(TAG_DEPLOYMENT) or deployment_in_name(name)


def list_project_resources(driver: EC2Driver) -> list[ProjectResource]:
    """One listing call per kind (paginated), not one per deployment."""
    found: list[ProjectResource] = []
    live = [{"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}]
    for inst in driver._instances(live):
        tags = _tags(inst)
        name = tags.get("Name", "")
        if _ours(tags, name):
            found.append(
                ProjectResource("instance", inst["InstanceId"], name, _deployment(tags, name), inst.get("LaunchTime"))
            )
    for key in driver._call("DescribeKeyPairs")["KeyPairs"]:
        tags, name = _tags(key), key["KeyName"]
        if _ours(tags, name):
            found.append(ProjectResource("key_pair", name, name, _deployment(tags, name), key.get("CreateTime")))
    for group in driver._call("DescribeSecurityGroups")["SecurityGroups"]:
        tags, name = _tags(group), group["GroupName"]
        if _ours(tags, name):
            found.append(ProjectResource("security_group", group["GroupId"], name, _deployment(tags, name)))
    for volume in driver._call("DescribeVolumes")["Volumes"]:
        tags = _tags(volume)
        name = tags.get("Name", "")
        if _ours(tags, name):
            found.append(
                ProjectResource("volume", volume["VolumeId"], name, _deployment(tags, name), volume.get("CreateTime"))
            )
    return found


def delete_resource(driver: EC2Driver, kind: str, resource_id: str) -> None:
    """Delete one resource listed above; unknown ones are already gone (not an error)."""
    if kind == "instance":
        driver.delete_server(resource_id)
    elif kind == "key_pair":
        driver.delete_key_pair(resource_id)
    elif kind == "security_group":
        driver.delete_security_group(resource_id)
    elif kind == "volume":
        try:
            driver._call("DeleteVolume", VolumeId=resource_id)
        except CloudError as exc:
            if error_code(exc) == "VolumeInUse":
                raise CloudError(f"volume {resource_id} is still attached", retryable=True) from None
            if error_code(exc) != "InvalidVolume.NotFound":
                raise
    else:
        raise CloudError(f"unknown resource kind {kind!r}; expected one of {', '.join(KINDS)}")
