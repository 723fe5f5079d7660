"""The `dodas` command line: validate and compile TOSCA templates (submit, status, demo come with the Airflow layer)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from dodas_tasks.tosca.compiler import compile as compile_template
from dodas_tasks.tosca.compiler import plan_stages
from dodas_tasks.tosca.errors import DodasTemplateError
from dodas_tasks.tosca.plan import Plan

app = typer.Typer(
    help="DODAS on Airflow: a whole cluster on any cloud from one TOSCA template.\n\n"
    "Start with `dodas validate templates/spark_local.yaml` to see what a template needs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

TemplateArg = Annotated[Path, typer.Argument(help="TOSCA template file (YAML).", show_default=False)]
InputOpt = Annotated[
    list[str] | None,
    typer.Option("--input", "-i", help="Template input as KEY=VALUE; repeat for several.", metavar="KEY=VALUE"),
]
InputsFileOpt = Annotated[
    Path | None, typer.Option("--inputs-file", help="YAML or JSON file with a mapping of inputs.", metavar="FILE")
]


def _fail(message: str, code: int = 2) -> None:
    typer.echo(message, err=True)
    raise typer.Exit(code)


def read_inputs(pairs: list[str] | None, inputs_file: Path | None) -> dict[str, Any] | None:
    """Inputs from --inputs-file then -i KEY=VALUE (later wins); None when none were given at all."""
    if not pairs and inputs_file is None:
        return None
    values: dict[str, Any] = {}
    if inputs_file is not None:
        try:
            loaded = yaml.safe_load(inputs_file.read_text())
        except (OSError, yaml.YAMLError) as exc:
            _fail(f"{inputs_file}: cannot read inputs file: {exc}")
        if not isinstance(loaded, dict):
            _fail(f"{inputs_file}: the inputs file must hold a mapping of input names to values")
        values.update(loaded)
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            _fail(f"-i {pair!r}: expected KEY=VALUE, for example -i number_of_workers=2")
        values[key.strip()] = value
    return values


def compile_file(template: Path, inputs: dict[str, Any] | None) -> Plan:
    try:
        text = template.read_text()
    except OSError as exc:
        _fail(f"{template}: cannot read template: {exc.strerror}")
    try:
        return compile_template(text, inputs, source=str(template))
    except DodasTemplateError as exc:
        _fail(exc.report())
    raise AssertionError("unreachable")


@app.command()
def validate(template: TemplateArg, input: InputOpt = None, inputs_file: InputsFileOpt = None) -> None:
    """Check a template (and inputs, if given); print its groups, components and stages.

    Exit 0 when it can be deployed, 2 with every problem listed on stderr when not. Without inputs the template
    alone is checked and the inputs a submission must give are listed.
    """
    plan = compile_file(template, read_inputs(input, inputs_file))
    typer.echo(f"{template}: OK")
    typer.echo(summary(plan))


@app.command("compile")
def compile_command(template: TemplateArg, input: InputOpt = None, inputs_file: InputsFileOpt = None) -> None:
    """Print the Plan (JSON) that a submission of this template would be deployed from."""
    plan = compile_file(template, read_inputs(input, inputs_file))
    json.dump(plan.to_dict(), sys.stdout, indent=2)
    sys.stdout.write("\n")


def summary(plan: Plan) -> str:
    lines = ["compute groups:"]
    for g in plan.groups:
        size = ", ".join(
            x for x in (f"{g.num_cpus} cpu" if g.num_cpus else "", f"{g.mem_mb} MiB" if g.mem_mb else "") if x
        )
        lines.append(
            f"  {g.name}: count {g.count} (min {g.min_count}, max {g.max_count}){' — ' + size if size else ''}"
        )
    lines.append("stages:")
    for stage, names in plan_stages(plan).items():
        lines.append(f"  {stage}: {', '.join(names) or '-'}")
    if plan.elasticity.enabled:
        e = plan.elasticity
        lines.append(f"elastic: group {e.group} between {e.min_count} and {e.max_count} nodes ({e.source})")
    needed = [i for i in plan.inputs if i.name in plan.missing_inputs]
    if needed:
        lines.append("inputs a submission must give:")
        lines += [f"  {i.name} ({i.type}){' — ' + i.description if i.description else ''}" for i in needed]
    secret = [i.name for i in plan.inputs if i.secret]
    if secret:
        lines.append(f"secret inputs (stored encrypted, never shown): {', '.join(secret)}")
    return "\n".join(lines)


# -- deployments (through the running Airflow) ------------------------------------------------------------------


def _stack() -> Any:
    from dodas_tasks import demo

    s = demo.stack()
    if not s.is_running():
        _fail(f"Airflow is not running in {s.airflow_home}; start it with `dodas demo` (it stays up)")
    return s


@app.command()
def submit(
    template: Annotated[str, typer.Argument(help="A file, or the name of a ready template in templates/.")],
    input: InputOpt = None,
    inputs_file: InputsFileOpt = None,
    cloud: Annotated[str, typer.Option(help="Cloud to deploy on.")] = "local",
    wait: Annotated[bool, typer.Option(help="Follow the deployment until it completes or fails.")] = True,
    oidc_agent: Annotated[
        str | None, typer.Option(help="oidc-agent account to take your IAM access token from (oidc-token ACCOUNT).")
    ] = None,
) -> None:
    """Submit a template through the dodas_submit DAG; print the deployment id (and progress with --wait).

    With an IAM access token (env DODAS_ACCESS_TOKEN, or --oidc-agent ACCOUNT) the deployment is delegated to you.
    """
    from dodas_tasks import demo
    from dodas_tasks.airflow.rest_api import AirflowApiError
    from dodas_tasks.devstack.local_airflow import StackError

    s = _stack()
    path = Path(template)
    inputs = read_inputs(input, inputs_file) or {}
    conf: dict[str, Any] = {"inputs": inputs, "cloud": cloud}
    token = access_token(oidc_agent)
    if token:
        conf["access_token"] = token
    if path.is_file():
        conf["template_text"] = path.read_text()
    else:
        conf["template"] = template
    try:
        deployment_id = demo.submit(s, conf, typer.echo)
    except (StackError, AirflowApiError) as exc:
        _fail(str(exc))
    typer.echo(deployment_id)
    if wait:
        status = demo.watch(deployment_id, typer.echo)
        typer.echo(status)
        if status.endswith("FAILED"):
            raise typer.Exit(1)


def access_token(oidc_agent: str | None) -> str | None:
    """The user's IAM access token: from oidc-agent when asked, else DODAS_ACCESS_TOKEN (never echoed)."""
    if oidc_agent:
        import subprocess

        try:
            result = subprocess.run(["oidc-token", oidc_agent], capture_output=True, text=True, timeout=30)
        except FileNotFoundError:
            _fail("oidc-token (oidc-agent) is not installed; set DODAS_ACCESS_TOKEN instead")
        if result.returncode != 0:
            _fail(f"oidc-token {oidc_agent} failed: {result.stderr.strip()[:200]}")
        return result.stdout.strip()
    return os.environ.get("DODAS_ACCESS_TOKEN") or None


@app.command("list")
def list_command(all_: Annotated[bool, typer.Option("--all", help="Include deleted deployments.")] = False) -> None:
    """List deployments: id, status, cloud, groups."""
    from dodas_tasks import demo
    from dodas_tasks.store import Store

    demo.stack()
    with Store() as store:
        for dep in store.list_deployments(live_only=not all_):
            groups = ", ".join(f"{g}×{n}" for g, n in dep.desired_counts.items())
            typer.echo(f"{dep.id}  {dep.status:<19} {dep.cloud:<6} {groups}")


def resolve_id(reference: str) -> str:
    """The full id of the deployment a typed id or 8+ character prefix names; a one-line reason and exit 2 if none."""
    from dodas_tasks import demo
    from dodas_tasks.store import DeploymentIdError, DeploymentNotFoundError, Store

    demo.stack()  # the store lives under the CLI's AIRFLOW_HOME
    with Store() as store:
        try:
            return store.resolve_id(reference)
        except DeploymentNotFoundError as exc:
            _fail(f"{exc}; `dodas list --all` shows them")
        except DeploymentIdError as exc:
            _fail(str(exc))
    raise AssertionError("unreachable")


IdArg = Annotated[str, typer.Argument(help="Deployment id, or its first 8+ characters.", show_default=False)]


@app.command()
def status(deployment_id: IdArg, events: Annotated[int, typer.Option(help="How many recent events.")] = 15) -> None:
    """Show a deployment: status, nodes and their states, outputs, last events."""
    from dodas_tasks.store import Store

    deployment_id = resolve_id(deployment_id)
    with Store() as store:
        dep = store.get_deployment(deployment_id)
        typer.echo(f"deployment {dep.id}: {dep.status}{' — ' + dep.status_reason if dep.status_reason else ''}")
        typer.echo(f"cloud {dep.cloud}, owner {dep.owner_subject}, created {dep.created_at:%Y-%m-%d %H:%M:%S}")
        typer.echo("nodes:")
        for node in store.list_nodes(deployment_id):
            reason = f" ({node.state_reason})" if node.state_reason else ""
            typer.echo(f"  {node.name:<40} {node.state:<11} {node.private_ip or '-':<15}{reason}")
        if dep.outputs:
            typer.echo("outputs:")
            for key, value in dep.outputs.items():
                if not key.startswith("_"):
                    typer.echo(f"  {key}: {value}")
        if events:
            typer.echo("events:")
        for event in store.list_events(deployment_id, limit=events) if events else []:
            typer.echo(f"  {event.time:%H:%M:%S} {event.kind:<10} {event.message}")


@app.command()
def undeploy(deployment_id: IdArg, wait: Annotated[bool, typer.Option(help="Wait until deleted.")] = True) -> None:
    """Delete every resource of a deployment (through the dodas_undeploy DAG)."""
    from dodas_tasks import demo
    from dodas_tasks.airflow.rest_api import AirflowApiError
    from dodas_tasks.devstack.local_airflow import StackError

    deployment_id = resolve_id(deployment_id)
    s = _stack()
    since = demo.last_event_id(deployment_id)
    try:
        demo.undeploy(s, deployment_id)
    except (StackError, AirflowApiError) as exc:
        _fail(str(exc))
    if wait:
        final = demo.watch(deployment_id, typer.echo, until={"DELETE_COMPLETE", "DELETE_FAILED"}, since=since)
        typer.echo(final)
        if final != "DELETE_COMPLETE":
            raise typer.Exit(1)


@app.command()
def scale(
    deployment_id: IdArg,
    group: Annotated[str, typer.Argument(help="Compute group (TOSCA node name).")],
    count: Annotated[int, typer.Argument(help="Desired number of VMs.", min=0)],
) -> None:
    """Set the number of VMs of a compute group (through the dodas_scale DAG)."""
    from dodas_tasks import demo
    from dodas_tasks.airflow.rest_api import AirflowApiError
    from dodas_tasks.devstack.local_airflow import StackError

    deployment_id = resolve_id(deployment_id)
    s = _stack()
    since = demo.last_event_id(deployment_id)
    try:
        demo.scale(s, deployment_id, group, count)
    except (StackError, AirflowApiError) as exc:
        _fail(str(exc))
    typer.echo(demo.watch(deployment_id, typer.echo, until={"UPDATE_COMPLETE", "UPDATE_FAILED"}, since=since))


@app.command()
def stop() -> None:
    """Stop the Airflow that `dodas demo` started (every component and task process; found by its pid file)."""
    from dodas_tasks import demo
    from dodas_tasks.devstack.local_airflow import StackError

    s = demo.stack()
    was_running = s.is_running()
    try:
        s.stop()
    except StackError as exc:
        _fail(str(exc), code=1)
    typer.echo(f"Airflow stopped ({s.airflow_home})" if was_running else f"Airflow is not running in {s.airflow_home}")


@app.command("demo")
def demo_command(
    once: Annotated[bool, typer.Option("--once", help="Undeploy at the end, stop what was started, exit.")] = False,
    workers: Annotated[int, typer.Option(help="Number of Spark workers.")] = 2,
) -> None:
    """Start Airflow if needed, deploy the local Spark template (1 master + N workers), verify it with SparkPi."""
    from dodas_tasks import demo
    from dodas_tasks.airflow.rest_api import AirflowApiError
    from dodas_tasks.devstack.local_airflow import StackError

    started_at = time.monotonic()
    s = demo.stack()
    started = False
    ok = False
    try:
        started = demo.ensure_running(s, typer.echo)
        typer.echo(f"submitting templates/spark_local.yaml with {workers} worker(s) ...")
        conf = {"template": "spark_local.yaml", "inputs": {"number_of_workers": workers}, "cloud": "local"}
        deployment_id = demo.submit(s, conf, typer.echo)
        status_word = demo.watch(deployment_id, typer.echo)
        typer.echo(f"deployment {deployment_id}: {status_word} after {time.monotonic() - started_at:.0f} s")
        status(deployment_id, events=0)
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


# -- the store's database and the service's setup (docker-compose.yml's airflow-init) -------------------------

db_app = typer.Typer(help="The DODAS store's database (deployments, nodes, events).", no_args_is_help=True)
app.add_typer(db_app, name="db")
service_app = typer.Typer(help="Running DODAS on Airflow as a service (docker-compose.yml).", no_args_is_help=True)
app.add_typer(service_app, name="service")


@db_app.command("migrate")
def db_migrate() -> None:
    """Bring the store's schema to the newest revision (DODAS_DATABASE_URL, else SQLite under DODAS_HOME).

    On PostgreSQL the database is created first when the server has none of that name. Idempotent, and safe
    while other processes use the store: run it after every upgrade, before starting the new version.
    """
    from dodas_tasks.settings import database_url
    from dodas_tasks.store import Store
    from dodas_tasks.store.migrate import create_database_if_missing, current_revisions

    url = database_url()
    try:
        created = create_database_if_missing(url)
        with Store(url) as store:
            store.migrate()
            with store.engine.connect() as connection:
                revision = ", ".join(sorted(current_revisions(connection)))
            where = store.engine.url.render_as_string(hide_password=True)
    except Exception as exc:  # a one-line reason, never a traceback with the URL's password in it
        _fail(f"cannot migrate the DODAS store: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}", code=1)
    typer.echo(f"DODAS store {where}{' (database created)' if created else ''}: at revision {revision}")


@service_app.command("env")
def service_env() -> None:
    """Print a new `.env` for docker-compose.yml: fresh secrets, the admin account, connection examples.

    `dodas service env > .env && chmod 600 .env`, once; keep it private and out of version control.
    """
    from dodas_tasks.devstack.service_env import service_dotenv

    typer.echo(service_dotenv(), nl=False)


@service_app.command("create-admin")
def service_create_admin() -> None:
    """Write the admin's password into the api-server's passwords file (SimpleAuthManager; idempotent).

    Reads _AIRFLOW_WWW_USER_USERNAME (default admin), _AIRFLOW_WWW_USER_PASSWORD and
    AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE from the environment, as the compose file's airflow-init
    gives them from `.env`.
    """
    from dodas_tasks.devstack import service_env as names

    user = os.environ.get(names.ADMIN_USER_VARIABLE) or names.ADMIN_USER
    password = os.environ.get(names.ADMIN_PASSWORD_VARIABLE)
    path = os.environ.get(names.PASSWORDS_FILE_VARIABLE)
    if not password or not path:
        _fail(f"set {names.ADMIN_PASSWORD_VARIABLE} and {names.PASSWORDS_FILE_VARIABLE} (see `dodas service env`)")
    names.write_passwords_file(Path(path), user, password)
    typer.echo(f"admin user {user!r}: password written to {path}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
