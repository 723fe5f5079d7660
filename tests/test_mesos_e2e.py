"""HTCondor on Mesos end to end through the deployment DAG (dag.test()) on the local cloud.

The real path runs: provision.* → configure.mesos_* over SSH (Deployer) → deploy.htcondor_services (Marathon
apps PUT with curl from the master) → verify (Mesos agents active, apps healthy, the collector's pool) →
finalize (outputs, CREATE_COMPLETE); a second run changes nothing; undeploy leaves no server and no process.
The container runtime is the recorder `mesos_double.fake_docker`, given as the deployment's `container_runtime`
option (as a site would give "podman"); the Mesos master and Marathon "containers" it starts are the HTTP
doubles, served on the master node's IP by processes in the node (Marathon over HTTPS with the certificate
configure-Mesos made), so every request crosses the same SSH, curl and TLS path a real cluster would.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from mesos_double import fake_docker
from oidc_provider.fixture import Provider, running_provider

from dodas_tasks.clouds.local import LocalCloud
from dodas_tasks.clouds.local.procs import processes_with_node_id
from dodas_tasks.deploy import service
from dodas_tasks.deploy.components import Deployer, deployment_framework
from dodas_tasks.frameworks.base import Cluster
from dodas_tasks.frameworks.htcondor import HTCondorOnMesos
from dodas_tasks.frameworks.marathon import MarathonClient, NodeCurlTransport
from dodas_tasks.iam import IamClient, IamConfig, IdpError
from dodas_tasks.iam.token_source import forget_cached_tokens
from dodas_tasks.naming import deployment_dag_id, deployment_tags
from dodas_tasks.store import DeploymentStatus, NodeState, Store

REPO = Path(__file__).resolve().parents[1]
DAG_FILE = REPO / "dags" / "dodas.py"
TEMPLATE = (REPO / "templates" / "htcondor_mesos.yaml").read_text()
SECRETS = {
    "mesos_password": "m-pass 'quoted' $(nope)",
    "marathon_password": 'mar"athon: pass',
}
AUDIENCE = "dodas"
GROUPS = ("mesos-master-server", "mesos-slave-server", "mesos-schedd-server", "mesos-ccb-server", "mesos-lb-server")

if TYPE_CHECKING:
    from airflow.models.dagrun import DagRun

pytestmark = pytest.mark.slow


@pytest.fixture
def store() -> Iterator[Store]:
    with Store() as s:
        yield s


@pytest.fixture
def cloud() -> Iterator[LocalCloud]:
    cloud = LocalCloud()
    yield cloud
    cloud.cleanup()


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    """The IdP (a real OpenID Connect provider process) the deployment's owner and the cluster's client live in."""
    with running_provider(access_ttl=600) as running:
        yield running


@pytest.fixture
def iam(provider: Provider, monkeypatch: pytest.MonkeyPatch) -> IamClient:
    """The service's IAM client, also as the `dodas_iam` connection the DAG's tasks read."""
    conn = {"conn_type": "http", "host": provider.issuer, "login": provider.client_id,
            "password": provider.client_secret, "extra": {"audience": AUDIENCE}}  # fmt: skip
    monkeypatch.setenv("AIRFLOW_CONN_DODAS_IAM", json.dumps(conn))
    forget_cached_tokens()
    return IamClient(IamConfig(provider.issuer, provider.client_id, provider.client_secret, audience=AUDIENCE))


@pytest.fixture
def recorder(tmp_path: Path) -> Iterator[Path]:
    """The `docker` stand-in; whatever service process it started and the test did not stop is stopped by PID."""
    runtime = fake_docker.install(tmp_path / "runtime")
    yield runtime
    fake_docker.stop_services(runtime.parent)


def run_dag(name: str) -> DagRun:
    """One run of a DAG from dags/dodas.py with dag.test() (tasks, deferrals and triggers in this process)."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAG_FILE))
    assert not bag.import_errors, bag.import_errors
    return bag.get_dag(name).test()


def starts_or_removes(call: dict) -> bool:
    """A call that starts, restarts or removes a container (not a one-shot `run --rm` nor an inspect)."""
    argv = call["argv"]
    return argv[0] in ("start", "rm") or (argv[0] == "run" and "--rm" not in argv)


def containers_started(root: Path) -> list[tuple[str, str]]:
    """(node IP, container name) of every detached `docker run` the recorder saw, sorted."""
    return sorted(
        (c["node"], c["argv"][c["argv"].index("--name") + 1])
        for c in fake_docker.calls(root)
        if starts_or_removes(c) and c["argv"][0] == "run"
    )


def test_htcondor_on_mesos_through_the_deployment_dag_reconciles_scales_and_undeploys(
    airflow_db: None, store: Store, cloud: LocalCloud, recorder: Path, provider: Provider, iam: IamClient
) -> None:
    root = recorder.parent
    options = {
        "container_runtime": str(recorder),
        "frameworks": {"mesos": {"wait_seconds": 30}, "htcondor-mesos": {"poll_seconds": 0.2, "timeout": 60}},
    }
    owner_token = provider.login("carla", aud=AUDIENCE, ttl=900)
    deployment_id = service.submit(
        store, TEMPLATE, {"number_of_slaves": 2, **SECRETS}, options=options, access_token=owner_token, iam=iam
    )

    run = run_dag(deployment_dag_id(deployment_id))
    dep = store.get_deployment(deployment_id)
    assert run.state == "success", dep.status_reason
    assert dep.status == DeploymentStatus.CREATE_COMPLETE
    nodes = {g: store.list_nodes(deployment_id, group=g) for g in GROUPS}
    assert [len(nodes[g]) for g in GROUPS] == [1, 2, 1, 1, 1]
    assert {n.state for ns in nodes.values() for n in ns} <= {NodeState.CONFIGURED, NodeState.STARTED}
    ip = {g: [n.private_ip for n in ns] for g, ns in nodes.items()}
    master, lb = ip["mesos-master-server"][0], ip["mesos-lb-server"][0]
    schedd, ccb, slaves = ip["mesos-schedd-server"][0], ip["mesos-ccb-server"][0], ip["mesos-slave-server"]
    agents = [*slaves, schedd, ccb]

    # configure-Mesos: the containers each node's role needs, started once, no secret on any command line
    assert containers_started(root) == sorted(
        [
            (master, "dodas-zookeeper"),
            (master, "dodas-mesos-master"),
            (master, "dodas-marathon"),
            (lb, "dodas-marathon-lb"),
            *((agent, "dodas-mesos-agent") for agent in agents),
        ]
    )
    lb_run = next(c["argv"] for c in fake_docker.calls(root) if c["node"] == lb and c["argv"][0] == "run")
    assert lb_run[-2:] == ["--marathon", f"https://{master}:8443"]
    served = (root / f"dodas-marathon-{master}.log").read_text()
    assert f"serving https://{master}:8443" in served  # Marathon answered over TLS with the node's certificate

    # deploy: the HTCondor apps PUT once each; workers follow the worker group, pinned apps on their nodes
    marathon = fake_docker.marathon_record(root, master)
    assert marathon["puts"] == ["/proxycache", "/condorcm", "/condorschedd", "/condorwn"]
    apps = marathon["apps"]
    assert apps["/condorwn"]["instances"] == len(slaves) == 2
    assert ["hostname", "LIKE", ccb] in apps["/condorcm"]["constraints"]
    assert ["hostname", "LIKE", schedd] in apps["/condorschedd"]["constraints"]
    assert apps["/condorcm"]["env"]["ZOOKEEPER_HOST_LIST"] == f"{master}:2181"

    # IAM credentials from the IAM layer (the template leaves them empty): a fresh token of the owner and the
    # cluster's own registered client, which can do what the proxy cache does with them
    proxy_env, schedd_env = apps["/proxycache"]["env"], apps["/condorschedd"]["env"]
    assert iam.validate(proxy_env["IAM_TOKEN"]).subject == "carla"
    assert proxy_env["IAM_TOKEN"] != owner_token  # the service's token for the owner, not the submitted one
    cluster_client = proxy_env["IAM_CLIENT_ID"]
    assert provider.registered_clients() == [cluster_client] and schedd_env["CLIENT_ID"] == cluster_client
    assert proxy_env["PROXY_IAM_ENDPOINT"] == schedd_env["IAM_ENDPOINT"] == provider.issuer
    as_proxy = IamClient(IamConfig(provider.issuer, cluster_client, proxy_env["IAM_CLIENT_SECRET"]))
    assert as_proxy.exchange(proxy_env["IAM_TOKEN"]).refresh_token
    secrets = [*SECRETS.values(), proxy_env["IAM_TOKEN"], proxy_env["IAM_CLIENT_SECRET"]]
    command_lines = [" ".join(c["argv"]) for c in fake_docker.calls(root)]
    command_lines += [Path(f"/proc/{pid}/cmdline").read_text() for pid in fake_docker.service_pids(root)]
    assert not any(secret in line for line in command_lines for secret in secrets)

    # verify and finalize
    verified = [e.message for e in store.list_events(deployment_id, limit=500) if e.kind == "verify"]
    assert any(f"mesos: Mesos: {len(agents)} active agent(s)" in v for v in verified), verified
    assert any("collector lists 1 schedd(s), 2 startd host(s)" in v for v in verified), verified
    assert dep.outputs["mesos_endpoint"] == f"http://{master}:5050"
    assert dep.outputs["marathon_endpoint"] == f"https://{master}:8443"
    assert dep.outputs["ccb_endpoint"] == f"condor_status {ccb}:9618 -schedd"
    assert dep.outputs["zookeeper_peers"] == f"{master}:2181"
    assert dep.outputs["mesos_lb_ip"] == lb

    # a second run reconciles: every node already has its configuration, every app its definition; a fresher
    # IAM token (a new worker process gets one) alone does not redeploy the proxy cache
    forget_cached_tokens()
    refreshes = provider.counters().get("refresh", 0)
    before = len(fake_docker.calls(root))
    run = run_dag(deployment_dag_id(deployment_id))
    dep = store.get_deployment(deployment_id)
    assert run.state == "success", dep.status_reason
    assert dep.status == DeploymentStatus.UPDATE_COMPLETE
    assert provider.counters().get("refresh", 0) > refreshes
    assert [c for c in fake_docker.calls(root)[before:] if starts_or_removes(c)] == []
    assert fake_docker.marathon_record(root, master)["puts"] == marathon["puts"]
    assert provider.registered_clients() == [cluster_client]

    # HTCondor's load (the autoscaler's signal) from the collector of the live pool, asked over SSH
    (root / "condor.json").write_text(json.dumps({"idle_jobs": 3, "claimed": [slaves[0]]}))
    deployer = Deployer(store, deployment_id)
    htcondor = deployment_framework(store, dep, "htcondor-mesos")  # as elasticity and healing get it
    assert isinstance(htcondor, HTCondorOnMesos) and htcondor.runner is not None
    cluster = deployer.cluster("htcondor-mesos")
    cluster = Cluster({**cluster.roles, "agent": deployer.cluster("mesos").nodes("agent")})
    load = htcondor.load(cluster)
    names = {n.private_ip: n.name for ns in nodes.values() for n in ns}
    assert load.pending_demand == 3 and load.waiting_apps == 3
    assert load.busy_nodes == [names[slaves[0]]] and load.idle_nodes == [names[slaves[1]]]
    (root / "condor.json").unlink()

    # scale out: the new agent registers, condorwn follows the worker group, nothing else is touched
    service.request_scale(store, deployment_id, "mesos-slave-server", 3)
    run = run_dag(deployment_dag_id(deployment_id))
    assert run.state == "success", store.get_deployment(deployment_id).status_reason
    grown = [n.private_ip for n in store.list_nodes(deployment_id, group="mesos-slave-server")]
    (added,) = set(grown) - set(slaves)
    assert (added, "dodas-mesos-agent") in containers_started(root)
    record = fake_docker.marathon_record(root, master)
    assert record["puts"] == [*marathon["puts"], "/condorwn"] and record["apps"]["/condorwn"]["instances"] == 3
    verified = [e.message for e in store.list_events(deployment_id, limit=1000) if e.kind == "verify"]
    assert any("collector lists 1 schedd(s), 3 startd host(s)" in v for v in verified[-2:]), verified[-2:]

    # scale in: the removed VMs' agents leave Mesos with their VMs; condorwn shrinks to the one worker left
    service.request_scale(store, deployment_id, "mesos-slave-server", 1)
    run = run_dag(deployment_dag_id(deployment_id))
    assert run.state == "success", store.get_deployment(deployment_id).status_reason
    (left,) = [n.private_ip for n in store.list_nodes(deployment_id, group="mesos-slave-server")]
    record = fake_docker.marathon_record(root, master)
    assert record["puts"][-1] == "/condorwn" and record["apps"]["/condorwn"]["instances"] == 1
    verified = [e.message for e in store.list_events(deployment_id, limit=1000) if e.kind == "verify"]
    assert any("mesos: Mesos: 3 active agent(s)" in v for v in verified[-2:]), verified[-2:]
    assert any("collector lists 1 schedd(s), 1 startd host(s)" in v for v in verified[-2:]), verified[-2:]

    # Mesos's load as the watchers read it (on the master over SSH, with the credentials kept there): the agents
    # still there, and an app no agent can take counted as demand from Marathon's launch queue
    deployer = Deployer(store, deployment_id)
    mesos_nodes = deployer.cluster("mesos")
    master_node = mesos_nodes.nodes("master")[0]
    stuck = {"id": "/stuck", "instances": 2, "cpus": 1.5, "constraints": [["hostname", "LIKE", "nowhere"]]}
    MarathonClient(NodeCurlTransport(deployer.run, master_node)).put_app(stuck)
    mesos_load = deployment_framework(store, store.get_deployment(deployment_id), "mesos").load(mesos_nodes)
    assert mesos_load.healthy_nodes == sorted(n.name for n in mesos_nodes.nodes("agent"))
    assert {n.ip for n in mesos_nodes.nodes("agent")} == {left, schedd, ccb}  # the worker left, schedd, ccb
    assert (mesos_load.waiting_apps, mesos_load.pending_demand) == (1, 3)

    # undeploy: no server, no process of any node (the doubles went with the master node), no IAM client
    servers = cloud.list_servers(deployment_tags(deployment_id))
    pids = [pid for pid in fake_docker.service_pids(root) if fake_docker.alive(pid)]
    assert len(servers) == 5 and len(pids) == 2 + 3  # Mesos master and Marathon doubles, three agents
    service.request_undeploy(store, deployment_id)
    run = run_dag(deployment_dag_id(deployment_id))
    assert run.state == "success"
    assert store.get_deployment(deployment_id).status == DeploymentStatus.DELETE_COMPLETE
    assert cloud.list_servers(deployment_tags(deployment_id)) == []
    assert all(processes_with_node_id(server.id) == [] for server in servers)
    assert not any(fake_docker.alive(pid) for pid in pids)
    assert provider.registered_clients() == []
    with pytest.raises(IdpError, match="invalid_client"):
        as_proxy.exchange(provider.login("carla", aud=AUDIENCE))


def test_framework_options_are_checked_at_submission(store: Store) -> None:
    """A typo in a site setting is refused before anything exists, naming the setting and what is accepted."""
    from dodas_tasks.tosca.errors import DodasTemplateError

    before = {d.id for d in store.list_deployments()}
    options = {"frameworks": {"mesos": {"marathon_port": 9443, "mesos_port": "5050"}}}
    with pytest.raises(DodasTemplateError) as refused:
        service.submit(store, TEMPLATE, {"number_of_slaves": 1, **SECRETS}, options=options)
    report = refused.value.report()
    assert "frameworks.mesos.marathon_port: unknown setting; settable:" in report and "marathon_https_port" in report
    assert "frameworks.mesos.mesos_port = '5050': expected int (default 5050)" in report
    assert {d.id for d in store.list_deployments()} == before
