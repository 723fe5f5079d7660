"""From TOSCA sizes and image URLs to what a cloud offers: shared by every driver."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from dodas_tasks.clouds.base import CloudError, Flavor


@dataclass(frozen=True)
class FlavorOption:
    """A size a cloud offers (an OpenStack flavor, an EC2 instance type)."""

    name: str
    cpus: int
    mem_mb: int
    disk_gb: int = 0
    gpus: int = 0


def choose_flavor(options: Iterable[FlavorOption], want: Flavor, cloud: str = "cloud") -> FlavorOption:
    """The named instance type when the template gives one, else the smallest option that satisfies
    cpus, memory and disk (fewest cpus, then least memory, then least disk, then name for stability)."""
    options = list(options)
    if want.instance_type:
        for option in options:
            if option.name == want.instance_type:
                return option
        raise CloudError(
            f"{cloud} has no instance type {want.instance_type!r}; it offers: "
            f"{', '.join(sorted(o.name for o in options)) or 'nothing'}"
        )
    fitting = [
        o for o in options if o.cpus >= want.cpus and o.mem_mb >= want.mem_mb and o.disk_gb >= (want.disk_gb or 0)
    ]
    if not fitting:
        raise CloudError(
            f"no size on {cloud} has {want.cpus} cpu(s), {want.mem_mb} MiB memory"
            f"{f' and {want.disk_gb} GB disk' if want.disk_gb else ''}; the largest offers "
            + ", ".join(f"{o.name} ({o.cpus} cpu, {o.mem_mb} MiB)" for o in sorted(options, key=_size)[-3:])
        )
    return min(fitting, key=lambda o: (*_size(o), o.name))


def _size(option: FlavorOption) -> tuple[int, int, int]:
    return option.cpus, option.mem_mb, option.disk_gb


@dataclass(frozen=True)
class ImageRef:
    """An INDIGO-style image reference: `ost://<site>/<uuid>`, `aws://<region>/<ami-id>`, or a plain name."""

    scheme: str  # "ost", "aws" or "" for a name
    location: str  # site host or region ("" for a name)
    image_id: str  # uuid, ami id, or the name


def parse_image(value: str) -> ImageRef:
    text = (value or "").strip()
    for scheme in ("ost", "aws"):
        prefix = f"{scheme}://"
        if text.startswith(prefix):
            location, _, image_id = text[len(prefix) :].partition("/")
            if not location or not image_id:
                raise CloudError(f"image {value!r}: expected {prefix}<{'site' if scheme == 'ost' else 'region'}>/<id>")
            return ImageRef(scheme, location, image_id)
    if "://" in text:
        raise CloudError(f"image {value!r}: unknown scheme (use ost://site/uuid, aws://region/ami-id or a name)")
    return ImageRef("", "", text)
