"""A `docker` stand-in for local-cloud nodes that records every call and plays the containers DODAS starts.

No container engine (and no Mesos build) exists here, so a deployment runs with this recorder as its container
runtime. Every call is appended to `calls.jsonl`; containers are state in one JSON file per node, all under one
directory the nodes share (they are processes on this machine). Three containers get a real process, as a
container would: `dodas-mesos-master` serves the Mesos master double on the node's IP and MESOS_PORT (credentials
from its mounted credentials.json), `dodas-marathon` the Marathon double on its HTTPS port with the certificate
configure-Mesos made (or on its HTTP port), and `dodas-mesos-agent` only waits. All are started detached, in the
node's process tree, so deleting the node stops them. An agent is active while its process runs with a
MESOS_MASTER naming the master's IP: an agent whose VM is gone drops out, as Mesos marks it unreachable.
`run --rm ... condor_status` answers as HTCondor's collector would for the tasks Marathon placed: one schedd ad
per condorschedd task (TotalIdleJobs from `condor.json`), one startd slot per condorwn task (Claimed on the hosts
`condor.json` lists). The recorder imports only what a call needs: it runs for every `docker` call of a script.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

TESTS_DIR = Path(__file__).resolve().parents[1]
SERVICES = ("dodas-mesos-master", "dodas-marathon", "dodas-mesos-agent")


def install(root: Path) -> Path:
    """Writes the `docker` executable into `root` (the shared state directory) and returns its path."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / "docker"
    path.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        f"sys.path.insert(0, {str(TESTS_DIR)!r})\n"
        "from mesos_double.fake_docker import main\n"
        f"sys.exit(main(sys.argv[1:], {str(root)!r}))\n"
    )
    path.chmod(0o755)
    return path


# -- containers as files ---------------------------------------------------------------------------------------


def node_ip() -> str:
    """The node this call runs on: the local cloud sets DODAS_NODE_IP on every command."""
    return os.environ.get("DODAS_NODE_IP") or os.environ.get("NODE_IP") or "unknown"


def state_file(root: Path, ip: str) -> Path:
    return root / f"containers-{ip}.json"


def load(root: Path, ip: str) -> dict[str, dict[str, Any]]:
    path = state_file(root, ip)
    return json.loads(path.read_text()) if path.exists() else {}


def save(root: Path, ip: str, containers: dict[str, dict[str, Any]]) -> None:
    path = state_file(root, ip)
    tmp = path.with_suffix(f".{os.getpid()}")
    tmp.write_text(json.dumps(containers))
    tmp.replace(path)


def alive(pid: int | None) -> bool:
    """Whether the container's process (if it has one) still runs (a zombie does not)."""
    if not pid:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def running(container: dict[str, Any]) -> bool:
    return bool(container.get("running")) and (container.get("pid") is None or alive(container["pid"]))


def calls(root: Path) -> list[dict[str, Any]]:
    """Every recorded call: {"node": ip, "argv": [...]}."""
    path = root / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def service_pids(root: Path) -> list[int]:
    """PIDs of the service processes the recorder started (on any node), alive or not."""
    found = [c for f in root.glob("containers-*.json") for c in json.loads(f.read_text()).values()]
    return [c["pid"] for c in found if c.get("pid")]


def stop_services(root: Path) -> list[int]:
    """Stops the service processes still running (test teardown); returns the PIDs it had to stop."""
    stopped = []
    for pid in service_pids(root):
        if alive(pid) and b"mesos_double" in Path(f"/proc/{pid}/cmdline").read_bytes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
                stopped.append(pid)
    return stopped


# -- the docker CLI --------------------------------------------------------------------------------------------


def _parse_run(args: list[str]) -> dict[str, Any]:
    """`run` options we use (-d, --name, --label, -v, --env-file, …), then the image and its command."""
    takes_value = {"--name", "--restart", "--network", "--label", "-v", "--env-file", "--pid", "-e"}
    parsed: dict[str, Any] = {"volumes": {}, "env": {}, "label": ""}
    i = 0
    while i < len(args) and args[i].startswith("-"):
        option = args[i]
        value = args[i + 1] if option in takes_value else None
        if option == "--name":
            parsed["name"] = value
        elif option == "--label" and value and value.startswith("dodas.config="):
            parsed["label"] = value.split("=", 1)[1]
        elif option == "-v" and value:
            host, container = value.split(":")[:2]
            parsed["volumes"][container] = host
        elif option == "--env-file" and value:
            lines = Path(value).read_text().splitlines()
            parsed["env"].update(line.split("=", 1) for line in lines if "=" in line)
        i += 2 if option in takes_value else 1
    parsed["image"], parsed["command"] = (args[i], args[i + 1 :]) if i < len(args) else ("", [])
    return parsed


def _spawn(root: Path, ip: str, name: str) -> int:
    """A service container's process, detached (like `docker run -d`), in this node's process tree."""
    import subprocess

    log = open(root / f"{name}-{ip}.log", "ab")  # noqa: SIM115 - handed to the child
    env = {**os.environ, "PYTHONPATH": str(TESTS_DIR)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mesos_double.node_services", str(root), ip, name],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    return proc.pid


def main(argv: list[str], root_text: str) -> int:
    """The `docker` command: records the call, then acts on the node's containers."""
    root, ip = Path(root_text), node_ip()
    with open(root / "calls.jsonl", "a") as log:
        log.write(json.dumps({"node": ip, "argv": argv}) + "\n")
    command, args = (argv[0], argv[1:]) if argv else ("", [])
    containers = load(root, ip)
    if command == "inspect":
        container = containers.get(args[-1])
        if container is None:
            print(f"Error: No such object: {args[-1]}", file=sys.stderr)
            return 1
        fmt = args[args.index("-f") + 1] if "-f" in args else ""
        state = "true" if running(container) else "false"
        print(state + (" " + container["label"] if "dodas.config" in fmt else ""))
        return 0
    if command == "run" and "--rm" in args:
        parsed = _parse_run(args)
        if parsed["command"][:1] == ["condor_status"]:
            from mesos_double.node_services import condor_status

            return condor_status(root, ip, parsed["command"][1:])
        if parsed["command"][:1] and Path(parsed["command"][0]).name == "spark-submit":
            from mesos_double.frameworks import spark_submit

            return spark_submit(root, ip, parsed["command"][1:])
        return 0
    if command == "run":
        parsed = _parse_run(args)
        name = parsed.pop("name")
        containers[name] = {**parsed, "running": True, "pid": None}
        save(root, ip, containers)
        if name in SERVICES:
            containers[name]["pid"] = _spawn(root, ip, name)
            save(root, ip, containers)
        print(f"{name}-id")
        return 0
    if command == "start":
        container = containers[args[-1]]
        container["running"] = True
        if args[-1] in SERVICES and not alive(container.get("pid")):
            container["pid"] = _spawn(root, ip, args[-1])
        save(root, ip, containers)
        return 0
    if command == "rm":
        container = containers.pop(args[-1], None)
        if container and alive(container.get("pid")):
            os.kill(container["pid"], signal.SIGTERM)
        save(root, ip, containers)
        return 0
    return 0  # logs, pull …: nothing to play


def marathon_record(root: Path, master_ip: str) -> dict[str, Any]:
    """What the Marathon double on `master_ip` holds: {"apps": {id: definition}, "puts": [app ids in PUT order]}."""
    path = root / f"marathon-{master_ip}.json"
    return json.loads(path.read_text()) if path.exists() else {"apps": {}, "puts": []}
