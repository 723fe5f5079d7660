"""What a region offers: instance types as FlavorOptions and images by id or name, cached per process.

The instance type list is long (hundreds of types, several pages) and changes rarely: one listing per region and
architecture per process.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from dodas_tasks.clouds.base import CloudError
from dodas_tasks.clouds.ec2.errors import aws_errors, error_code
from dodas_tasks.clouds.sizing import FlavorOption, parse_image

DEFAULT_IMAGE_OWNERS = ("self", "amazon", "099720109477")  # 099720109477: Canonical (Ubuntu)
_lock = threading.Lock()
_types: dict[tuple[str, str, str], list[FlavorOption]] = {}
_images: dict[tuple[str, str, str], Image] = {}


@dataclass(frozen=True)
class Image:
    """An AMI with what launching needs: architecture and root device (name and size)."""

    id: str
    name: str
    architecture: str
    root_device: str
    root_size_gb: int


def _where(client: Any) -> tuple[str, str]:
    return client.meta.endpoint_url, client.meta.region_name


def instance_types(client: Any, architecture: str, conn_id: str) -> list[FlavorOption]:
    """Current-generation instance types of the client's region that run `architecture` images."""
    key = (*_where(client), architecture)
    with _lock:
        if key in _types:
            return _types[key]
    filters = [
        {"Name": "current-generation", "Values": ["true"]},
        {"Name": "processor-info.supported-architecture", "Values": [architecture]},
    ]
    options = []
    with aws_errors("DescribeInstanceTypes", conn_id):
        for page in client.get_paginator("describe_instance_types").paginate(Filters=filters):
            for item in page["InstanceTypes"]:
                gpus = sum(g.get("Count", 0) for g in item.get("GpuInfo", {}).get("Gpus", []))
                options.append(
                    FlavorOption(
                        name=item["InstanceType"],
                        cpus=int(item["VCpuInfo"]["DefaultVCpus"]),
                        mem_mb=int(item["MemoryInfo"]["SizeInMiB"]),
                        disk_gb=0,  # EBS root disks are sized per launch, so disk never rules a type out
                        gpus=gpus,
                    )
                )
    with _lock:
        _types[key] = options
    return options


def named_type(client: Any, name: str, conn_id: str) -> FlavorOption:
    """The instance type the template names (one cheap call instead of the whole listing)."""
    try:
        with aws_errors("DescribeInstanceTypes", conn_id):
            found = client.describe_instance_types(InstanceTypes=[name])["InstanceTypes"]
    except CloudError as exc:
        if not error_code(exc).startswith("InvalidInstanceType"):
            raise
        found = []
    if not found:
        raise CloudError(f"EC2 region {client.meta.region_name} has no instance type {name!r} (check instance_type)")
    item = found[0]
    return FlavorOption(name, int(item["VCpuInfo"]["DefaultVCpus"]), int(item["MemoryInfo"]["SizeInMiB"]))


def resolve_image(client: Any, ref: str, conn_id: str, owners: tuple[str, ...] = DEFAULT_IMAGE_OWNERS) -> Image:
    """`aws://region/ami-id`, a bare `ami-…` id, or an image name (newest match among `owners`)."""
    image = parse_image(ref)
    region = client.meta.region_name
    if image.scheme == "ost":
        raise CloudError(f"image {ref!r} is an OpenStack image; on EC2 use aws://{region}/ami-… or an AMI name")
    if image.scheme == "aws" and image.location != region:
        raise CloudError(f"image {ref!r} is in region {image.location} but connection {conn_id!r} uses {region}")
    key = (*_where(client), image.image_id)
    with _lock:
        if key in _images:
            return _images[key]
    by_id = image.scheme == "aws" or image.image_id.startswith("ami-")
    with aws_errors("DescribeImages", conn_id):
        if by_id:
            found = client.describe_images(ImageIds=[image.image_id])["Images"]
        else:
            filters = [{"Name": "name", "Values": [image.image_id]}, {"Name": "state", "Values": ["available"]}]
            found = client.describe_images(Owners=list(owners), Filters=filters)["Images"]
    if not found:
        raise CloudError(
            f"no image {image.image_id!r} in {region} (owners {', '.join(owners)}); "
            "give aws://<region>/ami-<id> or an exact AMI name"
        )
    item = max(found, key=lambda i: (i.get("CreationDate", ""), i["ImageId"]))
    root = item.get("RootDeviceName") or "/dev/xvda"
    size = next(
        (
            int(m["Ebs"].get("VolumeSize", 0))
            for m in item.get("BlockDeviceMappings", [])
            if m.get("DeviceName") == root
        ),
        0,
    )
    resolved = Image(item["ImageId"], item.get("Name", ""), item.get("Architecture", "x86_64"), root, size)
    with _lock:
        _images[key] = resolved
    return resolved
