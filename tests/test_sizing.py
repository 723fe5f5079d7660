"""Choosing a cloud size and reading INDIGO image URLs."""

from __future__ import annotations

import pytest

from dodas_tasks.clouds.base import CloudError, Flavor
from dodas_tasks.clouds.sizing import FlavorOption, choose_flavor, parse_image

OPTIONS = [
    FlavorOption("m1.small", 1, 2048, 20),
    FlavorOption("m1.medium", 2, 4096, 40),
    FlavorOption("c1.medium", 4, 4096, 40),
    FlavorOption("m1.large", 4, 8192, 80),
]


def test_smallest_fitting_size() -> None:
    assert choose_flavor(OPTIONS, Flavor(cpus=2, mem_mb=3000)).name == "m1.medium"
    assert choose_flavor(OPTIONS, Flavor(cpus=3, mem_mb=4096)).name == "c1.medium"
    assert choose_flavor(OPTIONS, Flavor(cpus=1, mem_mb=8000)).name == "m1.large"


def test_named_instance_type_wins_and_unknown_is_named() -> None:
    assert choose_flavor(OPTIONS, Flavor(1, 1, instance_type="m1.large")).name == "m1.large"
    with pytest.raises(CloudError, match="no instance type 'x1'"):
        choose_flavor(OPTIONS, Flavor(1, 1, instance_type="x1"))


def test_nothing_fits_says_what_is_largest() -> None:
    with pytest.raises(CloudError, match=r"no size .* 16 cpu.*m1.large"):
        choose_flavor(OPTIONS, Flavor(cpus=16, mem_mb=1024))


def test_image_urls() -> None:
    ost = parse_image("ost://horizon.cloud.cnaf.infn.it/0b18691b-2c67-4800-876e-60802024c64f")
    assert (ost.scheme, ost.location, ost.image_id) == (
        "ost",
        "horizon.cloud.cnaf.infn.it",
        "0b18691b-2c67-4800-876e-60802024c64f",
    )
    assert parse_image("aws://us-east-1/ami-12345678").location == "us-east-1"
    assert parse_image("ubuntu-22.04").image_id == "ubuntu-22.04"
    with pytest.raises(CloudError):
        parse_image("gce://x/y")
