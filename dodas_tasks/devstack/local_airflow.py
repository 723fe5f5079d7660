"""Start and stop a real local Airflow 3.3.2 stack on loopback, as plain subprocesses.

`dodas demo` and the end-to-end tests need the four Airflow components running with settings that keep
everything on 127.0.0.1 and make new DAGs runnable within seconds; this module owns that recipe and
the clean shutdown (LocalExecutor workers and task processes live in other process groups).
No Airflow import here: Airflow is driven through its CLI and its REST API only (`rest`, the project's one
REST client, logged in as the stack's admin).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil

from dodas_tasks.airflow.rest_api import AirflowRestClient

ADMIN_USER = "admin"
PID_FILE_NAME = "dodas-stack.json"
SECRETS_FILE_NAME = "dodas-stack-secrets.json"
PASSWORDS_FILE_NAME = "simple_auth_manager_passwords.json"
DEFAULT_COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
# Health endpoint field for each component that heartbeats (the api-server answers the endpoint itself).
HEALTH_FIELD = {"scheduler": "scheduler", "dag-processor": "dag_processor", "triggerer": "triggerer"}


class StackError(RuntimeError):
    """The Airflow stack could not be started, reached or stopped; the message says what and where."""


class AirflowStack:
    """One Airflow home with its four components, started as separate processes bound to `host`."""

    def __init__(
        self,
        airflow_home: Path,
        dags_folder: Path,
        plugins_folder: Path,
        port: int = 18080,
        host: str = "127.0.0.1",
        parallelism: int = 8,
        extra_env: Mapping[str, str] | None = None,
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
        self.logs_dir = self.airflow_home / "logs"
        self.pid_file = self.airflow_home / PID_FILE_NAME
        self.passwords_file = self.airflow_home / PASSWORDS_FILE_NAME
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
        """(username, password) of the admin user; the password is generated once and kept in AIRFLOW_HOME."""
        self._ensure_home()
        passwords = json.loads(self.passwords_file.read_text())
        return ADMIN_USER, passwords[ADMIN_USER]

    def env(self) -> dict[str, str]:
        """Environment for every component and every `airflow` CLI call of this stack.

        Inherited AIRFLOW_HOME / AIRFLOW__* variables are dropped so that a caller's own Airflow setup
        (e.g. a test conftest) cannot leak in; AIRFLOW_CONN_* / AIRFLOW_VAR_* are kept; `extra_env` wins.
        """
        self._ensure_home()
        keys = self._secrets()
        base_url = self.ui_url()
        env = {k: v for k, v in os.environ.items() if not (k.startswith("AIRFLOW__") or k == "AIRFLOW_HOME")}
        env.update(
            {
                # Components start `airflow ...` subcommands found on PATH (notes §12): venv bin first.
                "PATH": os.pathsep.join([str(_venv_bin()), env.get("PATH", "")]),
                "AIRFLOW_HOME": str(self.airflow_home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(self.plugins_folder),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": str(self.parallelism),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.airflow_home / 'airflow.db'}",
                "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.logs_dir),
                # Secrets generated once and kept in AIRFLOW_HOME, so restarts keep tokens, sessions and
                # encrypted connections valid; a long JWT secret also silences InsecureKeyLengthWarning.
                "AIRFLOW__CORE__FERNET_KEY": keys["fernet_key"],
                "AIRFLOW__API__SECRET_KEY": keys["secret_key"],
                "AIRFLOW__API_AUTH__JWT_SECRET": keys["jwt_secret"],
                # api-server on loopback; BASE_URL is required off port 8080 or every task fails calling
                # http://localhost:8080/execution/ (notes §12). The execution API URL is set explicitly too.
                "AIRFLOW__API__HOST": self.host,
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API__BASE_URL": base_url,
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
                # One admin user whose password we choose (file written before first start), no generated
                # password printed into logs.
                "AIRFLOW__CORE__AUTH_MANAGER": (
                    "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
                ),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.passwords_file),
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
        )
        env.update(self.extra_env)
        return env

    # ---------------------------------------------------------------- lifecycle

    def migrate(self, timeout: float = 300.0) -> None:
        """Create or upgrade the metadata DB (`airflow db migrate`, idempotent)."""
        self.cli("db", "migrate", timeout=timeout)

    def cli(self, *args: str, timeout: float = 300.0) -> str:
        """Run `airflow <args>` with this stack's environment; returns stdout, raises StackError on failure."""
        self._ensure_home()
        log_path = self.logs_dir / f"cli-{args[0] if args else 'airflow'}.log"
        try:
            done = subprocess.run(
                [_airflow_executable(), *args],
                env=self.env(),
                cwd=self.airflow_home,
                capture_output=True,
                text=True,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as exc:
            raise StackError(f"`airflow {' '.join(args)}` did not finish within {timeout:.0f} s") from exc
        with log_path.open("a") as log:  # stderr only: stdout of some commands (config, connections) has secrets
            log.write(f"$ airflow {' '.join(args)}  (exit {done.returncode})\n{done.stderr}\n")
        if done.returncode != 0:
            raise StackError(
                f"`airflow {' '.join(args)}` failed with exit code {done.returncode}; stderr in {log_path}:\n"
                + _tail(done.stderr)
            )
        return done.stdout

    def start(
        self,
        components: Iterable[str] = DEFAULT_COMPONENTS,
        timeout: float = 180.0,
        migrate: bool = True,
    ) -> None:
        """Migrate the DB, start each component in its own process group and wait until it reports healthy.

        Idempotent: if the recorded stack is already running, only waits for health. On failure the
        processes started here are stopped again before StackError is raised.
        """
        components = tuple(components)
        unknown = [c for c in components if c not in _COMMANDS]
        if unknown:
            raise StackError(f"unknown Airflow component(s) {unknown}; choose from {sorted(_COMMANDS)}")
        if "api-server" not in components:
            raise StackError("the 'api-server' component is required: health, REST API and task execution")
        if self.is_running():
            self.wait_healthy(components, since=None, timeout=timeout)
            return
        self.stop()  # clean up a stale pid file or half-dead stack from an earlier run
        if _port_in_use(self.host, self.port):
            raise StackError(
                f"{self.host}:{self.port} is already in use by another program; stop it or choose another port"
            )
        if migrate:
            self.migrate()
        started_at = datetime.now(UTC)
        records: dict[str, dict[str, Any]] = {}
        env = self.env()
        try:
            for name in components:
                records[name] = self._spawn(name, env)
                _write_json(self.pid_file, {"host": self.host, "port": self.port, "components": records})
            self.wait_healthy(components, since=started_at, timeout=timeout)
            self._warm_execution_api(timeout)
        except BaseException:
            self.stop()
            raise

    def is_running(self) -> bool:
        """True when a pid file exists and every recorded component process is still alive."""
        records = self._records()
        return bool(records) and all(_live_process(rec) is not None for rec in records.values())

    def stop(self, grace: float = 30.0) -> None:
        """SIGTERM every recorded component's process group and all its descendants; SIGKILL what is left.

        Works from any process (reads the pid file). Task processes get their own process group from the
        Task SDK supervisor, so the whole process tree is snapshotted before signalling. Idempotent.
        """
        records = self._records()
        leaders = [p for p in (_live_process(rec) for rec in records.values()) if p is not None]
        targets = _process_trees(leaders)
        for leader in leaders:
            _signal_group(leader.pid, signal.SIGTERM)
        for proc in targets:
            _signal(proc, signal.SIGTERM)
        survivors = self._wait_gone(targets, grace)
        for leader in leaders:
            _signal_group(leader.pid, signal.SIGKILL)
        for proc in survivors:
            _signal(proc, signal.SIGKILL)
        survivors = self._wait_gone(survivors, 10.0)
        if survivors:
            pids = sorted(p.pid for p in survivors)
            raise StackError(f"Airflow processes {pids} survived SIGKILL; pid file kept at {self.pid_file}")
        self.pid_file.unlink(missing_ok=True)
        self._popen.clear()
        self._rest = None

    def wait_healthy(
        self, components: Iterable[str] = DEFAULT_COMPONENTS, since: datetime | None = None, timeout: float = 180.0
    ) -> None:
        """Poll the health endpoint until each started component reports healthy (heartbeat after `since`)."""
        wanted = [HEALTH_FIELD[c] for c in components if c in HEALTH_FIELD]
        deadline = time.monotonic() + timeout
        last: Any = "api-server not answering yet"
        while time.monotonic() < deadline:
            self._raise_if_component_died()
            try:
                report = self.rest.health()
            except (httpx.HTTPError, ValueError) as exc:
                last = f"api-server not answering yet ({type(exc).__name__})"
            else:
                last = {k: report.get(k) for k in wanted}
                if all(_healthy_since(report.get(k), since) for k in wanted):
                    return
            time.sleep(0.5)
        raise StackError(f"Airflow not healthy after {timeout:.0f} s; last health: {last}; logs in {self.logs_dir}")

    # ---------------------------------------------------------------- internals

    def _ensure_home(self) -> None:
        """Create AIRFLOW_HOME, logs, secrets and the admin password file once (0600), keep them after."""
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        secrets_file = self.airflow_home / SECRETS_FILE_NAME
        if not secrets_file.exists():
            _write_json(
                secrets_file,
                {
                    "jwt_secret": secrets.token_urlsafe(64),
                    "secret_key": secrets.token_urlsafe(64),
                    # Same format as cryptography's Fernet.generate_key(): 32 random bytes, urlsafe base64.
                    "fernet_key": base64.urlsafe_b64encode(os.urandom(32)).decode(),
                },
            )
        if not self.passwords_file.exists():
            _write_json(self.passwords_file, {ADMIN_USER: secrets.token_urlsafe(18)})

    def _secrets(self) -> dict[str, str]:
        return json.loads((self.airflow_home / SECRETS_FILE_NAME).read_text())

    def _records(self) -> dict[str, dict[str, Any]]:
        if not self.pid_file.exists():
            return {}
        try:
            return json.loads(self.pid_file.read_text())["components"]
        except (ValueError, KeyError) as exc:
            raise StackError(f"pid file {self.pid_file} is unreadable; stop the processes by hand, delete it") from exc

    def _spawn(self, name: str, env: Mapping[str, str]) -> dict[str, Any]:
        """Start one component detached in its own session/process group, output to logs/<name>.out."""
        command = [_airflow_executable(), *_COMMANDS[name](self)]
        out_path = self.logs_dir / f"{name}.out"
        with out_path.open("ab") as out:
            proc = subprocess.Popen(
                command,
                env=dict(env),
                cwd=self.airflow_home,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._popen[name] = proc
        return {
            "pid": proc.pid,
            "create_time": psutil.Process(proc.pid).create_time(),
            "command": command,
            "log": str(out_path),
        }

    def _warm_execution_api(self, timeout: float) -> None:
        """Build the lazily created execution API now: its first request takes seconds (more than the
        Task SDK's 5 s client timeout under load), which otherwise delays the first task by a retry."""
        try:
            httpx.get(f"{self.ui_url()}/execution/health", timeout=timeout).raise_for_status()
        except httpx.HTTPError as exc:
            raise StackError(f"execution API at {self.ui_url()}/execution/ not answering: {exc}") from exc

    def _raise_if_component_died(self) -> None:
        for name, rec in self._records().items():
            if _live_process(rec) is None:
                raise StackError(f"Airflow {name} exited during start-up; see {rec['log']}:\n" + _tail_file(rec["log"]))

    def _wait_gone(self, procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
        """Poll until every process is gone (zombies of our own Popen children are reaped); return survivors."""
        deadline = time.monotonic() + timeout
        while True:
            for popen in self._popen.values():
                popen.poll()
            survivors = [p for p in procs if _is_alive(p)]
            if not survivors or time.monotonic() > deadline:
                return survivors
            time.sleep(0.2)


_COMMANDS = {
    "api-server": lambda s: ["api-server", "-H", s.host, "-p", str(s.port), "-w", "1"],
    # --skip-serve-logs: no log server on 0.0.0.0:8793/8794; the api-server reads task logs from files.
    "scheduler": lambda s: ["scheduler", "--skip-serve-logs"],
    "dag-processor": lambda s: ["dag-processor"],
    "triggerer": lambda s: ["triggerer", "--skip-serve-logs"],
}


def _venv_bin() -> Path:
    return Path(sysconfig.get_path("scripts"))


def _airflow_executable() -> str:
    candidate = _venv_bin() / "airflow"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("airflow")
    if found is None:
        raise StackError(f"no `airflow` executable in {_venv_bin()} or on PATH; install apache-airflow in {sys.prefix}")
    return found


def _live_process(record: Mapping[str, Any]) -> psutil.Process | None:
    """The recorded process if it is still the same one (pid not reused) and not a zombie."""
    try:
        proc = psutil.Process(record["pid"])
        if abs(proc.create_time() - record["create_time"]) > 0.05:
            return None
    except psutil.Error:
        return None
    return proc if _is_alive(proc) else None


def _is_alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _process_trees(leaders: list[psutil.Process]) -> list[psutil.Process]:
    """Leaders, all their descendants and every process still in a leader's process group."""
    found: dict[int, psutil.Process] = {}
    for leader in leaders:
        found[leader.pid] = leader
        try:
            for child in leader.children(recursive=True):
                found[child.pid] = child
        except psutil.Error:
            pass
    groups = {leader.pid for leader in leaders}
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) in groups:
                found.setdefault(proc.pid, proc)
        except (OSError, psutil.Error):
            continue
    return [proc for proc in found.values() if _is_alive(proc)]


def _signal(proc: psutil.Process, sig: signal.Signals) -> None:
    with contextlib.suppress(psutil.Error):
        proc.send_signal(sig)  # psutil checks that the pid still belongs to the same process


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _healthy_since(entry: Mapping[str, Any] | None, since: datetime | None) -> bool:
    """Component reports healthy, and (if `since`) its last heartbeat is from this start, not a stale job."""
    if not entry or entry.get("status") != "healthy":
        return False
    if since is None:
        return True
    beat = next((v for k, v in entry.items() if k.endswith("heartbeat") and v), None)
    return beat is not None and datetime.fromisoformat(beat) >= since


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((host, port)) == 0


def _write_json(path: Path, data: Any) -> None:
    """Write atomically with mode 0600 (files may hold secrets)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2)
    os.replace(tmp, path)


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _tail_file(path: str, lines: int = 15) -> str:
    try:
        return _tail(Path(path).read_text(errors="replace"), lines)
    except OSError:
        return "(log file missing)"
