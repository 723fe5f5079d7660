"""The deployment commands (submit, list, status, scale, undeploy, template, resources), each written once over a
Backend: this machine's Airflow by default, a remote DODAS service with --url or DODAS_URL."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from dodas_tasks.cli.app import InputOpt, InputsFileOpt, app, read_inputs
from dodas_tasks.cli.backends import TOKEN_VARIABLE, Backend, Submission, connect
from dodas_tasks.demo import event_line
from dodas_tasks.deploy.orchestrator_resources import COMPUTE_TYPE, ResourceBody
from dodas_tasks.deploy.orchestrator_view import FINAL_STATUSES, DeploymentResource, parse_orchestrator_time
from dodas_tasks.store import DeploymentStatus

UrlOpt = Annotated[
    str | None,
    typer.Option(
        "--url",
        envvar="DODAS_URL",
        metavar="URL",
        show_default=False,
        help="A remote DODAS service: its Airflow api-server's address (e.g. https://dodas.example.org), or its "
        "orchestrator API's URL (…/dodas/orchestrator). Without it, this machine's Airflow.",
    ),
]
AgentOpt = Annotated[
    str | None,
    typer.Option(
        "--oidc-agent",
        metavar="ACCOUNT",
        show_default=False,
        help=f"Take your IAM access token from oidc-agent (oidc-token ACCOUNT) instead of {TOKEN_VARIABLE}.",
    ),
]
IdArg = Annotated[str, typer.Argument(help="Deployment id, or its first 8+ characters.", show_default=False)]
WaitOpt = Annotated[bool, typer.Option(help="Follow the deployment until the request completes or fails.")]
UPDATED = frozenset({DeploymentStatus.UPDATE_COMPLETE, DeploymentStatus.UPDATE_FAILED})
DELETED = frozenset({DeploymentStatus.DELETE_COMPLETE, DeploymentStatus.DELETE_FAILED})


@app.command()
def submit(
    template: Annotated[str, typer.Argument(help="A file, or the name of a ready template in templates/.")],
    input: InputOpt = None,
    inputs_file: InputsFileOpt = None,
    cloud: Annotated[
        str | None, typer.Option(help="Cloud to deploy on (this machine; default local).", show_default=False)
    ] = None,
    user_group: Annotated[
        str | None, typer.Option(help="Share with the members of this IAM group (remote service).", metavar="GROUP")
    ] = None,
    callback: Annotated[
        str | None, typer.Option(help="URL POSTed the deployment at each final state (remote service).", metavar="URL")
    ] = None,
    wait: WaitOpt = True,
    url: UrlOpt = None,
    oidc_agent: AgentOpt = None,
) -> None:
    """Submit a template; print the deployment id (and progress with --wait).

    On this machine it goes through the dodas_submit DAG; with an IAM access token (DODAS_ACCESS_TOKEN or
    --oidc-agent) the deployment is delegated to you. A remote service gets the template's text and inputs.
    """
    backend = connect(url, oidc_agent)
    inputs = read_inputs(input, inputs_file) or {}
    submission = Submission(template, inputs, cloud=cloud, user_group=user_group, callback=callback)
    deployment_id = backend.submit(submission, typer.echo)
    typer.echo(deployment_id)
    if wait:
        _report(backend.watch(deployment_id, typer.echo, FINAL_STATUSES, since=0))


@app.command("list")
def list_command(
    all_: Annotated[bool, typer.Option("--all", help="Include deleted deployments (this machine).")] = False,
    url: UrlOpt = None,
    oidc_agent: AgentOpt = None,
) -> None:
    """List deployments: id, status, cloud, creation time (UTC), owner."""
    for dep in connect(url, oidc_agent).deployments(include_deleted=all_):
        typer.echo(f"{dep.uuid}  {dep.status:<19} {dep.cloudProviderName or '-':<9} {_time(dep)}  {_owner(dep)}")


@app.command()
def status(
    deployment_id: IdArg,
    events: Annotated[int, typer.Option(help="How many recent events.")] = 15,
    url: UrlOpt = None,
    oidc_agent: AgentOpt = None,
) -> None:
    """Show a deployment: status, VMs and their states, outputs, last events."""
    backend = connect(url, oidc_agent)
    show_status(backend, backend.deployment(deployment_id), events)


def show_status(backend: Backend, dep: DeploymentResource, events: int) -> None:
    reason = f" — {dep.statusReason}" if dep.statusReason else ""
    typer.echo(f"deployment {dep.uuid}: {dep.status}{reason}")
    typer.echo(f"cloud {dep.cloudProviderName or '-'}, owner {_owner(dep)}, created {_time(dep)}")
    typer.echo("nodes:")
    for vm in backend.resources(dep.uuid, COMPUTE_TYPE):
        info = vm.metadata
        why = f" ({info['stateReason']})" if info.get("stateReason") else ""
        typer.echo(f"  {info.get('vmName', vm.uuid):<40} {vm.state:<11} {info.get('privateIp') or '-':<15}{why}")
    outputs = {k: v for k, v in dep.outputs.items() if not k.startswith("_")}
    if outputs:
        typer.echo("outputs:")
        for key, value in outputs.items():
            typer.echo(f"  {key}: {value}")
    if events > 0:
        typer.echo("events:")
        for entry in backend.events(dep.uuid, limit=events):
            typer.echo(event_line(entry))


@app.command()
def undeploy(deployment_id: IdArg, wait: WaitOpt = True, url: UrlOpt = None, oidc_agent: AgentOpt = None) -> None:
    """Delete every resource of a deployment (on this machine through the dodas_undeploy DAG)."""
    backend = connect(url, oidc_agent)
    dep = backend.deployment(deployment_id)
    since = backend.mark(dep.uuid)
    backend.undeploy(dep.uuid)
    typer.echo(f"deployment {dep.uuid}: undeploy requested")
    if wait:
        _report(backend.watch(dep.uuid, typer.echo, DELETED, since), success=DeploymentStatus.DELETE_COMPLETE)


@app.command()
def scale(
    deployment_id: IdArg,
    group: Annotated[str, typer.Argument(help="Compute group (TOSCA node name).")],
    count: Annotated[int, typer.Argument(help="Desired number of VMs.", min=0)],
    wait: WaitOpt = True,
    url: UrlOpt = None,
    oidc_agent: AgentOpt = None,
) -> None:
    """Set the number of VMs of a compute group.

    On this machine through the dodas_scale DAG; on a remote service as a template update with the group's count
    changed (its input when the count comes from one), as orchestrator clients scale.
    """
    backend = connect(url, oidc_agent)
    dep = backend.deployment(deployment_id)
    since = backend.mark(dep.uuid)
    backend.scale(dep.uuid, group, count)
    typer.echo(f"deployment {dep.uuid}: {group} → {count} requested")
    if wait:
        _report(backend.watch(dep.uuid, typer.echo, UPDATED, since))


@app.command()
def template(deployment_id: IdArg, url: UrlOpt = None, oidc_agent: AgentOpt = None) -> None:
    """Print a deployment's TOSCA template as submitted (or as last updated)."""
    backend = connect(url, oidc_agent)
    text = backend.template(backend.deployment(deployment_id).uuid)
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


@app.command()
def resources(
    deployment_id: IdArg,
    node_type: Annotated[
        str | None, typer.Option("--type", help="Only resources of this TOSCA node type.", metavar="TYPE")
    ] = None,
    url: UrlOpt = None,
    oidc_agent: AgentOpt = None,
) -> None:
    """List a deployment's resources: each VM, then each component on each VM.

    One line each, as the orchestrator lists them: id, state, TOSCA node, type, and the VM's name and address (or
    the VM a component runs on). A VM's id is what a removal list takes.
    """
    backend = connect(url, oidc_agent)
    found = backend.resources(backend.deployment(deployment_id).uuid, node_type)
    vm_names = {r.uuid: r.metadata.get("vmName", r.uuid) for r in found if r.toscaNodeType == COMPUTE_TYPE}
    for resource in found:
        typer.echo(
            f"{resource.uuid}  {resource.state:<11} {resource.toscaNodeName:<28} {resource.toscaNodeType:<40} "
            f"{_where(resource, vm_names)}"
        )


def _where(resource: ResourceBody, vm_names: dict[str, str]) -> str:
    info = resource.metadata
    if resource.toscaNodeType == COMPUTE_TYPE:
        return f"{info.get('vmName', '-')} {info.get('privateIp') or '-'}"
    host = info.get("host")
    return f"on {vm_names.get(host, host)}" if host else "on the site's services"


def _time(dep: DeploymentResource) -> str:
    return f"{parse_orchestrator_time(dep.creationTime):%Y-%m-%d %H:%M}"


def _owner(dep: DeploymentResource) -> str:
    return dep.createdBy.subject


def _report(final: str, success: str | None = None) -> None:
    """Print the status a watch ended on; exit 1 when the request failed."""
    typer.echo(final)
    if final.endswith("FAILED") or (success is not None and final != success):
        raise typer.Exit(1)
