"""Deterministic names: what one place builds, the same place reads back, for every id and group a user can give."""

from __future__ import annotations

import re
import uuid

import pytest

from dodas_tasks import naming
from dodas_tasks.naming import (
    GROUP_IN_SERVER_NAME_MAX,
    ServerName,
    chronos_job_name,
    chronos_job_prefix,
    deployment_dag_id,
    deployment_in_name,
    elastic_dag_id,
    iam_client_name,
    key_pair_name,
    marathon_app_id,
    marathon_group,
    marathon_volume_name,
    parse_server_name,
    resource_name,
    server_name,
    server_tags,
    short_id,
    site_name,
)

DEPLOYMENT = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
HOST_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")  # RFC 1123: one label of a host name


@pytest.mark.parametrize(
    ("group", "written"),
    [
        ("wn", "wn"),
        ("mesos-slave-server", "mesos-slave-server"),
        ("mesos_slave_server", "mesos-slave-server"),  # TOSCA names often use '_'
        ("Worker Nodes", "worker-nodes"),
        ("--odd..//name--", "odd-name"),
        ("Ünïcode_grüppe", "n-code-gr-ppe"),
        ("___", "node"),  # nothing usable left: still a valid name
        ("g" * 100, "g" * GROUP_IN_SERVER_NAME_MAX),  # cut so the name stays one host-name label
    ],
)
def test_server_names_round_trip_and_stay_valid_host_names(group: str, written: str) -> None:
    for index in (0, 7, 123456):
        name = server_name(DEPLOYMENT, group, index)
        assert HOST_LABEL.match(name), name
        assert parse_server_name(name) == ServerName("0a1b2c3d", written, index)


def test_server_name_is_the_documented_shape() -> None:
    assert server_name(DEPLOYMENT, "wn", 0) == "dodas-0a1b2c3d-wn-0"  # what tests and cloud consoles show


def test_names_that_are_not_server_names_do_not_parse() -> None:
    for name in ("m", "dodas-leak-0", "dodas-0a1b2c3d-wn", "dodas-0a1b2c3d--3", "node-0a1b2c3d-wn-1", ""):
        assert parse_server_name(name) is None, name


def test_short_id_ignores_dashes_and_names_both_dags() -> None:
    assert short_id("0a1b-2c3d-4e5f") == "0a1b2c3d"
    assert deployment_dag_id(DEPLOYMENT) == "dodas_deployment_0a1b2c3d"
    assert elastic_dag_id(DEPLOYMENT) == "dodas_elastic_0a1b2c3d"


def test_a_deployments_dags_give_its_short_id_back() -> None:
    for dag_id in (deployment_dag_id(DEPLOYMENT), elastic_dag_id(DEPLOYMENT)):
        assert naming.short_id_of_dag(dag_id) == short_id(DEPLOYMENT)
    for other in ("dodas_submit", "dodas_deployment_0a1b", "dodas_deployment_0a1b2c3d9", "my_dodas_elastic_0a1b2c3d"):
        assert naming.short_id_of_dag(other) is None


def test_per_deployment_resources_give_their_deployment_back() -> None:
    for name in (
        key_pair_name(DEPLOYMENT),
        resource_name(DEPLOYMENT, "worker"),
        resource_name(DEPLOYMENT, "vm", "1f2e3d4c"),
    ):
        assert name.startswith(naming.PREFIX)
        assert deployment_in_name(name) == DEPLOYMENT, name
    fresh = str(uuid.uuid4())
    assert deployment_in_name(key_pair_name(fresh)) == fresh
    for name in ("test-key", "dodas-leak-0", server_name(DEPLOYMENT, "wn", 0), f"dodas-{DEPLOYMENT}x", ""):
        assert deployment_in_name(name) is None, name


def test_tags_carry_project_deployment_group_and_index() -> None:
    assert server_tags(DEPLOYMENT, "wn", 3) == {
        naming.TAG_PROJECT: "dodas",
        naming.TAG_DEPLOYMENT: DEPLOYMENT,
        naming.TAG_GROUP: "wn",
        naming.TAG_INDEX: "3",
    }


def test_site_names_keep_deployments_apart_on_shared_services() -> None:
    upper = DEPLOYMENT.upper()
    assert site_name(upper) == site_name(DEPLOYMENT) == f"dodas-{DEPLOYMENT}"
    assert marathon_group(DEPLOYMENT) == f"/dodas-{DEPLOYMENT}"
    app = marathon_app_id(DEPLOYMENT, "Marathon_App.v2")
    assert app == f"/dodas-{DEPLOYMENT}/marathon-app.v2"  # Marathon allows a-z, 0-9, '-' and '.'
    assert marathon_volume_name(app, "/data") == f"dodas-{DEPLOYMENT}-marathon-app.v2-data"
    job = chronos_job_name(DEPLOYMENT, "Fetch.Data")
    assert job == f"dodas-{DEPLOYMENT}-fetch-data" and job.startswith(chronos_job_prefix(DEPLOYMENT))
    assert not chronos_job_name(str(uuid.uuid4()), "fetch").startswith(chronos_job_prefix(DEPLOYMENT))


def test_iam_client_name_names_the_deployment() -> None:
    assert iam_client_name(DEPLOYMENT) == f"dodas-{DEPLOYMENT}"
