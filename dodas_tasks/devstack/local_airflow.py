"""Start and stop a real Airflow 3.3.2 stack on loopback, as plain subprocesses.

`dodas demo` and the end-to-end tests need the Airflow components running with settings that keep everything
on 127.0.0.1 and make new DAGs runnable within seconds; this module owns that recipe (the dev settings: SQLite,
LocalExecutor) and the clean shutdown (task processes live in other process groups). The same supervisor runs
the service's shape read from docker-compose.yml (`compose.py`: PostgreSQL, CeleryExecutor, Celery workers on
host names of their own), given as `settings` and `components`.
No Airflow import here: Airflow is driven through its CLI and its REST API only (`rest`, the project's one
REST client, logged in as the stack's admin).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil

from dodas_tasks.airflow.rest_api import AirflowRestClient
from dodas_tasks.devstack import processes
from dodas_tasks.devstack.service_env import (
    ADMIN_USER,
    PASSWORDS_FILE_VARIABLE,
    generate_password,
    generate_secrets,
    write_private_json,
)

PID_FILE_NAME = "dodas-stack.json"
SECRETS_FILE_NAME = "dodas-stack-secrets.json"
PASSWORDS_FILE_NAME = "simple_auth_manager_passwords.json"
USERS_VARIABLE = "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"
EXECUTION_API_VARIABLE = "AIRFLOW__CORE__EXECUTION_API_SERVER_URL"
DEFAULT_COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
# The environment variable marking every process of a stack (value: its AIRFLOW_HOME); see AirflowStack.stop.
STACK_MARKER = "DODAS_STACK_HOME"
# Health endpoint field for each Airflow subcommand that heartbeats (the api-server answers the endpoint itself).
HEALTH_FIELD = {"scheduler": "scheduler", "dag-processor": "dag_processor", "triggerer": "triggerer"}
# Airflow subcommands that stop their own subprocesses and wait for them (AirflowStack._terminate).
SUPERVISING = ("triggerer", "dag-processor")


# The dev stack's timing: new DAGs and finished tasks picked up within seconds (Airflow's defaults are for
# big installations). bench/throughput.py gives them to both stacks it compares.
QUICK_PICKUP = {
    # Bundle re-listing (new .py files) every 5 s instead of 300 s; listing a local folder is cheap.
    "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
    # Re-parse each known file every 5 s instead of 30 s: a new row read by a generator file
    # became a DAG in 5.3-7.0 s (31-33 s with the default). Cost, measured with a 100-row
    # generator: one parse ≈ 0.3 s, idle stack CPU ≈ 30 % of a core vs ≈ 10 % with the defaults.
    # Raise it through extra_env for big stores; PUT parseDagFile (wait_for_dag(reparse_via=))
    # makes a new row visible in 1-3 s whatever this is.
    "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "5",
    # Check every second whether a bundle is due for refresh (default 5 s) — halves the worst case
    # for new files at negligible cost.
    "AIRFLOW__DAG_PROCESSOR__BUNDLE_REFRESH_CHECK_INTERVAL": "1",
    # A changed DAG's serialized form may be rewritten at most every 5 s (default 30 s), so an
    # edited generated DAG (new tasks after scale-out) shows up quickly.
    "AIRFLOW__CORE__MIN_SERIALIZED_DAG_UPDATE_INTERVAL": "5",
    # Stats are printed into the dag-processor log every 30 s by default; not useful here.
    "AIRFLOW__DAG_PROCESSOR__PRINT_STATS_INTERVAL": "0",
    # Scheduler loop sleeps 0.5 s when idle (default 1 s): faster pickup of triggered runs and of
    # finished tasks, at a small idle CPU cost.
    "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
}

# A task whose supervisor died (a LocalExecutor worker or Celery worker SIGKILLed, OOM-killed, its host gone) stops
# heartbeating; the scheduler fails it after this timeout and its retry runs. Airflow's 300 s stalled a deployment
# for 5 minutes (issue 16). The supervisor heartbeats every 5 s ([workers] min_heartbeat_interval), so 30 s is six
# missed heartbeats in a row: a loaded api-server delays one by seconds, not by 25 s. Checked every 5 s (default 10),
# a killed task is failed 30-35 s after its last heartbeat. docker-compose.yml sets the same three values.
TASK_HEARTBEAT = {
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
    "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "5",
}


@dataclass(frozen=True)
class Component:
    """One long-running process of a stack. `command[0] == "airflow"` runs this environment's Airflow CLI; how
    it is known to be up follows from the subcommand (heartbeat, Celery ping), or from `tcp_port`."""

    name: str
    command: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)  # on top of the stack's settings
    hostname: str | None = None  # its own host name, as a container's (processes.spawn)
    tcp_port: int | None = None  # a service (Redis) that is up once it accepts connections on the stack's host
    tcp_host: str | None = None  # ... or at this address (a service on a host of its own)
    netns: str | None = None  # the network namespace it runs in, as on a host of its own (processes.spawn)

    @property
    def airflow_subcommand(self) -> str | None:
        """`scheduler`, `celery worker` ...; None for a program that is not Airflow's CLI."""
        if not self.command or self.command[0] != "airflow":
            return None
        words = [w for w in self.command[1:3] if not w.startswith("-")]
        return " ".join(words[:2]) if words[:1] == ["celery"] else (words[0] if words else None)

    @property
    def celery_node(self) -> str | None:
        """The Celery node name a worker answers pings as (`--celery-hostname`, else celery@<host name>)."""
        if self.airflow_subcommand != "celery worker":
            return None
        args = list(self.command)
        for flag in ("--celery-hostname", "-H"):
            if flag in args[:-1]:
                return args[args.index(flag) + 1].replace("%h", self.hostname or _machine_name())
        return f"celery@{self.hostname or _machine_name()}"


class StackError(RuntimeError):
    """The Airflow stack could not be started, reached or stopped; the message says what and where."""


class AirflowStack:
    """One Airflow home with its components, started as separate processes bound to `host`.

    Without `settings` the stack is the dev one (SQLite, LocalExecutor, secrets generated into its home, the
    four components). With `settings` (the service's environment, e.g. from docker-compose.yml) and `components`,
    it runs that shape instead; `init` is then the one-shot job that prepares databases and the admin account.
    Either way the stack places it: home, folders, the api-server on host:port and every URL pointing there.
    """

    def __init__(
        self,
        airflow_home: Path,
        dags_folder: Path,
        plugins_folder: Path,
        port: int = 18080,
        host: str = "127.0.0.1",
        parallelism: int = 8,
        extra_env: Mapping[str, str] | None = None,
        settings: Mapping[str, str] | None = None,
        components: Sequence[Component] | None = None,
        init: Component | None = None,
    ) -> None:
        if not host.startswith("127."):
            raise StackError(f"host {host!r} is not a loopback address; use 127.0.0.0/8 (e.g. 127.0.0.1)")
        self.airflow_home = Path(airflow_home).resolve()
        self.dags_folder = Path(dags_folder).resolve()
        self.plugins_folder = Path(plugins_folder).resolve()
        self.port = port
        self.host = host
        self.parallelism = parallelism
        self.extra_env = dict(extra_env or {})
        self.settings = dict(settings) if settings is not None else None
        self.components = tuple(components) if components is not None else self._dev_components()
        self.init = init
        self.logs_dir = self.airflow_home / "logs"
        self.pid_file = self.airflow_home / PID_FILE_NAME
        given_passwords = (settings or {}).get(PASSWORDS_FILE_VARIABLE)
        self.passwords_file = Path(given_passwords) if given_passwords else self.airflow_home / PASSWORDS_FILE_NAME
        self._popen: dict[str, subprocess.Popen[bytes]] = {}
        self._rest: AirflowRestClient | None = None

    # ---------------------------------------------------------------- configuration

    def ui_url(self) -> str:
        """Base URL of the api-server (UI, REST API, execution API)."""
        return f"http://{self.host}:{self.port}"

    @property
    def rest(self) -> AirflowRestClient:
        """The REST API of this stack, as its admin (trigger runs, wait for them, read XComs, re-parse files)."""
        if self._rest is None:
            self._rest = AirflowRestClient(self.ui_url(), *self.admin_credentials())
        return self._rest

    def admin_credentials(self) -> tuple[str, str]:
        """(username, password) of the admin user: the dev stack generates the password once and keeps it in
        AIRFLOW_HOME; a service's init job writes it (from its .env) where its settings say."""
        self._ensure_home()
        user = ADMIN_USER
        if self.settings is not None:
            user = self.settings.get(USERS_VARIABLE, ADMIN_USER).split(",")[0].split(":")[0].strip()
        try:
            passwords = json.loads(self.passwords_file.read_text())
            return user, passwords[user]
        except (OSError, ValueError, KeyError) as exc:
            raise StackError(f"no password for {user!r} in {self.passwords_file}: has the init job run?") from exc

    def env(self) -> dict[str, str]:
        """Environment for every `airflow` CLI call of this stack, and the base of every component's.

        Inherited AIRFLOW_HOME / AIRFLOW__* variables are dropped so that a caller's own Airflow setup
        (e.g. a test conftest) cannot leak in; AIRFLOW_CONN_* / AIRFLOW_VAR_* are kept; `extra_env` wins.
        """
        self._ensure_home()
        env = {k: v for k, v in os.environ.items() if not (k.startswith("AIRFLOW__") or k == "AIRFLOW_HOME")}
        env.update(self.settings if self.settings is not None else self._dev_settings())
        env.update(self._placement())
        env.update(self.extra_env)
        return env

    def component_env(self, component: Component) -> dict[str, str]:
        """The stack's environment with the component's own settings; placement and `extra_env` still win,
        except that a component on a network of its own reaches the api-server where its own settings say."""
        env = self.env()
        env.update(component.env)
        placement = self._placement()
        if component.netns is not None and EXECUTION_API_VARIABLE in component.env:
            del placement[EXECUTION_API_VARIABLE]
        env.update(placement)
        env.update(self.extra_env)
        return env

    def _placement(self) -> dict[str, str]:
        """Where this stack is: home, folders, the api-server on host:port and every URL that reaches it."""
        base_url = self.ui_url()
        return {
            # Components start `airflow ...` subcommands found on PATH (notes §12): venv bin first.
            "PATH": os.pathsep.join([str(_venv_bin()), os.environ.get("PATH", "")]),
            "AIRFLOW_HOME": str(self.airflow_home),
            # Inherited by every process the stack starts, whatever its session or parent: stop() finds them by it.
            STACK_MARKER: str(self.airflow_home),
            # Airflow retitles its workers, supervisors and tasks with setproctitle, which by default overwrites the
            # environment block /proc/<pid>/environ shows (the marker with it); with SPT_NOENV it leaves it alone
            # (titles are then cut to the original command line's length).
            "SPT_NOENV": "1",
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(self.plugins_folder),
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.logs_dir),
            # api-server on loopback; BASE_URL is required off port 8080 or every task fails calling
            # http://localhost:8080/execution/ (notes §12). The execution API URL is set explicitly too.
            "AIRFLOW__API__HOST": self.host,
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": base_url,
            EXECUTION_API_VARIABLE: f"{base_url}/execution/",
        }

    def _dev_settings(self) -> dict[str, str]:
        """The dev stack: SQLite, LocalExecutor, secrets kept in AIRFLOW_HOME, DAGs runnable within seconds."""
        keys = self._secrets()
        return {
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": str(self.parallelism),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.airflow_home / 'airflow.db'}",
            # Secrets generated once and kept in AIRFLOW_HOME, so restarts keep tokens, sessions and
            # encrypted connections valid; a long JWT secret also silences InsecureKeyLengthWarning.
            "AIRFLOW__CORE__FERNET_KEY": keys["fernet_key"],
            "AIRFLOW__API__SECRET_KEY": keys["secret_key"],
            "AIRFLOW__API_AUTH__JWT_SECRET": keys["jwt_secret"],
            "AIRFLOW__API__WORKERS": "1",
            # One admin user whose password we choose (file written before first start), no generated
            # password printed into logs.
            "AIRFLOW__CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            USERS_VARIABLE: f"{ADMIN_USER}:admin",
            PASSWORDS_FILE_VARIABLE: str(self.passwords_file),
            **QUICK_PICKUP,
            **TASK_HEARTBEAT,
            # No health-check web server (it would bind 0.0.0.0:8974); we use /api/v2/monitor/health.
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            # The REST API as seen from tasks: dodas_submit re-parses the DAG file through it at once.
            "AIRFLOW_CONN_DODAS_API": json.dumps(
                {
                    "conn_type": "http",
                    "host": self.host,
                    "port": self.port,
                    "schema": "http",
                    "login": ADMIN_USER,
                    "password": self.admin_credentials()[1],
                }
            ),
        }

    def _dev_components(self) -> tuple[Component, ...]:
        # --skip-serve-logs: no log server on 0.0.0.0:8793/8794; the api-server reads task logs from files.
        commands = {
            "api-server": ("api-server", "-H", self.host, "-p", str(self.port), "-w", "1"),
            "scheduler": ("scheduler", "--skip-serve-logs"),
            "dag-processor": ("dag-processor",),
            "triggerer": ("triggerer", "--skip-serve-logs"),
        }
        return tuple(Component(name, ("airflow", *args)) for name, args in commands.items())

    # ---------------------------------------------------------------- lifecycle

    def migrate(self, timeout: float = 300.0) -> None:
        """Prepare the databases: the init job when the stack has one, else `airflow db migrate` (idempotent)."""
        if self.init is not None:
            self._run_to_completion(self.init.name, self.init.command, self.component_env(self.init), timeout)
        else:
            self.cli("db", "migrate", timeout=timeout)

    def cli(self, *args: str, timeout: float = 300.0) -> str:
        """Run `airflow <args>` with this stack's environment; returns stdout, raises StackError on failure."""
        return self._run_to_completion(args[0] if args else "airflow", ("airflow", *args), self.env(), timeout)

    def _run_to_completion(self, name: str, command: Sequence[str], env: Mapping[str, str], timeout: float) -> str:
        self._ensure_home()
        shown = " ".join(command) if len(" ".join(command)) < 200 else f"the {name} job"
        log_path = self.logs_dir / f"cli-{name}.log"
        try:
            done = subprocess.run(
                _resolved(command),
                env=dict(env),
                cwd=self.airflow_home,
                capture_output=True,
                text=True,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as exc:
            raise StackError(f"`{shown}` did not finish within {timeout:.0f} s") from exc
        with log_path.open("a") as log:  # stderr only: stdout of some commands (config, connections) has secrets
            log.write(f"$ {shown}  (exit {done.returncode})\n{done.stderr}\n")
        if done.returncode != 0:
            raise StackError(
                f"`{shown}` failed with exit code {done.returncode}; stderr in {log_path}:\n" + _tail(done.stderr)
            )
        return done.stdout

    def start(
        self,
        components: Iterable[str | Component] | None = None,
        timeout: float = 180.0,
        migrate: bool = True,
    ) -> None:
        """Migrate, start each component in its own process group and wait until it reports healthy.

        Components start in order; one with a `tcp_port` (Redis) is waited for before the next starts, as
        compose's `depends_on: service_healthy`. Idempotent: if the recorded stack is already running, only
        waits for health. On failure the processes started here are stopped again before StackError is raised.
        """
        chosen = self._resolve(components)
        if not any(c.airflow_subcommand == "api-server" for c in chosen):
            raise StackError("the api-server component is required: health, REST API and task execution")
        if self.is_running():
            self.wait_healthy(chosen, since=None, timeout=timeout)
            return
        self.stop()  # clean up a stale pid file or half-dead stack from an earlier run
        if processes.port_in_use(self.host, self.port):
            raise StackError(
                f"{self.host}:{self.port} is already in use by another program; stop it or choose another port"
            )
        started_at = datetime.now(UTC)
        records: dict[str, dict[str, Any]] = {}
        try:
            for component in chosen:
                if component.tcp_port is not None:
                    records[component.name] = self._spawn(component)
                    self._write_records(records)
                    self._wait_tcp(component, timeout)
            if migrate:
                self.migrate()
            for component in chosen:
                if component.tcp_port is None:
                    records[component.name] = self._spawn(component)
                    self._write_records(records)
            self.wait_healthy(chosen, since=started_at, timeout=timeout)
            self._warm_execution_api(timeout)
        except BaseException:
            self.stop()
            raise

    def is_running(self) -> bool:
        """True when a pid file exists and every recorded component process is still alive."""
        records = self._records()
        return bool(records) and all(processes.live_process(rec) is not None for rec in records.values())

    def stop(self, grace: float = 30.0) -> None:
        """SIGTERM the components and their trees, SIGKILL what a crash orphaned; after `grace`, SIGKILL what is
        left until nothing is. Idempotent.

        Works from any process, with or without the pid file. The processes are the recorded components' process
        groups and trees, and every process carrying the stack's marker (STACK_MARKER=<its home>, inherited by all
        it started): task processes in process groups of their own, and what a crash orphaned (a killed
        scheduler's LocalExecutor workers, reparented to init), which neither a tree nor a group reaches.
        """
        records = self._records()
        leaders = [p for p in (processes.live_process(rec) for rec in records.values()) if p is not None]
        # What a crash orphaned has no component left to end it cleanly (a dead scheduler's LocalExecutor workers
        # outlive SIGTERM, still waiting for its work): killed at once.
        in_trees = {p.pid for p in processes.process_trees(leaders)}
        for proc in processes.marked(STACK_MARKER, str(self.airflow_home)):
            if proc.pid not in in_trees:
                processes.send(proc, signal.SIGKILL)
        self._terminate(records.values(), grace)
        survivors = self._kill_until_gone(leaders, 10.0)
        if survivors:
            pids = sorted(p.pid for p in survivors)
            raise StackError(f"Airflow processes {pids} survived SIGKILL; pid file kept at {self.pid_file}")
        self.pid_file.unlink(missing_ok=True)
        self._popen.clear()
        self._rest = None

    def processes_of(self, name: str) -> list[psutil.Process]:
        """The live processes of one component: its recorded process, its descendants (a worker's task
        processes) and what is left in its process group; empty once it is gone."""
        record = self._records().get(name)
        leader = processes.live_process(record) if record else None  # never started: nothing (psutil refuses pid -1)
        return processes.process_trees([leader]) if leader is not None else []

    def kill(self, name: str, spare: Callable[[psutil.Process], bool] | None = None) -> list[int]:
        """SIGKILL every process of one component at once, as when its container or host dies; returns their pids.
        `spare`: processes that are not the host's to lose (a local cloud's VMs it is launching belong to the
        cloud). The component stays recorded (dead) until `restart`."""
        self._resolve([name])
        targets = [proc for proc in self.processes_of(name) if spare is None or not _spared(spare, proc)]
        for proc in targets:
            processes.send(proc, signal.SIGKILL)
        if self._wait_gone(targets, 10.0):
            raise StackError(f"Airflow {name} survived SIGKILL")
        return sorted(proc.pid for proc in targets)

    def restart(self, name: str, timeout: float = 180.0, grace: float = 30.0) -> None:
        """Start one component again, as compose's `restart: always` does once it died (stopped first if it still
        runs); returns once it is up: accepting connections, heartbeating since now, or answering Celery pings."""
        (component,) = self._resolve([name])
        records = self._records()
        if name in records:
            self._stop_recorded([records[name]], grace)
        started_at = datetime.now(UTC)
        records[name] = self._spawn(component)
        self._write_records(records)
        if component.tcp_port is not None:
            self._wait_tcp(component, timeout)
        else:
            self.wait_healthy([component], since=started_at, timeout=timeout)

    def _stop_recorded(self, records: Sequence[Mapping[str, Any]], grace: float) -> None:
        """End the recorded components and their trees: SIGTERM, then SIGKILL what is left after `grace`."""
        targets = processes.process_trees(
            [p for p in (processes.live_process(rec) for rec in records) if p is not None]
        )
        self._terminate(records, grace)
        survivors = [proc for proc in targets if processes.is_alive(proc)]
        for proc in survivors:
            processes.send(proc, signal.SIGKILL)
        survivors = self._wait_gone(survivors, 10.0)
        if survivors:
            pids = sorted(p.pid for p in survivors)
            raise StackError(f"Airflow processes {pids} survived SIGKILL; pid file kept at {self.pid_file}")

    def _terminate(self, records: Iterable[Mapping[str, Any]], grace: float) -> None:
        """SIGTERM the recorded components' process groups and trees; wait up to `grace` for each tier to end.

        The components that run and parse tasks go first, while the api-server (and the broker) still answer: a
        task supervisor reports its task's end through the api-server, and against a closed port it retries for
        ~15 s, which held every stop for its whole grace.

        Each process gets one SIGTERM: to an Airflow component a second one means "do not wait" (the scheduler's
        arrived while its LocalExecutor shut down, leaving the idle workers without their poison pill: the
        scheduler then waited for them at exit until the grace ran out).

        The triggerer and the dag-processor stop their own subprocesses (the trigger runner, the file parsers; in
        the component's process group) on SIGTERM and wait for each to exit; Airflow's supervisor waits out its
        whole escalation delay (10 s, 5 s) for a subprocess whose sockets closed before its exit was collected, as
        happens when a signal to the group ended it first, and usually when the trigger runner ends by itself (it
        closes its sockets, then finishes its shutdown). So only their own process is signalled, and a triggerer's
        trigger runner is ended first (it cancels its triggers as on the triggerer's own stop): the triggerer is
        told to stop once it has collected that exit, if it has not already ended by itself (logging that its
        "Trigger runner process has died").
        """
        alive = [(rec, p) for rec, p in ((rec, processes.live_process(rec)) for rec in records) if p is not None]
        for serving in (False, True):
            tier = [(rec, p) for rec, p in alive if _serves_others(rec.get("command", ())) == serving]
            tier_targets = processes.process_trees([p for _, p in tier])
            supervising = [(rec, p) for rec, p in tier if _subcommand(rec) in SUPERVISING]
            others = [p for rec, p in tier if _subcommand(rec) not in SUPERVISING]
            for leader in others:
                processes.send_group(leader.pid, signal.SIGTERM)
            grouped = {leader.pid for leader in others}
            for proc in processes.process_trees(others):  # what no group signal reached: task processes
                if processes.process_group(proc) not in grouped:
                    processes.send(proc, signal.SIGTERM)
            triggerers = [p for rec, p in supervising if _subcommand(rec) == "triggerer"]
            runners = [child for p in triggerers for child in processes.children(p)]
            for proc in runners:
                processes.send(proc, signal.SIGTERM)
            self._wait_reaped(runners, grace)
            for _, leader in supervising:
                processes.send(leader, signal.SIGTERM)
            self._wait_gone(tier_targets, grace)

    def members(self) -> list[psutil.Process]:
        """Every live process of this stack: the recorded components with their trees, and all that carry its
        marker (task processes, orphans of a crashed component)."""
        leaders = [p for p in (processes.live_process(rec) for rec in self._records().values()) if p is not None]
        return self._members(leaders)

    def _members(self, leaders: list[psutil.Process]) -> list[psutil.Process]:
        found = {p.pid: p for p in processes.process_trees(leaders)}
        for proc in processes.marked(STACK_MARKER, str(self.airflow_home)):
            found.setdefault(proc.pid, proc)
        return list(found.values())

    def _kill_until_gone(self, leaders: list[psutil.Process], timeout: float) -> list[psutil.Process]:
        """SIGKILL the stack's processes, found again each round (one may have forked meanwhile); survivors."""
        deadline = time.monotonic() + timeout
        while True:
            left = self._members([p for p in leaders if processes.is_alive(p)])
            if not left or time.monotonic() > deadline:
                return left
            for leader in leaders:
                processes.send_group(leader.pid, signal.SIGKILL)
            for proc in left:
                processes.send(proc, signal.SIGKILL)
            self._wait_gone(left, 1.0)

    def wait_healthy(
        self,
        components: Iterable[str | Component] | None = None,
        since: datetime | None = None,
        timeout: float = 180.0,
    ) -> None:
        """Poll until each component is up: heartbeat after `since` on the health endpoint (scheduler,
        dag-processor, triggerer), the endpoint answering (api-server), a Celery ping answered (workers)."""
        chosen = self._resolve(components)
        wanted = [HEALTH_FIELD[c.airflow_subcommand] for c in chosen if c.airflow_subcommand in HEALTH_FIELD]
        workers = {c.celery_node: self.component_env(c) for c in chosen if c.celery_node}
        deadline = time.monotonic() + timeout
        last: Any = "api-server not answering yet"
        while time.monotonic() < deadline:
            self._raise_if_component_died([c.name for c in chosen])
            try:
                report = self.rest.health()
            except (httpx.HTTPError, ValueError) as exc:
                last = f"api-server not answering yet ({type(exc).__name__})"
            else:
                last = {k: report.get(k) for k in wanted}
                if all(_healthy_since(report.get(k), since) for k in wanted):
                    missing = sorted(set(workers) - _celery_nodes_answering(workers))
                    if not missing:
                        return
                    last = f"Celery workers not answering yet: {missing}"
            time.sleep(0.5)
        raise StackError(f"Airflow not healthy after {timeout:.0f} s; last health: {last}; logs in {self.logs_dir}")

    # ---------------------------------------------------------------- internals

    def _resolve(self, components: Iterable[str | Component] | None) -> tuple[Component, ...]:
        by_name = {c.name: c for c in self.components}
        chosen: list[Component] = []
        for item in self.components if components is None else components:
            if isinstance(item, Component):
                chosen.append(item)
            elif item in by_name:
                chosen.append(by_name[item])
            else:
                raise StackError(f"unknown Airflow component {item!r}; choose from {sorted(by_name)}")
        return tuple(chosen)

    def _ensure_home(self) -> None:
        """Create AIRFLOW_HOME and logs; for the dev stack also its secrets and admin password, once (0600)."""
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        if self.settings is not None:
            return
        secrets_file = self.airflow_home / SECRETS_FILE_NAME
        if not secrets_file.exists():
            write_private_json(secrets_file, generate_secrets())
        if not self.passwords_file.exists():
            write_private_json(self.passwords_file, {ADMIN_USER: generate_password()})

    def _secrets(self) -> dict[str, str]:
        return json.loads((self.airflow_home / SECRETS_FILE_NAME).read_text())

    def _records(self) -> dict[str, dict[str, Any]]:
        if not self.pid_file.exists():
            return {}
        try:
            return json.loads(self.pid_file.read_text())["components"]
        except (ValueError, KeyError) as exc:
            raise StackError(f"pid file {self.pid_file} is unreadable; stop the processes by hand, delete it") from exc

    def _write_records(self, records: Mapping[str, Any]) -> None:
        write_private_json(self.pid_file, {"host": self.host, "port": self.port, "components": records})

    def _spawn(self, component: Component) -> dict[str, Any]:
        """Start one component detached in its own session/process group, output to logs/<name>.out."""
        command = _resolved(component.command)
        out_path = self.logs_dir / f"{component.name}.out"
        try:
            proc = processes.spawn(
                command,
                self.component_env(component),
                self.airflow_home,
                out_path,
                hostname=component.hostname,
                netns=component.netns,
            )
        except processes.HostnameUnavailable as exc:
            raise StackError(f"{component.name}: {exc}") from exc
        self._popen[component.name] = proc
        return {**processes.record(proc), "command": command, "log": str(out_path)}

    def _wait_tcp(self, component: Component, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        host = component.tcp_host or self.host
        while not processes.port_in_use(host, component.tcp_port or 0):
            self._raise_if_component_died([component.name])
            if time.monotonic() > deadline:
                raise StackError(f"{component.name} not accepting connections on {host}:{component.tcp_port}")
            time.sleep(0.1)

    def _warm_execution_api(self, timeout: float) -> None:
        """Build the lazily created execution API now: its first request takes seconds (more than the
        Task SDK's 5 s client timeout under load), which otherwise delays the first task by a retry."""
        try:
            httpx.get(f"{self.ui_url()}/execution/health", timeout=timeout).raise_for_status()
        except httpx.HTTPError as exc:
            raise StackError(f"execution API at {self.ui_url()}/execution/ not answering: {exc}") from exc

    def _raise_if_component_died(self, names: Iterable[str] | None = None) -> None:
        """StackError with its log's tail when a component (of `names`, default all) is no longer running."""
        records = self._records()
        for name, rec in ((n, records[n]) for n in (records if names is None else names) if n in records):
            if processes.live_process(rec) is None:
                raise StackError(f"Airflow {name} exited during start-up; see {rec['log']}:\n" + _tail_file(rec["log"]))

    def _wait_reaped(self, procs: list[psutil.Process], timeout: float) -> None:
        """Poll until every process is gone and collected by its parent (not even a zombie left), or `timeout`."""
        deadline = time.monotonic() + timeout
        while any(processes.exists(proc) for proc in procs) and time.monotonic() < deadline:
            time.sleep(0.05)

    def _wait_gone(self, procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
        """Poll until every process is gone (zombies of our own Popen children are reaped); return survivors."""
        deadline = time.monotonic() + timeout
        while True:
            for popen in self._popen.values():
                popen.poll()
            survivors = [p for p in procs if processes.is_alive(p)]
            if not survivors or time.monotonic() > deadline:
                return survivors
            time.sleep(0.2)


def _subcommand(record: Mapping[str, Any]) -> str | None:
    """`triggerer`, `dag-processor` ... of a recorded component running Airflow's CLI; None for another program."""
    command = [Path(word).name for word in record.get("command", ())]
    return command[1] if command[:1] == ["airflow"] and len(command) > 1 else None


def _serves_others(command: Sequence[str]) -> bool:
    """The api-server and non-Airflow services (the broker): what the other components talk to while stopping."""
    words = [Path(word).name for word in command[:3]]
    return "api-server" in words or not any(word == "airflow" for word in words)


def _celery_nodes_answering(workers: Mapping[str, Mapping[str, str]]) -> set[str]:
    """Nodes among `workers` (node → its environment, which names the broker) that answer a Celery ping."""
    if not workers:
        return set()
    from celery import Celery  # only stacks with Celery workers need it

    answering: set[str] = set()
    brokers: dict[str, list[str]] = {}
    for node, env in workers.items():
        brokers.setdefault(env.get("AIRFLOW__CELERY__BROKER_URL", ""), []).append(node)
    for broker, nodes in brokers.items():
        app = Celery(broker=broker)
        try:
            replies = app.control.ping(destination=nodes, timeout=1.0)
        except Exception:  # broker not reachable yet: nobody answers
            replies = []
        finally:
            app.close()
        answering.update(name for reply in replies for name in reply)
    return answering


def _spared(spare: Callable[[psutil.Process], bool], proc: psutil.Process) -> bool:
    try:
        return spare(proc)
    except psutil.Error:  # gone meanwhile: nothing to kill
        return True


def _venv_bin() -> Path:
    return Path(sysconfig.get_path("scripts"))


def _machine_name() -> str:
    return os.uname().nodename


def _resolved(command: Sequence[str]) -> list[str]:
    """The command with `airflow` replaced by this environment's Airflow executable."""
    return [_airflow_executable(), *command[1:]] if command and command[0] == "airflow" else list(command)


def _airflow_executable() -> str:
    candidate = _venv_bin() / "airflow"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("airflow")
    if found is None:
        raise StackError(f"no `airflow` executable in {_venv_bin()} or on PATH; install apache-airflow in {sys.prefix}")
    return found


def _healthy_since(entry: Mapping[str, Any] | None, since: datetime | None) -> bool:
    """Component reports healthy, and (if `since`) its last heartbeat is from this start, not a stale job."""
    if not entry or entry.get("status") != "healthy":
        return False
    if since is None:
        return True
    beat = next((v for k, v in entry.items() if k.endswith("heartbeat") and v), None)
    return beat is not None and datetime.fromisoformat(beat) >= since


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _tail_file(path: str, lines: int = 15) -> str:
    try:
        return _tail(Path(path).read_text(errors="replace"), lines)
    except OSError:
        return "(log file missing)"
