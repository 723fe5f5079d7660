"""What the recorder's containers run on a node: the Mesos master and Marathon doubles, HTCondor's collector.

The doubles of one master share their state through the recorder's directory (see `fake_docker`): agents are the
agent containers naming this master, Marathon's apps are saved in `marathon-<master ip>.json`.
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import sys
import threading
from pathlib import Path
from typing import Any

from mesos_double.fake_docker import load, running
from mesos_double.server import ClusterDouble, ClusterState


def zk_hosts(url: str) -> list[str]:
    """The hosts of a `zk://host:port,host:port/path` URL."""
    servers = url.removeprefix("zk://").split("/", 1)[0]
    return [server.rpartition(":")[0] or server for server in servers.split(",") if server]


class SharedClusterState(ClusterState):
    """The doubles' state as the recorder's files give it: agents from agent containers that name this master,
    Marathon's apps in `marathon-<master ip>.json` (so the Mesos master double sees the tasks too)."""

    def __init__(self, root: Path, master_ip: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.root, self.master_ip = root, master_ip

    @property
    def apps_file(self) -> Path:
        return self.root / f"marathon-{self.master_ip}.json"

    def refresh(self) -> None:
        agents = {}
        for path in self.root.glob("containers-*.json"):
            agent = json.loads(path.read_text()).get("dodas-mesos-agent")
            if agent and self.master_ip in zk_hosts(agent["env"].get("MESOS_MASTER", "")):
                agents[agent["env"].get("MESOS_HOSTNAME", path.stem.removeprefix("containers-"))] = running(agent)
        self.agents = agents
        if self.apps_file.exists():
            saved = json.loads(self.apps_file.read_text())
            self.apps, self.puts = saved["apps"], saved["puts"]

    def changed(self) -> None:
        tmp = self.apps_file.with_suffix(f".{os.getpid()}")
        tmp.write_text(json.dumps({"apps": self.apps, "puts": self.puts}))
        tmp.replace(self.apps_file)


def _double_for(root: Path, ip: str, name: str) -> ClusterDouble:
    container = load(root, ip)[name]
    env, volumes = container["env"], container["volumes"]
    state = SharedClusterState(root, ip)
    if name == "dodas-mesos-master":
        if env.get("MESOS_AUTHENTICATE_HTTP_READONLY") == "true":
            creds = json.loads(Path(volumes["/etc/mesos/credentials.json"]).read_text())["credentials"]
            state.credentials = [(c["principal"], c["secret"]) for c in creds]
        return ClusterDouble(env["MESOS_IP"], int(env["MESOS_PORT"]), state)
    user, _, password = env["MARATHON_HTTP_CREDENTIALS"].partition(":")
    state.credentials = (user, password)
    if env.get("MARATHON_HTTPS_PORT"):
        ssl_dir = Path(volumes["/etc/marathon/ssl"])
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(ssl_dir / "cert.pem", ssl_dir / "key.pem")
        return ClusterDouble(env["MARATHON_HTTPS_ADDRESS"], int(env["MARATHON_HTTPS_PORT"]), state, tls=tls)
    return ClusterDouble(env["MARATHON_HTTP_ADDRESS"], int(env["MARATHON_HTTP_PORT"]), state)


def serve(root: Path, ip: str, name: str) -> None:
    """A service container's process: its double, until SIGTERM."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    if name == "dodas-mesos-agent":  # the agent's state lives in the master double; its process is its liveness
        print(f"{name} running on {ip}", flush=True)
        stop.wait()
        return
    double = _double_for(root, ip, name)
    print(f"{name} serving {double.url}", flush=True)
    stop.wait()
    double.stop()


# -- HTCondor's collector, as condor_status shows it -----------------------------------------------------------


def condor_status(root: Path, ip: str, args: list[str]) -> int:
    """`condor_status -pool HOST:PORT -any -af ATTR...` for the pool Marathon placed (asked from a master)."""
    state = SharedClusterState(root, ip)
    state.refresh()
    pool = args[args.index("-pool") + 1] if "-pool" in args else ""
    attrs = args[args.index("-af") + 1 :] if "-af" in args else ["MyType", "Name"]
    tasks = {app_id: state.place(app) for app_id, app in state.apps.items()}
    collector = tasks.get("/condorcm", [])
    if pool.partition(":")[0] not in collector:
        where = f"the central manager runs on {collector}"
        print(f"Error: Failed to connect to collector {pool} ({where})", file=sys.stderr)
        return 1
    jobs_file = root / "condor.json"
    jobs = json.loads(jobs_file.read_text()) if jobs_file.exists() else {}
    ads = [{"MyType": "Collector", "Name": f"collector@{collector[0]}"}]
    ads += [
        {"MyType": "Scheduler", "Name": f"schedd@{host}", "TotalIdleJobs": jobs.get("idle_jobs", 0)}
        for host in tasks.get("/condorschedd", [])
    ]
    for host in tasks.get("/condorwn", []):
        claimed = host in jobs.get("claimed", [])
        ads.append(
            {
                "MyType": "Machine",
                "Name": f"slot1@{host}",
                "State": "Claimed" if claimed else "Unclaimed",
                "Activity": "Busy" if claimed else "Idle",
            }
        )
    for ad in ads:
        print(" ".join(str(ad.get(attr, "undefined")) for attr in attrs))
    return 0


if __name__ == "__main__":
    serve(Path(sys.argv[1]), sys.argv[2], sys.argv[3])
