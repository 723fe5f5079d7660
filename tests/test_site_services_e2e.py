"""Generic container apps and jobs on a site's Marathon and Chronos, through the deployment DAG (dag.test()).

Marathon: the corpus indigo_marathon_app template; the app from the artifact and the runtime's host capability,
one Marathon group per deployment so deployments sharing the site never meet, a rerun that puts nothing, undeploy
that deletes the group. Chronos: templates/chronos_jobs.yaml, a scheduled job and one run after it.

The site's services are the Marathon v2 and Chronos v1 HTTP doubles (tests/mesos_double), with basic auth, reached
through the `dodas_marathon` / `dodas_chronos` Airflow connections as a site's real ones would be.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from mesos_double import ClusterDouble, ClusterState
from test_mesos_e2e import run_dag, store  # noqa: F401 - a fixture and the DAG runner
from test_mesos_frameworks_e2e import verify_events

from dodas_tasks.deploy import service
from dodas_tasks.naming import deployment_dag_id
from dodas_tasks.store import DeploymentStatus, Store

SITE_AUTH = ("site-admin", "site-pass-Marathon")
CHRONOS_TEMPLATE = (Path(__file__).resolve().parents[1] / "templates" / "chronos_jobs.yaml").read_text()

pytestmark = pytest.mark.slow


@pytest.fixture
def site_marathon(monkeypatch: pytest.MonkeyPatch) -> Iterator[ClusterDouble]:
    agents = {"127.0.0.21": True, "127.0.0.22": True}
    double = ClusterDouble(state=ClusterState(agents=agents, credentials=SITE_AUTH, deploy_polls=2))
    conn = {"conn_type": "http", "host": double.url, "login": SITE_AUTH[0], "password": SITE_AUTH[1]}
    monkeypatch.setenv("AIRFLOW_CONN_DODAS_MARATHON", json.dumps(conn))
    monkeypatch.setenv("AIRFLOW_CONN_DODAS_CHRONOS", json.dumps(conn))  # the same double answers Chronos's API
    yield double
    double.stop()


def test_corpus_marathon_app_on_the_sites_marathon_reconciles_and_undeploys(
    airflow_db: None,
    store: Store,  # noqa: F811
    site_marathon: ClusterDouble,
    corpus: Path,
) -> None:
    text = (corpus / "examples__indigo_marathon_app.yaml").read_text()
    fast = {"frameworks": {"marathon-apps": {"poll_seconds": 0.2}}}  # the double's deployments last 2 polls
    first = service.submit(store, text, {"docker_image": "nginx:1.27", "port": 80, "cpus": 0.5}, options=fast)
    second = service.submit(store, text, {"docker_image": "httpd:2.4", "mem": "2 GB"}, options=fast)

    for deployment_id in (first, second):
        run = run_dag(deployment_dag_id(deployment_id))
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
    assert f"marathon-apps: {one} running and healthy" in verify_events(store, first)

    # a second run reconciles: the same definition, no PUT
    puts = list(site_marathon.state.puts)
    run = run_dag(deployment_dag_id(first))
    assert run.state == "success" and store.get_deployment(first).status == DeploymentStatus.UPDATE_COMPLETE
    assert site_marathon.state.puts == puts

    # undeploy deletes the deployment's group from the site, and only it
    service.request_undeploy(store, first)
    assert run_dag(deployment_dag_id(first)).state == "success"
    assert store.get_deployment(first).status == DeploymentStatus.DELETE_COMPLETE
    assert sorted(site_marathon.state.apps) == [two]
    undeploy = [e.message for e in store.list_events(first, limit=500) if e.kind == "undeploy"]
    assert undeploy == [f"removed from the site's services: {one}"]

    # a site that cannot be reached fails the deletion, saying so, and keeps it to be run again
    site_marathon.state.credentials = ("site-admin", "rotated")
    service.request_undeploy(store, second)
    assert run_dag(deployment_dag_id(second)).state == "failed"
    dep = store.get_deployment(second)
    assert dep.status == DeploymentStatus.DELETE_FAILED
    assert "apps on a site service were not removed" in (dep.status_reason or "") and "HTTP 401" in dep.status_reason
    assert SITE_AUTH[1] not in dep.status_reason
    site_marathon.state.credentials = SITE_AUTH
    assert run_dag(deployment_dag_id(second)).state == "success"
    assert store.get_deployment(second).status == DeploymentStatus.DELETE_COMPLETE
    assert site_marathon.state.apps == {}


def test_chronos_jobs_on_the_sites_chronos_parents_first_checked_and_deleted(
    airflow_db: None,
    store: Store,  # noqa: F811
    site_marathon: ClusterDouble,
) -> None:
    chronos = site_marathon.state
    deployment_id = service.submit(store, CHRONOS_TEMPLATE, {"image": "alpine:3.20"}, source="chronos_jobs.yaml")
    run = run_dag(deployment_dag_id(deployment_id))
    dep = store.get_deployment(deployment_id)
    assert run.state == "success", dep.status_reason
    assert dep.status == DeploymentStatus.CREATE_COMPLETE and store.list_nodes(deployment_id) == []
    fetch, analyse = f"dodas-{deployment_id}-fetch", f"dodas-{deployment_id}-analyse"
    assert chronos.chronos_posts == [fetch, analyse]  # the parent first: Chronos refuses orphans
    job = chronos.chronos_jobs[fetch]
    assert job["schedule"] == "R/2026-01-01T00:00:00Z/PT1H" and job["retries"] == 2
    assert job["container"] == {"type": "DOCKER", "image": "alpine:3.20", "forcePullImage": True}
    assert job["environmentVariables"] == [{"name": "SOURCE_URL", "value": "https://example.org/"}]
    assert (job["cpus"], job["mem"]) == (0.5, 512.0)
    assert chronos.chronos_jobs[analyse]["parents"] == [fetch] and "schedule" not in chronos.chronos_jobs[analyse]
    verified = verify_events(store, deployment_id)
    assert f"chronos-jobs: jobs {analyse}, {fetch} scheduled" in verified, verified

    # a rerun posts nothing; a job whose last run failed fails verify, naming it
    chronos.chronos_jobs[analyse].update(lastError="2026-11-28T08:00:00.000Z", errorCount=1)
    assert run_dag(deployment_dag_id(deployment_id)).state == "failed"
    dep = store.get_deployment(deployment_id)
    assert dep.status == DeploymentStatus.UPDATE_FAILED
    assert f"job {analyse} failed its last run at 2026-11-28T08:00:00.000Z" in (dep.status_reason or "")
    assert chronos.chronos_posts == [fetch, analyse]

    # undeploy deletes the jobs, the child before its parent
    chronos.chronos_jobs["someone-elses-job"] = {"name": "someone-elses-job", "schedule": "R/2026-01-01T00:00:00Z/P1D"}
    service.request_undeploy(store, deployment_id)
    assert run_dag(deployment_dag_id(deployment_id)).state == "success"
    assert store.get_deployment(deployment_id).status == DeploymentStatus.DELETE_COMPLETE
    assert list(chronos.chronos_jobs) == ["someone-elses-job"]
    undeploy = [e.message for e in store.list_events(deployment_id, limit=500) if e.kind == "undeploy"]
    assert undeploy == [f"removed from the site's services: {analyse}, {fetch}"]


def test_a_rolled_back_creation_removes_its_apps_from_the_site(
    airflow_db: None,
    store: Store,  # noqa: F811
    site_marathon: ClusterDouble,
    corpus: Path,
) -> None:
    """An app that never runs fails the creation; with on_partial=rollback nothing stays on the site."""
    text = (corpus / "examples__indigo_marathon_app.yaml").read_text()
    # the double's deployment ends after 2 polls (0.4 s), then the app waits for offers until the 1 s timeout; each
    # of the step's 3 tries waits it out (5 s apart: the deploy step's retry delay)
    options = {"on_partial": "rollback", "frameworks": {"marathon-apps": {"timeout": 1, "poll_seconds": 0.2}}}
    deployment_id = service.submit(store, text, {"docker_image": "broken:1"}, options=options, source="app")
    site_marathon.state.agents = {}  # no agent takes it: it waits for offers until the deploy times out
    site_marathon.state.apps["/other/app"] = {"id": "/other/app", "instances": 1}
    assert run_dag(deployment_dag_id(deployment_id)).state == "failed"
    dep = store.get_deployment(deployment_id)
    assert dep.status == DeploymentStatus.CREATE_FAILED
    assert "marathon-app" in (dep.status_reason or "") and "waiting for Mesos offers" in dep.status_reason
    assert "rolled back" in dep.status_reason
    assert list(site_marathon.state.apps) == ["/other/app"]


def test_a_missing_site_connection_says_which_to_define(monkeypatch: pytest.MonkeyPatch) -> None:
    from dodas_tasks.airflow.hooks.site_services import ChronosHook

    monkeypatch.delenv("AIRFLOW_CONN_DODAS_CHRONOS", raising=False)
    with pytest.raises(ValueError, match="define the Airflow connection 'dodas_chronos'"):
        ChronosHook().get_conn()
