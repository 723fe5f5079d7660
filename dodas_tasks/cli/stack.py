"""`dodas demo` and `dodas stop`: the Airflow this machine runs for DODAS (started, used, stopped)."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from dodas_tasks import demo
from dodas_tasks.airflow.rest_api import AirflowApiError
from dodas_tasks.cli.app import app, fail
from dodas_tasks.cli.deployments import show_status
from dodas_tasks.cli.local import LocalBackend
from dodas_tasks.devstack.interrupts import exit_on_signals
from dodas_tasks.devstack.local_airflow import StackError


@app.command()
def stop() -> None:
    """Stop the Airflow that `dodas demo` started (every component and task process; found by its pid file)."""
    s = demo.stack()
    was_running = s.is_running()
    try:
        s.stop()
    except StackError as exc:
        fail(str(exc), code=1)
    typer.echo(f"Airflow stopped ({s.airflow_home})" if was_running else f"Airflow is not running in {s.airflow_home}")


@app.command("demo")
def demo_command(
    once: Annotated[bool, typer.Option("--once", help="Undeploy at the end, stop what was started, exit.")] = False,
    workers: Annotated[int, typer.Option(help="Number of Spark workers.")] = 2,
) -> None:
    """Start Airflow if needed, deploy the local Spark template (1 master + N workers), verify it with SparkPi."""
    started_at = time.monotonic()
    s = demo.stack()
    started = False
    ok = False
    # SIGTERM/SIGINT/SIGHUP end the command through its finally: with --once, the Airflow it started is stopped.
    with exit_on_signals():
        try:
            started = demo.ensure_running(s, typer.echo)
            typer.echo(f"submitting templates/spark_local.yaml with {workers} worker(s) ...")
            conf = {"template": "spark_local.yaml", "inputs": {"number_of_workers": workers}, "cloud": "local"}
            deployment_id = demo.submit(s, conf, typer.echo)
            status_word = demo.watch(deployment_id, typer.echo)
            typer.echo(f"deployment {deployment_id}: {status_word} after {time.monotonic() - started_at:.0f} s")
            local = LocalBackend(lambda: None)
            show_status(local, local.deployment(deployment_id), events=0)
            user, password = s.admin_credentials()
            typer.echo(f"Airflow UI: {s.ui_url()}  (login {user} / {password})")
            ok = status_word == "CREATE_COMPLETE"
            if once:
                typer.echo("undeploying ...")
                final = "DELETE_FAILED"
                since = demo.last_event_id(deployment_id)
                demo.undeploy(s, deployment_id)
                final = demo.watch(deployment_id, typer.echo, until={"DELETE_COMPLETE", "DELETE_FAILED"}, since=since)
                typer.echo(final)
                ok = ok and final == "DELETE_COMPLETE"
            else:
                typer.echo(f"the cluster stays up: `dodas status {deployment_id}`, `dodas undeploy {deployment_id}`")
                typer.echo("`dodas stop` stops Airflow")
        except (StackError, AirflowApiError) as exc:
            typer.echo(str(exc), err=True)
        finally:
            if once and started:
                s.stop()
                typer.echo("Airflow stopped")
    if not ok:
        raise typer.Exit(1)
