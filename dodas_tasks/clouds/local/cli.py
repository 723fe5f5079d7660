"""`dodas localcloud …`: the local cloud as a service of its own, shared by workers on other hosts."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Annotated

import typer

from dodas_tasks.clouds.base import CloudError, SshGateway

app = typer.Typer(help="The local cloud as a service shared by workers on several hosts.", no_args_is_help=True)


@app.command()
def serve(
    listen: Annotated[
        str, typer.Option(help="HOST:PORT of the HTTP API for the workers' local cloud driver.")
    ] = "127.0.0.1:8780",
    gateway: Annotated[str, typer.Option(help="HOST:PORT of the SSH gateway (jump host) to the VMs.")] = (
        "127.0.0.1:2200"
    ),
    advertise_gateway: Annotated[
        str | None,
        typer.Option(
            help="HOST:PORT workers reach the gateway at, when not the listening address (NAT, proxy). "
            "Listening on 0.0.0.0, workers are told the host they reached the API at."
        ),
    ] = None,
    home: Annotated[
        Path | None, typer.Option(help="DODAS home of the served cloud (default: $DODAS_HOME).", show_default=False)
    ] = None,
) -> None:
    """Serve one local cloud: its API over HTTP and an SSH gateway to its VMs, until Ctrl-C or SIGTERM.

    Workers set DODAS_LOCALCLOUD_URL=http://HOST:PORT (and DODAS_LOCALCLOUD_TOKEN when the service has one: set
    it in this command's environment to require it); their SSH to the VMs then goes through the gateway, which
    admits the cloud's key pairs and forwards only to the VMs of the key that logged in. VM settings come from
    the DODAS_LOCAL_* variables, as for the embedded cloud.
    """
    from dodas_tasks.clouds.local import wire
    from dodas_tasks.clouds.local.driver import LocalCloud
    from dodas_tasks.clouds.local.service import Endpoint
    from dodas_tasks.clouds.local.service import serve as serve_cloud

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("asyncssh").setLevel(logging.WARNING)
    try:
        cloud = LocalCloud(home=home)
        api_at = Endpoint.parse(listen, 8780)
        gateway_at = Endpoint.parse(gateway, 2200)
        told = Endpoint.parse(advertise_gateway, gateway_at.port) if advertise_gateway else None
    except (CloudError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None

    def ready(url: str, info: SshGateway) -> None:
        typer.echo(f"local cloud API on {url} (VMs under {cloud.config.root})")
        typer.echo(f"SSH gateway on {info.host}:{info.port}, host key {info.host_key}")
        typer.echo(f"workers: export {wire.URL_ENV}={url}", nl=True)

    try:
        asyncio.run(serve_cloud(cloud, api_at, gateway_at, advertised_gateway=told, token=_token(), on_ready=ready))
    except OSError as exc:
        typer.echo(f"error: cannot listen: {exc}", err=True)
        raise typer.Exit(1) from None


def _token() -> str | None:
    from dodas_tasks.clouds.local import wire

    return os.environ.get(wire.TOKEN_ENV) or None
