"""configure-Mesos for real on local-cloud nodes over the real SSH path, the container runtime a recorder.

Three nodes (master, agent, lb): the scripts run twice (the second starts nothing), every rendered script
passes shellcheck, secrets stay out of command lines and sit in mode-600 files. Then the worker-side steps go
through the master node over SSH against the HTTP doubles bound to the master's IP: Mesos verify (and a lost
agent named), HTCondor apps deployed with curl from the master, verified and smoke-checked.
"""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from _localcloud_fixtures import spec, wait_status
from mesos_double import ClusterDouble, ClusterState

from dodas_tasks.clustermanagers.mesos import MesosCluster
from dodas_tasks.configure import NodeTarget, generate_keypair, run_on_nodes, run_script
from dodas_tasks.configure.hostkeys import host_id
from dodas_tasks.frameworks.base import Cluster, DeployContext, Node, Script, ScriptResult, VerificationFailed
from dodas_tasks.frameworks.htcondor import HTCondorOnMesos

pytestmark = pytest.mark.slow
SHELLCHECK = shutil.which("shellcheck") or str(Path(sys.executable).parent / "shellcheck")
SECRETS = {"mesos": "m-pass 'quoted' $(nope)", "marathon": 'mar"athon pass'}

RECORDER = r"""#!/usr/bin/env python3
# A stand-in `docker`: appends its argv (and the env file it was given) to a log; keeps container state.
import json, os, sys
root = os.environ.get("FAKE_DOCKER_DIR") or os.path.dirname(os.path.abspath(__file__))
args = sys.argv[1:]
with open(os.path.join(root, "calls.jsonl"), "a") as log:
    log.write(json.dumps({"node": os.environ.get("NODE_IP", ""), "argv": args}) + "\n")
state_file = os.path.join(root, "containers-" + os.environ.get("NODE_IP", "x") + ".json")
state = json.load(open(state_file)) if os.path.exists(state_file) else {}
def save():
    json.dump(state, open(state_file, "w"))
cmd = args[0]
if cmd == "inspect":
    name = args[-1]
    if name not in state:
        sys.exit(1)
    fmt = args[args.index("-f") + 1]
    running = "true" if state[name]["running"] else "false"
    print(running + (" " + state[name]["label"] if "dodas.config" in fmt else ""))
elif cmd == "run" and "--rm" in args:
    print(open(os.path.join(root, "condor_status.out")).read(), end="")
elif cmd == "run":
    name = args[args.index("--name") + 1]
    label = next(a.split("=", 1)[1] for a in args if a.startswith("dodas.config="))
    state[name] = {"running": True, "label": label}
    save()
elif cmd == "rm":
    state.pop(args[-1], None)
    save()
elif cmd == "start":
    state[args[-1]]["running"] = True
    save()
"""


@pytest.fixture(scope="module")
def fake_docker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fakedocker")
    path = root / "docker"
    path.write_text(RECORDER)
    path.chmod(0o755)
    return path


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory):
    """Three local-cloud servers with SSH, shared by the tests of this module."""
    from dodas_tasks.clouds.local import LocalCloud

    home = tmp_path_factory.mktemp("cloud")
    cloud = LocalCloud(home=home)
    keys = generate_keypair()
    cloud.import_key_pair("k", keys.public_openssh)
    servers = [
        cloud.create_server(spec(f"mesos-{role}", "k", keys.public_openssh)) for role in ("master", "agent", "lb")
    ]
    ready = [wait_status(cloud, s.id, "ACTIVE") for s in servers]
    yield ready, keys
    cloud.cleanup()


def _runner(servers, keys):
    known = {host_id(s.private_ip, s.ssh_port): s.host_key for s in servers}
    by_ip = {s.private_ip: s for s in servers}

    def run(node: Node, script: Script) -> ScriptResult:
        server = by_ip[node.ip]
        result = run_script(
            NodeTarget(node.name, server.private_ip, server.ssh_port),
            script.body,
            env=dict(script.env),
            private_key=keys.private_openssh,
            known_hosts=known,
            check=False,
            secrets=list(SECRETS.values()),
        )
        return ScriptResult(result.exit_code, result.stdout, result.stderr)

    return run, known


def test_configure_mesos_on_nodes_idempotent_shellchecked_then_verify_and_htcondor(
    nodes, fake_docker: Path, tmp_path: Path
) -> None:
    servers, keys = nodes
    master_s, agent_s, lb_s = servers
    master = Node("dodas-0a1b2c3d-mesos-master-server-0", master_s.private_ip)
    agent = Node("dodas-0a1b2c3d-mesos-slave-server-0", agent_s.private_ip)
    lb = Node("dodas-0a1b2c3d-mesos-lb-server-0", lb_s.private_ip)
    cluster = Cluster({"master": (master,), "agent": (agent,), "lb": (lb,)})
    double = ClusterDouble(host=master.ip, state=ClusterState(credentials=("admin", SECRETS["marathon"])))
    try:
        fw = MesosCluster(
            runtime=str(fake_docker), marathon_http_port=double.port, mesos_port=double.port, wait_seconds=30
        )
        props = {
            "TOSCA_PROPERTY_MESOS_PASSWORD": SECRETS["mesos"],
            "TOSCA_PROPERTY_MARATHON_PASSWORD": SECRETS["marathon"],
            "TOSCA_PROPERTY_MARATHON_ENABLE_SSL": "false",
            "TOSCA_PROPERTY_ENABLE_CHRONOS": "true",
            "TOSCA_PROPERTY_CHRONOS_PASSWORD": "chronos-pass",
        }
        role_of = {master.ip: "master", agent.ip: "agent", lb.ip: "lb"}
        node_of = {n.ip: n for n in (master, agent, lb)}
        scripts = {}
        for ip, role in role_of.items():
            install, configure = fw.install_script(node_of[ip]), fw.configure_script(role, node_of[ip], cluster)
            scripts[ip] = (install.body + "\n" + configure.body, {**props, **install.env, **configure.env})
        for ip, (body, env) in scripts.items():  # every rendered script, exports included, passes shellcheck
            rendered = tmp_path / f"{role_of[ip]}.sh"
            plain = {k: "x" if v in SECRETS.values() else v for k, v in env.items()}  # $(nope) is literal: SC2016 info
            rendered.write_text("#!/bin/sh\n" + Script("x", plain, body).render())
            check = subprocess.run([SHELLCHECK, "-s", "sh", str(rendered)], capture_output=True, text=True)
            assert check.returncode == 0, check.stdout
        targets = [NodeTarget(role_of[s.private_ip], s.private_ip, s.ssh_port) for s in servers]
        known = {host_id(s.private_ip, s.ssh_port): s.host_key for s in servers}

        def configure() -> dict:
            return run_on_nodes(
                targets,
                lambda t: scripts[t.host][0],
                env=lambda t: scripts[t.host][1],
                private_key=keys.private_openssh,
                known_hosts=known,
                secrets=list(SECRETS.values()),
            )

        first = configure()
        calls_file = fake_docker.parent / "calls.jsonl"
        calls = [json.loads(line) for line in calls_file.read_text().splitlines()]
        runs = [c for c in calls if c["argv"][0] == "run"]
        started = {(c["node"], c["argv"][c["argv"].index("--name") + 1]) for c in runs}
        assert started == {
            (master.ip, "dodas-zookeeper"),
            (master.ip, "dodas-mesos-master"),
            (master.ip, "dodas-marathon"),
            (master.ip, "dodas-chronos"),
            (agent.ip, "dodas-mesos-agent"),
            (lb.ip, "dodas-marathon-lb"),
        }
        for call in runs:  # host network, restart always, no secret on any command line
            assert {"--network", "host", "--restart", "always"} <= set(call["argv"])
            assert not any(secret in " ".join(call["argv"]) for secret in SECRETS.values())
        lb_run = next(c["argv"] for c in runs if c["node"] == lb.ip)
        assert lb_run[-2:] == ["--marathon", f"https://{master.ip}:8443"]
        assert "--marathon-auth-credential-file" in lb_run
        master_run = next(c["argv"] for c in runs if "dodas-mesos-master" in c["argv"])
        work = next(a for a in master_run if a.endswith("/mesos/work:/var/lib/mesos"))
        state = Path(work.split(":")[0]).parent.parent  # the master node's $HOME/.dodas/mesos
        env = dict(line.split("=", 1) for line in (state / "mesos" / "master.env").read_text().splitlines())
        assert env["MESOS_QUORUM"] == "1" and env["MESOS_ZK"] == f"zk://{master.ip}:2181/mesos"
        assert env["MESOS_AUTHENTICATE_HTTP_READWRITE"] == "true" and env["MESOS_HOSTNAME"] == master.ip
        creds = json.loads((state / "mesos" / "credentials.json").read_text())
        assert creds == {"credentials": [{"principal": "admin", "secret": SECRETS["mesos"]}]}
        zk = dict(line.split("=", 1) for line in (state / "zookeeper" / "env").read_text().splitlines())
        assert zk["MYID"] == "1" and zk["ZOO_SERVERS"] == f"server.1={master.ip}:2888:3888;2181"
        marathon_env = (state / "marathon" / "env").read_text()
        assert f"MARATHON_HTTP_CREDENTIALS=admin:{SECRETS['marathon']}" in marathon_env
        for secret_file in (
            "mesos/credentials.json",
            "mesos/master.env",
            "marathon/env",
            "marathon/curlrc",
            "chronos/env",
            "mesos/curlrc",
        ):
            assert stat.S_IMODE((state / secret_file).stat().st_mode) == 0o600, secret_file
        assert "dodas-mesos-agent started" in first["agent"].stdout

        second = configure()  # the second run starts nothing new
        calls_after = [json.loads(line) for line in calls_file.read_text().splitlines()]
        assert [c for c in calls_after[len(calls) :] if c["argv"][0] in ("run", "rm", "start")] == []
        assert all("unchanged" in r.stdout for r in second.values())

        # verify through the master over SSH, against the doubles on the master's IP
        run, _ = _runner(servers, keys)
        double.state.credentials = [("admin", SECRETS["mesos"]), ("admin", SECRETS["marathon"])]
        double.state.agents = {agent.ip: True}
        assert "1 active agent" in fw.verify(cluster, run).summary
        double.state.agents = {agent.ip: False}
        with pytest.raises(VerificationFailed, match=f"agent {agent.name} .* not active"):
            fw.verify(cluster, run)

        # HTCondor apps PUT with curl from the master (Marathon credentials read from the node), then verified
        double.state.credentials = ("admin", SECRETS["marathon"])
        double.state.agents = {agent.ip: True, "127.0.99.1": True, "127.0.99.2": True}
        double.state.deploy_polls = 2
        htc = HTCondorOnMesos(runtime=str(fake_docker), poll_seconds=0.1, timeout=60)
        htc_cluster = Cluster({"services": (master,)})
        context = DeployContext(
            component="htcondor_services",
            role="services",
            cluster=htc_cluster,
            run=run,
            peers={"mesos": Cluster({"agent": (agent, Node("s", "127.0.99.1"), Node("c", "127.0.99.2"))})},
            properties={
                "htcondor_config_schedd_ip": "127.0.99.1",
                "htcondor_config_ccb_ip": "127.0.99.2",
                "master_ips": [master.ip],
                "proxycache_host": lb.ip,
                "marathon_password": SECRETS["marathon"],
                "iam_access_token": "tok",
            },
        )
        assert htc.deploy(context) == ["/proxycache", "/condorcm", "/condorschedd", "/condorwn"]
        assert double.state.apps["/condorwn"]["instances"] == 1
        assert htc.deploy(context) == []
        (fake_docker.parent / "condor_status.out").write_text(
            f"Scheduler schedd@127.0.99.1\nMachine slot1@{agent.ip} Unclaimed Idle\n"
        )
        assert "1 startd host" in htc.verify(htc_cluster, run).summary
        double.state.unhealthy.add("condorcm")
        with pytest.raises(VerificationFailed, match=r"condorcm: 1/1 running, 0 healthy .*unhealthy"):
            htc.verify(htc_cluster, run)
    finally:
        double.stop()
