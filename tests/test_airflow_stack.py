"""End-to-end: a real Airflow 3.3.2 stack on loopback runs a DAG, picks up generated DAGs, and stops cleanly."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from dodas_tasks.devstack.local_airflow import STACK_MARKER, AirflowStack
from dodas_tasks.devstack.processes import marked

pytestmark = pytest.mark.slow

TWO_STEP_DAG = """
from datetime import datetime

from airflow.sdk import dag, task


@dag(dag_id="two_steps", schedule=None, start_date=datetime(2024, 1, 1), catchup=False,
     is_paused_upon_creation=False)
def two_steps():
    @task
    def make(**context):
        return {"n": context["dag_run"].conf.get("n", 1)}

    @task
    def double(value):
        return value["n"] * 2

    double(make())


two_steps()
"""

# A generator file like the deployment factory: one DAG per row of a data file that the test edits.
GENERATOR_DAG = """
import json
from datetime import datetime
from pathlib import Path

from airflow.sdk import DAG, task

for name in json.loads((Path(__file__).parent / "rows.json").read_text()):
    with DAG(dag_id=f"gen_{name}", schedule=None, start_date=datetime(2024, 1, 1), catchup=False,
             is_paused_upon_creation=False) as generated:
        @task
        def hello(who=name):
            return f"hello {who}"

        hello()
    globals()[generated.dag_id] = generated
"""


def _free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _set_rows(dags: Path, rows: list[str]) -> None:
    tmp = dags / "rows.json.tmp"
    tmp.write_text(json.dumps(rows))
    tmp.replace(dags / "rows.json")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowStack]:
    root = tmp_path_factory.mktemp("airflow_stack")
    dags, plugins = root / "dags", root / "plugins"
    dags.mkdir()
    plugins.mkdir()
    (dags / "two_steps.py").write_text(textwrap.dedent(TWO_STEP_DAG))
    (dags / "generated.py").write_text(textwrap.dedent(GENERATOR_DAG))
    _set_rows(dags, ["alpha"])
    airflow_stack = AirflowStack(root / "home", dags, plugins, port=_free_loopback_port(), parallelism=4)
    started = time.monotonic()
    try:
        airflow_stack.start(timeout=300)
        print(f"\n[measure] cold start incl. migrate → healthy: {time.monotonic() - started:.1f} s")
        yield airflow_stack
    finally:
        airflow_stack.stop()


def test_a_stack_never_started_has_no_processes(tmp_path: Path) -> None:
    """As a failing test's report asks it, before or without any start (no pid file, no record)."""
    unstarted = AirflowStack(tmp_path / "home", tmp_path / "dags", tmp_path / "plugins", port=_free_loopback_port())
    assert unstarted.processes_of("scheduler") == [] and unstarted.members() == []


def test_secrets_and_password_are_kept_across_instances(stack: AirflowStack) -> None:
    again = AirflowStack(stack.airflow_home, stack.dags_folder, stack.plugins_folder, port=stack.port)
    assert again.admin_credentials() == stack.admin_credentials()
    keys = ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY", "AIRFLOW__CORE__FERNET_KEY")
    assert all(again.env()[k] == stack.env()[k] for k in keys)
    assert len(stack.env()["AIRFLOW__API_AUTH__JWT_SECRET"]) >= 64
    assert again.is_running()  # read from the pid file by an instance that did not start it


def test_two_task_dag_runs_and_returns_xcom(stack: AirflowStack) -> None:
    stack.rest.wait_for_dag("two_steps", timeout=120)
    triggered = time.monotonic()
    run_id = stack.rest.trigger_dag("two_steps", {"n": 21})
    assert stack.rest.wait_for_run("two_steps", run_id, timeout=300, poll=0.2) == "success"
    print(f"\n[measure] trigger → success (2 tasks): {time.monotonic() - triggered:.1f} s")
    assert stack.rest.xcom("two_steps", run_id, "double") == 42
    assert stack.rest.xcom("two_steps", run_id, "make") == {"n": 21}


def test_new_row_in_generator_file_becomes_a_dag_by_itself(stack: AirflowStack) -> None:
    stack.rest.wait_for_dag("gen_alpha", timeout=120)
    _set_rows(stack.dags_folder, ["alpha", "beta"])
    added = time.monotonic()
    stack.rest.wait_for_dag("gen_beta", timeout=120)
    print(f"\n[measure] new row → DAG visible, periodic re-parse only: {time.monotonic() - added:.1f} s")


def test_reparse_request_makes_a_new_row_runnable(stack: AirflowStack) -> None:
    stack.rest.wait_for_dag("gen_alpha", timeout=120)
    _set_rows(stack.dags_folder, ["alpha", "beta", "gamma"])
    added = time.monotonic()
    stack.rest.wait_for_dag("gen_gamma", timeout=120, reparse_via="gen_alpha", poll=0.1)
    visible = time.monotonic()
    run_id = stack.rest.trigger_dag("gen_gamma")
    assert stack.rest.wait_for_run("gen_gamma", run_id, timeout=300, poll=0.2) == "success"
    print(
        f"\n[measure] new row → DAG visible with PUT parseDagFile: {visible - added:.1f} s;"
        f" → run succeeded: {time.monotonic() - added:.1f} s"
    )
    assert stack.rest.xcom("gen_gamma", run_id, "hello") == "hello gamma"


def test_a_killed_task_is_failed_within_35_s_of_its_last_heartbeat(stack: AirflowStack) -> None:
    """Issue 16: Airflow's 300 s stalled a deployment whose task's worker was killed; bench/faults.py measures it."""
    read = (
        "from airflow.configuration import conf; print(conf.getint('scheduler', 'task_instance_heartbeat_timeout'),"
        " conf.getfloat('scheduler', 'task_instance_heartbeat_timeout_detection_interval'),"
        " conf.getint('workers', 'min_heartbeat_interval'))"
    )
    done = subprocess.run([sys.executable, "-c", read], env=stack.env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    timeout, detection, beat = (float(word) for word in done.stdout.split())
    assert timeout + detection <= 35  # README "Reliability": failed 30-35 s after its last heartbeat, then retried
    assert timeout >= 6 * beat  # six heartbeats missed in a row before a live task is taken for dead


def test_stop_ends_every_process_even_what_a_crashed_scheduler_orphaned(stack: AirflowStack) -> None:
    stack.rest.wait_for_dag("two_steps", timeout=120)
    # A run in flight while stopping: its task processes live in their own process groups.
    stack.rest.trigger_dag("two_steps", {"n": 1})
    recorded = json.loads(stack.pid_file.read_text())["components"]
    tree: dict[int, psutil.Process] = {}
    for record in recorded.values():
        leader = psutil.Process(record["pid"])
        tree[leader.pid] = leader
        tree.update({child.pid: child for child in leader.children(recursive=True)})
    assert set(recorded) == {"api-server", "scheduler", "dag-processor", "triggerer"}
    scheduler = psutil.Process(recorded["scheduler"]["pid"])
    workers = [p for p in scheduler.children() if "LocalExecutor" in " ".join(p.cmdline())]
    assert workers

    scheduler.kill()  # issue 16: a crashed scheduler's LocalExecutor workers are reparented to init and live on
    scheduler.wait(timeout=30)
    assert [w.ppid() for w in workers if _alive(w)] and all(w.ppid() != scheduler.pid for w in workers if _alive(w))
    AirflowStack(stack.airflow_home, stack.dags_folder, stack.plugins_folder, port=stack.port).stop()
    stack.stop()  # idempotent, and reaps our own children

    assert [p.pid for p in tree.values() if _alive(p)] == []
    assert marked(STACK_MARKER, str(stack.airflow_home)) == []
    assert not stack.pid_file.exists()
    assert not stack.is_running()
    assert not _listening(stack.port)
    # The triggerer had collected its trigger runner's exit before it stopped: its supervisor's kill() found it
    # and returned at once. When kill() has to end the runner it logs "Process exited", often after waiting out
    # its 10 s escalation delay for an exit it fails to notice (AirflowStack._terminate).
    stopping = (stack.logs_dir / "triggerer.out").read_text().rsplit("Starting the triggerer", 1)[-1]
    assert "Exited trigger loop" in stopping and "Process exited" not in stopping
    # One SIGTERM per component: to Airflow a second one means "stop waiting" (the scheduler's, landing while it
    # shut its LocalExecutor down, once held a stop for the whole grace).
    assert (stack.logs_dir / "dag-processor.out").read_text().count("Exiting gracefully upon receiving signal") == 1


def test_dodas_stop_stops_the_stack_of_its_airflow_home(stack: AirflowStack) -> None:
    stack.start(components=("api-server",), migrate=False)  # as `dodas demo` leaves it: running, pid file written
    recorded = json.loads(stack.pid_file.read_text())["components"]
    leaders = [psutil.Process(record["pid"]) for record in recorded.values()]
    env = {**os.environ, "AIRFLOW_HOME": str(stack.airflow_home), "DODAS_AIRFLOW_PORT": str(stack.port)}

    stopped = subprocess.run(
        [sys.executable, "-m", "dodas_tasks.cli", "stop"], capture_output=True, text=True, env=env, timeout=120
    )

    assert stopped.returncode == 0, stopped.stderr
    assert "Airflow stopped" in stopped.stdout
    assert [p.pid for p in leaders if _alive(p)] == []
    assert not stack.pid_file.exists()
    assert not _listening(stack.port)
    again = subprocess.run(
        [sys.executable, "-m", "dodas_tasks.cli", "stop"], capture_output=True, text=True, env=env, timeout=120
    )
    assert again.returncode == 0 and "not running" in again.stdout


# A program that starts a stack as every benchmark and `dodas demo` do: under exit_on_signals, stopped in `finally`.
SIGNALLED = """
import sys, time
from pathlib import Path
from dodas_tasks.devstack.interrupts import exit_on_signals
from dodas_tasks.devstack.local_airflow import AirflowStack

with exit_on_signals():
    stack = AirflowStack(*(Path(arg) for arg in sys.argv[1:4]), port=int(sys.argv[4]))
    try:
        stack.start(components=("api-server",), migrate=False)  # ended by the test while it starts
        time.sleep(600)  # the benchmark's work
    finally:
        stack.stop()
"""


def test_a_program_ended_by_sigterm_stops_the_stack_it_started(stack: AirflowStack) -> None:
    stack.stop()
    args = [str(stack.airflow_home), str(stack.dags_folder), str(stack.plugins_folder), str(stack.port)]
    program = subprocess.Popen([sys.executable, "-c", SIGNALLED, *args])
    try:
        deadline = time.monotonic() + 120
        while not stack.members():  # its api-server is up (marked as the stack's), still starting
            assert program.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        program.send_signal(signal.SIGTERM)  # as `timeout` ends a benchmark
        assert program.wait(timeout=120) == 128 + signal.SIGTERM
    finally:
        program.kill()
        program.wait()
    assert stack.members() == []
    assert not stack.pid_file.exists()
    assert not _listening(stack.port)
