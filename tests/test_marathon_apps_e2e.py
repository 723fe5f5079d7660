"""Generic container apps (the corpus indigo_marathon_app template) on a site's Marathon, through the deployment
DAG (dag.test()): the app's definition from the artifact and the runtime's host capability, one Marathon group per
deployment so deployments sharing the site never meet, a rerun that puts nothing, undeploy that deletes the group.

The site's Marathon is the Marathon v2 HTTP double (tests/mesos_double), with basic auth, reached through the
`dodas_marathon` Airflow connection as a site's real one would be.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from mesos_double import ClusterDouble, ClusterState
from test_mesos_e2e import airflow_db, run_dag, store  # noqa: F401 - fixtures and the DAG runner

from dodas_tasks.deploy import service
from dodas_tasks.deploy.naming import dag_id
from dodas_tasks.store import DeploymentStatus, Store

SITE_AUTH = ("site-admin", "site-pass-Marathon")

pytestmark = pytest.mark.slow


@pytest.fixture
def site_marathon(monkeypatch: pytest.MonkeyPatch) -> Iterator[ClusterDouble]:
    agents = {"127.0.0.21": True, "127.0.0.22": True}
    double = ClusterDouble(state=ClusterState(agents=agents, credentials=SITE_AUTH, deploy_polls=2))
    conn = {"conn_type": "http", "host": double.url, "login": SITE_AUTH[0], "password": SITE_AUTH[1]}
    monkeypatch.setenv("AIRFLOW_CONN_DODAS_MARATHON", json.dumps(conn))
    yield double
    double.stop()


def verify_events(records: Store, deployment_id: str) -> list[str]:
    return [e.message for e in records.list_events(deployment_id, limit=500) if e.kind == "verify"]


def test_corpus_marathon_app_on_the_sites_marathon_reconciles_and_undeploys(
    airflow_db: None,  # noqa: F811
    store: Store,  # noqa: F811
    site_marathon: ClusterDouble,
    corpus: Path,
) -> None:
    text = (corpus / "examples__indigo_marathon_app.yaml").read_text()
    first = service.submit(store, text, {"docker_image": "nginx:1.27", "port": 80, "cpus": 0.5}, source="app")
    second = service.submit(store, text, {"docker_image": "httpd:2.4", "mem": "2 GB"}, source="app")

    for deployment_id in (first, second):
        run = run_dag(dag_id(deployment_id))
        dep = store.get_deployment(deployment_id)
        assert run.state == "success", dep.status_reason
        assert dep.status == DeploymentStatus.CREATE_COMPLETE
        assert store.list_nodes(deployment_id) == []  # nothing of this deployment runs on a VM
    apps = site_marathon.state.apps
    one, two = f"/dodas-{first}/marathon-app", f"/dodas-{second}/marathon-app"
    assert sorted(apps) == sorted([one, two])  # one group per deployment: the two never meet

    # the app as the INDIGO orchestrator's Marathon provider built it
    app = apps[one]
    assert app["container"]["docker"]["image"] == "nginx:1.27" and app["container"]["docker"]["network"] == "BRIDGE"
    assert (app["cpus"], app["mem"], app["instances"]) == (0.5, 1024.0, 1)
    assert app["container"]["docker"]["portMappings"] == [
        {"containerPort": 80, "hostPort": 0, "servicePort": 80, "protocol": "tcp"}
    ]
    assert app["container"]["volumes"] == [
        {
            "containerPath": "/data",
            "mode": "RW",
            "external": {
                "name": f"dodas-{first}-marathon-app-data",  # one volume per deployment, app and path
                "provider": "dvdi",
                "options": {"dvdi/driver": "rexray"},
            },
        }
    ]
    assert app["labels"]["HAPROXY_GROUP"] == "external"
    assert (apps[two]["mem"], apps[two]["container"]["docker"]["portMappings"][0]["servicePort"]) == (2048.0, 8080)
    assert verify_events(store, first) == [f"marathon-apps: {one} running and healthy"]

    # a second run reconciles: the same definition, no PUT
    puts = list(site_marathon.state.puts)
    run = run_dag(dag_id(first))
    assert run.state == "success" and store.get_deployment(first).status == DeploymentStatus.UPDATE_COMPLETE
    assert site_marathon.state.puts == puts

    # undeploy deletes the deployment's group from the site, and only it
    service.request_undeploy(store, first)
    assert run_dag(dag_id(first)).state == "success"
    assert store.get_deployment(first).status == DeploymentStatus.DELETE_COMPLETE
    assert sorted(site_marathon.state.apps) == [two]
    undeploy = [e.message for e in store.list_events(first, limit=500) if e.kind == "undeploy"]
    assert undeploy == [f"removed from the site's services: {one}"]

    # a site that cannot be reached fails the deletion, saying so, and keeps it to be run again
    site_marathon.state.credentials = ("site-admin", "rotated")
    service.request_undeploy(store, second)
    assert run_dag(dag_id(second)).state == "failed"
    dep = store.get_deployment(second)
    assert dep.status == DeploymentStatus.DELETE_FAILED
    assert "apps on a site service were not removed" in (dep.status_reason or "") and "HTTP 401" in dep.status_reason
    assert SITE_AUTH[1] not in dep.status_reason
    site_marathon.state.credentials = SITE_AUTH
    assert run_dag(dag_id(second)).state == "success"
    assert store.get_deployment(second).status == DeploymentStatus.DELETE_COMPLETE
    assert site_marathon.state.apps == {}
