"""Marathon/Mesos API side against the HTTP doubles: deploy, slow deployments, unhealthy apps, lost agents, load."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from mesos_double import ClusterDouble, ClusterState

from dodas_tasks.clustermanagers.mesos import MesosCluster, agent_problems, load_from_state, quorum
from dodas_tasks.clustermanagers.mesos.state import queue_demand
from dodas_tasks.frameworks.base import Cluster, Node
from dodas_tasks.frameworks.htcondor import htcondor_apps, idle_jobs, load_from_pool, parse_pool
from dodas_tasks.frameworks.marathon import (
    HttpTransport,
    MarathonClient,
    MarathonError,
    app_state,
    contains,
    up_to_date,
    with_config_label,
)

AUTH = ("admin", "s3cret")
AGENTS = ["127.0.0.11", "127.0.0.12", "127.0.0.13", "127.0.0.14"]  # schedd, ccb, two workers
PROPS = {
    "htcondor_config_schedd_ip": AGENTS[0],
    "htcondor_config_ccb_ip": AGENTS[1],
    "master_ips": ["127.0.0.10"],
    "lb_ips": ["127.0.0.15"],
    "proxycache_host": "127.0.0.15",
    "iam_access_token": "tok",
    "marathon_password": "s3cret",
}


@pytest.fixture
def double() -> Iterator[ClusterDouble]:
    server = ClusterDouble(state=ClusterState(agents=dict.fromkeys(AGENTS, True), credentials=AUTH))
    yield server
    server.stop()


def client(double: ClusterDouble, auth: tuple[str, str] = AUTH) -> MarathonClient:
    clock = iter(range(10_000))  # one tick per poll: deadlines counted in polls, no real waiting
    return MarathonClient(HttpTransport(double.url, auth=auth), poll_seconds=0, clock=lambda: next(clock))


def test_quorum_is_a_strict_majority() -> None:
    assert [quorum(n) for n in (1, 2, 3, 4, 5)] == [1, 2, 2, 3, 3]


def test_htcondor_apps_deploy_healthy_and_a_rerun_changes_nothing(double: ClusterDouble) -> None:
    double.state.deploy_polls = 3  # each deployment stays listed for 3 polls
    apps = htcondor_apps(PROPS, workers=2)
    marathon = client(double)
    assert marathon.ensure_apps(apps, timeout=50) == ["/proxycache", "/condorcm", "/condorschedd", "/condorwn"]
    states = {s.app_id: s for s in marathon.states([a["id"] for a in apps])}
    assert all(s.ready for s in states.values())
    cm = marathon.app("condorcm")
    assert {t["host"] for t in cm["tasks"]} == {AGENTS[1]}  # pinned to the CCB node
    assert {t["host"] for t in marathon.app("condorwn")["tasks"]} == set(AGENTS[2:])
    assert marathon.ensure_apps(apps, timeout=50) == []  # same definitions: no PUT
    assert len(double.state.puts) == 4


def test_slow_deployment_times_out_naming_the_app(double: ClusterDouble) -> None:
    double.state.deploy_polls = 1000
    with pytest.raises(MarathonError, match=r"deployment\(s\) .* not finished in time; /condorwn: 3/3 running"):
        client(double).ensure_apps([htcondor_apps(PROPS, workers=3)[-1]], timeout=5)


def test_unhealthy_task_is_named_with_its_cause(double: ClusterDouble) -> None:
    double.state.unhealthy.add("condorschedd")
    with pytest.raises(MarathonError) as failure:
        client(double).ensure_apps(htcondor_apps(PROPS, workers=2)[2:3], timeout=5)
    message = str(failure.value)
    assert "/condorschedd: 1/1 running, 0/1 healthy" in message
    assert f"on {AGENTS[0]} is unhealthy: Command exited with status 1" in message


def test_unplaceable_app_reports_waiting_for_offers(double: ClusterDouble) -> None:
    double.state.agents[AGENTS[1]] = False  # the CCB agent is lost: condorcm cannot be placed
    with pytest.raises(MarathonError, match="waiting for Mesos offers; offers declined for: UnfulfilledConstraint"):
        client(double).ensure_apps(htcondor_apps(PROPS, workers=2)[1:2], timeout=5)


def test_wrong_credentials_are_refused_clearly(double: ClusterDouble) -> None:
    with pytest.raises(MarathonError, match="HTTP 401 Invalid username or password"):
        client(double, ("admin", "wrong")).ensure_apps(htcondor_apps(PROPS, workers=1)[:1], timeout=5)


def test_lost_agent_is_named(double: ClusterDouble) -> None:
    double.state.agents[AGENTS[3]] = False
    import httpx

    slaves = httpx.get(f"{double.url}/master/slaves", auth=AUTH).json()
    expected = [(f"node-{i}", ip) for i, ip in enumerate(AGENTS)] + [("node-x", "127.0.0.99")]
    assert agent_problems(slaves, expected) == [
        "agent node-3 (127.0.0.14) is registered but not active (lost or disconnected)",
        "agent node-x (127.0.0.99) never registered with the Mesos master",
    ]


def test_mesos_load_busy_idle_and_queue(double: ClusterDouble) -> None:
    marathon = client(double)
    marathon.ensure_apps(htcondor_apps(PROPS, workers=1)[-1:], timeout=5)
    cluster = Cluster({"master": (Node("m", "127.0.0.10"),)})
    fw = MesosCluster(mesos_auth=AUTH, mesos_port=double.port)
    import httpx

    state = httpx.get(f"{double.url}/master/state", auth=AUTH).json()
    names = {ip: f"agent{i}" for i, ip in enumerate(AGENTS)}
    load = load_from_state(state, lambda ip: names.get(ip, ip), queued=len(marathon.queue()))
    assert load.busy_nodes == ["agent2"] and load.idle_nodes == ["agent0", "agent1", "agent3"]
    assert load.waiting_apps == 0 and load.healthy_nodes == sorted(names.values())
    assert fw.outputs(cluster)["mesos_endpoint"] == f"http://127.0.0.10:{double.port}"


def test_app_state_and_contains_helpers() -> None:
    assert contains({"cpus": 1, "env": {"A": "1", "B": "2"}, "extra": 1}, {"cpus": 1.0, "env": {"A": "1"}})
    assert not contains({"constraints": [["hostname", "LIKE", "a"]]}, {"constraints": []})
    state = app_state({"id": "/x", "instances": 2, "tasks": [{"id": "t", "host": "h"}]})
    assert not state.ready and state.running == 1


def test_htcondor_pool_parsing_and_load() -> None:
    # condor_status -any -af MyType Name State Activity TotalIdleJobs: attributes an ad lacks read "undefined"
    pool = parse_pool(
        "Collector collector@10.0.0.2 undefined undefined undefined\n"
        "Scheduler schedd@10.0.0.1 undefined undefined 4\n"
        "Scheduler schedd@10.0.0.5 undefined undefined 1\n"
        "Machine slot1@10.0.0.3 Claimed Busy undefined\n"
        "Machine slot1@10.0.0.4 Unclaimed Idle undefined\n"
    )
    assert idle_jobs(pool["Scheduler"]) == 5
    load = load_from_pool(pool["Machine"], [1, 2])
    assert load.busy_nodes == ["10.0.0.3"] and load.idle_nodes == ["10.0.0.4"]
    assert load.pending_demand == 3 and load.waiting_apps == 2


def test_marathon_answers_with_masked_secrets_still_match_what_was_put() -> None:
    """The SSH runner masks secrets in what Marathon returns; the digest label tells a changed secret."""
    desired = with_config_label({"id": "/proxycache", "env": {"MARATHON_PASSWD": "pw-1", "URL": "http://x"}})
    masked = {**desired, "env": {"MARATHON_PASSWD": "***", "URL": "http://x"}, "tasks": []}
    assert up_to_date(masked, desired)
    assert not up_to_date(masked, with_config_label({**desired, "labels": {}, "env": {"MARATHON_PASSWD": "pw-2"}}))
    one = with_config_label({"id": "/condorwn", "instances": 1})
    assert not up_to_date({**one, "instances": 3}, one)  # scaled by hand in Marathon: put back
    assert not up_to_date({**masked, "env": {"MARATHON_PASSWD": "***", "URL": "http://y"}}, desired)
    assert not up_to_date(None, desired)


def test_a_fresh_iam_token_alone_does_not_redeploy_the_proxy_cache(double: ClusterDouble) -> None:
    """The proxy cache exchanges its IAM token once for its own: a fresher token is no change; a new client is."""
    marathon = client(double)
    assert marathon.ensure_apps(htcondor_apps(PROPS, workers=1)[:1], timeout=5) == ["/proxycache"]
    fresher = {**PROPS, "iam_access_token": "a-fresher-token"}
    assert marathon.ensure_apps(htcondor_apps(fresher, workers=1)[:1], timeout=5) == []
    other_client = {**fresher, "iam_client_secret": "another-secret"}
    assert marathon.ensure_apps(htcondor_apps(other_client, workers=1)[:1], timeout=5) == ["/proxycache"]
    assert double.state.apps["/proxycache"]["env"]["IAM_TOKEN"] == "a-fresher-token"  # a PUT carries the fresh one


def test_apps_waiting_for_offers_are_demand_in_the_mesos_load(double: ClusterDouble) -> None:
    """Marathon's launch queue (instances no agent can take) counts as pending demand, in CPUs."""
    marathon = client(double)
    stuck = {"id": "/stuck", "instances": 3, "cpus": 2.0, "constraints": [["hostname", "LIKE", "nowhere"]]}
    marathon.put_app(stuck)
    assert queue_demand(marathon.queue()) == (1, 6)
    assert queue_demand([{"app": {"id": "/x", "cpus": 1}, "count": 0}]) == (0, 0)
