"""CMS, AMS and Spark on Mesos end to end through the deployment DAG (dag.test()) on the local cloud.

The same path as test_mesos_e2e (HTCondor): provision.* → configure.mesos_* over SSH with the `docker` recorder
as the container runtime (the Mesos master and Marathon containers are the HTTP doubles on the master's IP,
Marathon over TLS) → deploy.* (Marathon apps PUT with curl from the master; worker-node scripts on the agents)
→ verify → finalize; a second run changes nothing; undeploy leaves no server and no process. The agents'
worker-node configuration goes under each agent's home through the frameworks' `etc_dir` site setting (a
relative path), so no test writes /etc. Spark's dispatcher is a double (`mesos_double.frameworks`): no Mesos
build of Spark exists any more.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import test_mesos_e2e as htcondor_e2e
from mesos_double import fake_docker
from mesos_double.frameworks import submissions
from test_mesos_e2e import REPO, containers_started, run_dag, starts_or_removes

from dodas_tasks.clouds.local import LocalCloud
from dodas_tasks.clouds.local.procs import processes_with_node_id
from dodas_tasks.deploy import service
from dodas_tasks.naming import deployment_dag_id, deployment_tags
from dodas_tasks.store import DeploymentStatus, NodeRecord, NodeState, Store

pytestmark = pytest.mark.slow

# the HTCondor run's fixtures: Airflow's database, a Store, the local cloud, the `docker` recorder (stops its services)
store = htcondor_e2e.store
cloud, recorder = htcondor_e2e.cloud, htcondor_e2e.recorder

MESOS_SECRETS = {"mesos_password": "m-pass 'quoted' $(nope)", "marathon_password": 'mar"athon: pass'}
ETC = "dodas-etc"  # frameworks.<name>.etc_dir: under each agent's home, never the test machine's /etc
FAST = {"poll_seconds": 0.2, "timeout": 60}
HTCONDOR_APPS = ("/proxycache", "/condorcm", "/condorschedd", "/condorwn")
COMMON_TASKS = ("begin", "verify", "finalize", "failover", "outcome")
AMS_KEY = "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAams\n-----END PUBLIC KEY-----"


def template(name: str) -> str:
    return (REPO / "templates" / name).read_text()


def deploy(
    store: Store, recorder: Path, text: str, inputs: dict[str, Any], frameworks: dict[str, Any]
) -> tuple[str, list[str]]:
    """Submits the template with the recorder as container runtime and runs its deployment DAG once: it succeeds.
    Returns the deployment id and the tasks the run executed (sorted)."""
    options = {"container_runtime": str(recorder), "frameworks": {"mesos": {"wait_seconds": 30}, **frameworks}}
    deployment_id = service.submit(store, text, inputs, options=options)
    run = run_dag(deployment_dag_id(deployment_id))
    dep = store.get_deployment(deployment_id)
    assert run.state == "success", dep.status_reason
    assert dep.status == DeploymentStatus.CREATE_COMPLETE
    tasks = run.get_task_instances()
    assert {ti.task_id for ti in tasks if ti.state not in ("success", "skipped")} == set()
    return deployment_id, sorted(ti.task_id for ti in tasks)


def ips(store: Store, deployment_id: str, groups: tuple[str, ...]) -> dict[str, list[str]]:
    """Private IPs per group; every node configured or started."""
    nodes = {g: store.list_nodes(deployment_id, group=g) for g in groups}
    assert {n.state for ns in nodes.values() for n in ns} <= {NodeState.CONFIGURED, NodeState.STARTED}
    return {g: [n.private_ip or "" for n in ns] for g, ns in nodes.items()}


def mesos_containers(master: str, lb: str, agents: list[str]) -> list[tuple[str, str]]:
    """configure-Mesos: ZooKeeper, master and Marathon on the master, marathon-lb on the lb, an agent each."""
    started = [(master, "dodas-zookeeper"), (master, "dodas-mesos-master"), (master, "dodas-marathon")]
    return sorted([*started, (lb, "dodas-marathon-lb"), *((a, "dodas-mesos-agent") for a in agents)])


def assert_no_secret_on_a_command_line(root: Path, secrets: dict[str, str]) -> None:
    """Secrets travel in env files and request bodies: never in a recorded argv nor a service's cmdline."""
    lines = [" ".join(c["argv"]) for c in fake_docker.calls(root)]
    lines += [Path(f"/proc/{pid}/cmdline").read_text() for pid in fake_docker.service_pids(root)]
    leaked = [name for name, secret in secrets.items() if secret and any(secret in line for line in lines)]
    assert leaked == []


def verify_events(store: Store, deployment_id: str) -> list[str]:
    return [e.message for e in store.list_events(deployment_id, limit=500) if e.kind == "verify"]


def agent_file(cloud: LocalCloud, node: NodeRecord, relative: str) -> str:
    """A file a node script wrote under the node's home (the local cloud's sandbox of that VM)."""
    return (cloud.layout.server(node.cloud_id or "").home / relative).read_text()


def rerun(store: Store, root: Path, deployment_id: str) -> list[str]:
    """A second run: succeeds and starts or removes no container; returns the apps it PUT again."""
    before, puts = len(fake_docker.calls(root)), marathon_puts(root)
    run = run_dag(deployment_dag_id(deployment_id))
    dep = store.get_deployment(deployment_id)
    assert run.state == "success", dep.status_reason
    assert dep.status == DeploymentStatus.UPDATE_COMPLETE
    assert [c for c in fake_docker.calls(root)[before:] if starts_or_removes(c)] == []
    after = marathon_puts(root)
    assert after.keys() == puts.keys()
    return [app for master in after for app in after[master][len(puts[master]) :]]


def marathon_puts(root: Path) -> dict[str, list[str]]:
    """App ids PUT, in order, per Marathon double (by master IP)."""
    return {
        path.stem.removeprefix("marathon-"): fake_docker.marathon_record(root, path.stem.removeprefix("marathon-"))[
            "puts"
        ]
        for path in root.glob("marathon-*.json")
    }


def undeploy_leaves_nothing(store: Store, cloud: LocalCloud, root: Path, deployment_id: str, servers: int) -> None:
    """Undeploy: no server, no process of any node; the doubles' processes went with their nodes."""
    found = cloud.list_servers(deployment_tags(deployment_id))
    pids = fake_docker.service_pids(root)
    assert len(found) == servers and pids and all(fake_docker.alive(pid) for pid in pids)
    service.request_undeploy(store, deployment_id)
    run = run_dag(deployment_dag_id(deployment_id))
    assert run.state == "success"
    assert store.get_deployment(deployment_id).status == DeploymentStatus.DELETE_COMPLETE
    assert cloud.list_servers(deployment_tags(deployment_id)) == []
    assert all(processes_with_node_id(server.id) == [] for server in found)
    assert not any(fake_docker.alive(pid) for pid in pids)


# -- CMS -------------------------------------------------------------------------------------------------------


def test_cms_on_mesos_through_the_deployment_dag(
    airflow_db: None, store: Store, cloud: LocalCloud, recorder: Path
) -> None:
    root = recorder.parent
    secrets = {**MESOS_SECRETS, "iam_token": "eyJ-cms-token", "iam_client_secret": "cms-client-secret"}
    inputs = {"number_of_slaves": 2, "cms_local_site": "T3_IT_Opportunistic_test", **secrets}
    frameworks = {"cms-mesos": {**FAST, "etc_dir": ETC}}
    deployment_id, tasks = deploy(store, recorder, template("cms_mesos.yaml"), inputs, frameworks)
    assert tasks == sorted(
        [
            *COMMON_TASKS,
            "provision.mesos-master-server",
            "provision.mesos-slave-server",
            "provision.mesos-lb-server",
            "configure.mesos_master",
            "configure.mesos_slave",
            "configure.mesos_load_balancer",
            "deploy.cms_services",
            "deploy.cms_wn",
        ]
    )
    groups = ("mesos-master-server", "mesos-slave-server", "mesos-lb-server")
    ip = ips(store, deployment_id, groups)
    (master,), slaves, (lb,) = ip["mesos-master-server"], ip["mesos-slave-server"], ip["mesos-lb-server"]

    assert containers_started(root) == mesos_containers(master, lb, slaves)
    assert_no_secret_on_a_command_line(root, secrets)

    # deploy.cms_services: squid, proxy cache and one CMS worker per agent, PUT once each through the master
    assert marathon_puts(root) == {master: ["/cmssquid", "/cmsproxycache", "/cmswnel7"]}
    apps = fake_docker.marathon_record(root, master)["apps"]
    assert apps["/cmswnel7"]["instances"] == len(slaves) == 2
    assert all(app.get("constraints", []) == [] for app in apps.values())  # CMS pins nothing
    mounts = {v["containerPath"]: v["hostPath"] for v in apps["/cmswnel7"]["container"]["volumes"]}
    assert mounts["/cvmfs"] == "/cvmfs" and "/etc/cvmfs/SITECONF" in mounts  # CVMFS and the site config go in
    assert apps["/cmswnel7"]["env"] == {
        "FRONTIER_PROXY": f"http://{lb}:3128",
        "CMS_LOCAL_SITE": "T3_IT_Opportunistic_test",
        "PROXY_CACHE": f"{lb}:8080",
    }
    proxy = apps["/cmsproxycache"]["env"]
    assert proxy["ZOOKEEPER_HOST_LIST"] == f"{master}:2181"
    assert proxy["IAM_TOKEN"] == secrets["iam_token"]  # secrets reach the apps unmasked
    assert proxy["IAM_CLIENT_SECRET"] == secrets["iam_client_secret"]
    assert proxy["MARATHON_PASSWD"] == secrets["marathon_password"]

    # deploy.cms_wn: CVMFS through the cluster's squid and the CMS site-local config on every agent, only there
    nodes = {n.private_ip: n for n in store.list_nodes(deployment_id)}
    for agent in slaves:
        cvmfs = agent_file(cloud, nodes[agent], f"{ETC}/cvmfs/default.local")
        assert f"CVMFS_HTTP_PROXY=http://{lb}:3128" in cvmfs and "CVMFS_REPOSITORIES=cms.cern.ch," in cvmfs
        site = agent_file(cloud, nodes[agent], f"{ETC}/cvmfs/SITECONF/JobConfig/site-local-config.xml")
        assert '<site name="T3_IT_Opportunistic_test">' in site
        assert '<command value="gfal2"/>' in site and '<phedex-node value="T1_IT_CNAF_Disk"/>' in site
        assert f'<proxy url="http://{lb}:3128"/>' in site
        assert "/T1_IT_CNAF/PhEDEx/storage.xml?protocol=srmv2" in site
        storage = agent_file(cloud, nodes[agent], f"{ETC}/cvmfs/SITECONF/PhEDEx/storage.xml")
        assert "root://xrootd-cms.infn.it//store/$1" in storage
    home = {ip: cloud.layout.server(n.cloud_id or "").home for ip, n in nodes.items()}
    assert not any((home[other] / ETC).exists() for other in (master, lb))

    events = verify_events(store, deployment_id)
    assert "cms-mesos: Marathon apps cmssquid, cmsproxycache, cmswnel7 running and healthy" in events
    assert any(f"mesos: Mesos: {len(slaves)} active agent(s)" in e for e in events), events
    assert store.get_deployment(deployment_id).outputs == {
        "mesos_endpoint": f"http://{master}:5050",
        "marathon_endpoint": f"https://{master}:8443",
        "mesos_lb_ip": lb,
        "zookeeper_peers": f"{master}:2181",
    }

    assert rerun(store, root, deployment_id) == []  # every node has its configuration, every app its definition
    undeploy_leaves_nothing(store, cloud, root, deployment_id, servers=4)


# -- AMS -------------------------------------------------------------------------------------------------------


def test_ams_on_mesos_through_the_deployment_dag(
    airflow_db: None, store: Store, cloud: LocalCloud, recorder: Path
) -> None:
    root = recorder.parent
    secrets = {**MESOS_SECRETS, "iam_token": "eyJ-ams-token", "iam_client_secret": "ams-client-secret"}
    inputs = {"number_of_slaves": 2, "ams_repo_public_key": AMS_KEY, **secrets}
    frameworks = {"ams-mesos": {**FAST, "etc_dir": ETC}, "htcondor-mesos": FAST}
    deployment_id, tasks = deploy(store, recorder, template("ams_mesos.yaml"), inputs, frameworks)
    assert tasks == sorted(
        [
            *COMMON_TASKS,
            *(f"provision.mesos-{g}-server" for g in ("master", "slave", "schedd", "ccb", "lb")),
            *(f"configure.mesos_{c}" for c in ("master", "slave", "schedd", "ccb", "load_balancer")),
            "deploy.htcondor_services",
            "deploy.ams_services",
            "deploy.ams_executor",
            "deploy.condor_wn",
        ]
    )
    groups = ("mesos-master-server", "mesos-slave-server", "mesos-schedd-server", "mesos-ccb-server", "mesos-lb-server")
    ip = ips(store, deployment_id, groups)
    (master,), slaves, (lb,) = ip["mesos-master-server"], ip["mesos-slave-server"], ip["mesos-lb-server"]
    (schedd,), (ccb,) = ip["mesos-schedd-server"], ip["mesos-ccb-server"]

    assert containers_started(root) == mesos_containers(master, lb, [*slaves, schedd, ccb])
    assert_no_secret_on_a_command_line(root, secrets)

    # deploy.htcondor_services (the HTCondor base, AMS image), deploy.ams_services (squid) and deploy.ams_executor
    # (the AMS workers are the pool's condorwn: the HTCondor step leaves its own out, so none is put twice)
    puts = marathon_puts(root)[master]
    assert sorted(puts) == sorted(["/amssquid", *HTCONDOR_APPS, "/cvmfscheck"])
    assert puts[-2:] == ["/condorwn", "/cvmfscheck"]  # ams_executor after htcondor_services, as the template asks
    apps = fake_docker.marathon_record(root, master)["apps"]
    wn = apps["/condorwn"]
    assert wn["container"]["docker"]["image"] == "dodasts/ams" and wn["args"] == ["wn"]
    assert wn["instances"] == len(slaves) == 2  # the worker group: agents that are neither schedd nor CCB
    assert wn["constraints"] == [["hostname", "UNLIKE", schedd], ["hostname", "UNLIKE", ccb]]
    assert wn["env"]["CCB_ADDRESS"] == ccb and wn["env"]["ZOOKEEPER_HOST_LIST"] == f"{master}:2181"
    assert wn["env"]["PROXY_CACHE"] == f"{lb}:8080"
    assert apps["/cvmfscheck"]["instances"] == len(slaves)
    assert apps["/cvmfscheck"]["constraints"] == [["hostname", "UNIQUE"]]
    assert ["hostname", "LIKE", ccb] in apps["/condorcm"]["constraints"]
    assert ["hostname", "LIKE", schedd] in apps["/condorschedd"]["constraints"]
    assert apps["/condorcm"]["container"]["docker"]["image"] == "dodasts/ams"
    assert apps["/proxycache"]["env"]["IAM_TOKEN"] == secrets["iam_token"]  # secrets reach the apps unmasked
    assert apps["/proxycache"]["env"]["IAM_CLIENT_SECRET"] == secrets["iam_client_secret"]
    assert apps["/amssquid"]["instances"] == 1

    # deploy.condor_wn: CVMFS for the AMS repository (its key, its server) through the AMS squid, on worker agents
    nodes = {n.private_ip: n for n in store.list_nodes(deployment_id)}
    home = {ip: cloud.layout.server(n.cloud_id or "").home for ip, n in nodes.items()}
    for agent in slaves:
        assert agent_file(cloud, nodes[agent], f"{ETC}/cvmfs/keys/ams.cern.ch.pub") == AMS_KEY + "\n"
        cvmfs = agent_file(cloud, nodes[agent], f"{ETC}/cvmfs/default.local")
        assert "CVMFS_REPOSITORIES=ams.cern.ch,sft.cern.ch" in cvmfs and f"CVMFS_HTTP_PROXY=http://{lb}:3128" in cvmfs
        repo = agent_file(cloud, nodes[agent], f"{ETC}/cvmfs/config.d/ams.cern.ch.conf")
        assert "CVMFS_SERVER_URL=http://cvmfs-ams.cern.ch/cvmfs/@fqrn@" in repo
        assert f"CVMFS_PUBLIC_KEY={home[agent]}/{ETC}/cvmfs/keys/ams.cern.ch.pub" in repo
    assert not any((home[other] / ETC).exists() for other in (master, lb, schedd, ccb))

    events = verify_events(store, deployment_id)
    assert "ams-mesos: Marathon apps amssquid, condorwn, cvmfscheck running and healthy" in events
    assert any("collector lists 1 schedd(s), 2 startd host(s)" in e for e in events), events
    assert any(f"mesos: Mesos: {len(slaves) + 2} active agent(s)" in e for e in events), events
    assert store.get_deployment(deployment_id).outputs == {
        "mesos_endpoint": f"http://{master}:5050",
        "marathon_endpoint": f"https://{master}:8443",
        "ccb_endpoint": f"condor_status {ccb}:9618 -schedd",
        "register_endpoint": f"http://{schedd}:48080/register",
        "zookeeper_peers": f"{master}:2181",
        "mesos_lb_ip": lb,
    }

    # a second run: every node keeps its configuration, nothing restarts, nothing is PUT
    assert rerun(store, root, deployment_id) == []
    undeploy_leaves_nothing(store, cloud, root, deployment_id, servers=6)


# -- Spark -----------------------------------------------------------------------------------------------------


def test_spark_on_mesos_through_the_deployment_dag(
    airflow_db: None, store: Store, cloud: LocalCloud, recorder: Path
) -> None:
    root = recorder.parent
    inputs = {"number_of_slaves": 1, **MESOS_SECRETS}
    frameworks = {"spark-mesos": {**FAST, "driver_timeout": 60}}
    deployment_id, tasks = deploy(store, recorder, template("spark_mesos.yaml"), inputs, frameworks)
    assert tasks == sorted(
        [
            *COMMON_TASKS,
            "provision.mesos-master-server",
            "provision.mesos-slave-server",
            "provision.mesos-lb-server",
            "configure.mesos_master",
            "configure.mesos_slave",
            "configure.mesos_load_balancer",
            "deploy.spark_dispatcher",
        ]
    )
    groups = ("mesos-master-server", "mesos-slave-server", "mesos-lb-server")
    ip = ips(store, deployment_id, groups)
    (master,), (slave,), (lb,) = ip["mesos-master-server"], ip["mesos-slave-server"], ip["mesos-lb-server"]

    assert containers_started(root) == mesos_containers(master, lb, [slave])
    assert_no_secret_on_a_command_line(root, MESOS_SECRETS)

    # deploy.spark_dispatcher: the dispatcher as one Marathon app on the agent's fixed ports, Mesos through ZooKeeper
    assert marathon_puts(root) == {master: ["/spark-dispatcher"]}
    app = fake_docker.marathon_record(root, master)["apps"]["/spark-dispatcher"]
    assert app["instances"] == 1 and app["requirePorts"] is True and "constraints" not in app
    assert [p["port"] for p in app["portDefinitions"]] == [7077, 8081]
    assert f"--master mesos://zk://{master}:2181/mesos --zk {master}:2181 " in app["cmd"]
    assert app["env"] == {"SPARK_MESOS_EXECUTOR_DOCKER_IMAGE": "marica/spark-mesos", "SPARK_EXECUTOR_MEMORY": "1g"}
    assert not any(secret in json.dumps(app) for secret in MESOS_SECRETS.values())  # the dispatcher needs none

    # verify: SparkPi in cluster mode through the dispatcher where Marathon placed it, then its status until FINISHED
    (driver,) = submissions(root, slave)
    asked = [c["argv"][c["argv"].index("marica/spark-mesos") + 1 :] for c in spark_calls(root)]
    assert all(c["node"] == master for c in spark_calls(root))
    assert asked == [
        [
            "/opt/spark/bin/spark-submit",
            *("--deploy-mode", "cluster", "--master", f"mesos://{slave}:7077"),
            *("--class", "org.apache.spark.examples.SparkPi", "/opt/spark/examples/jars/spark-examples.jar", "10"),
        ],
        *[["/opt/spark/bin/spark-submit", "--master", f"mesos://{slave}:7077", "--status", driver]] * 2,
    ]  # the driver is RUNNING at the first ask, FINISHED at the second
    events = verify_events(store, deployment_id)
    assert f"spark-mesos: dispatcher healthy, SparkPi driver {driver} FINISHED through {slave}:7077" in events
    assert any("mesos: Mesos: 1 active agent(s)" in e for e in events), events
    assert store.get_deployment(deployment_id).outputs == {
        "mesos_endpoint": f"http://{master}:5050",
        "marathon_endpoint": f"https://{master}:8443",
        "spark_dispatcher_url": f"mesos://{lb}:7077",
        "zookeeper_peers": f"{master}:2181",
        "mesos_lb_ip": lb,
    }

    # a second run PUTs and starts nothing; its check submits SparkPi again (the central nodes' configuration is
    # the one verified, but this framework has no cheaper membership check)
    assert rerun(store, root, deployment_id) == []
    assert [s["status_asked"] for s in submissions(root, slave).values()] == [2, 2]

    # a driver whose Mesos task fails fails the check, naming the driver and the task state
    (root / "spark.json").write_text(json.dumps({"driver_task_state": "TASK_FAILED"}))
    run = run_dag(deployment_dag_id(deployment_id))
    dep = store.get_deployment(deployment_id)
    failed = list(submissions(root, slave))[-1]
    assert run.state == "failed" and dep.status == DeploymentStatus.UPDATE_FAILED
    assert dep.status_reason.startswith(
        f"verify: spark-mesos: SparkPi driver {failed} on {slave}:7077 ended TASK_FAILED: "
    ), dep.status_reason

    undeploy_leaves_nothing(store, cloud, root, deployment_id, servers=3)


def spark_calls(root: Path) -> list[dict[str, Any]]:
    """The recorder's one-shot spark-submit containers."""
    calls = fake_docker.calls(root)
    return [c for c in calls if c["argv"][:2] == ["run", "--rm"] and "marica/spark-mesos" in c["argv"]]
