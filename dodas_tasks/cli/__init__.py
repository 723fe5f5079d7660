"""The `dodas` command line: templates checked and compiled (templates.py); deployments submitted, listed, shown,
scaled and undeployed on this machine's Airflow or on a remote DODAS service (deployments.py over backends.py);
the demo Airflow started and stopped (stack.py)."""

from __future__ import annotations

import sys

import typer

from dodas_tasks.cli.app import CommandFailed, app

# Each module registers its commands on `app`; `dodas --help` lists them in this order.
# isort: off
from dodas_tasks.cli import templates  # noqa: F401
from dodas_tasks.cli import deployments  # noqa: F401
from dodas_tasks.cli import stack  # noqa: F401
from dodas_tasks.cli import service  # noqa: F401
from dodas_tasks.clouds.local.cli import app as localcloud_app
# isort: on

app.add_typer(localcloud_app, name="localcloud")


def main() -> None:
    """The `dodas` entry point: a command's failure is one line on stderr and its exit code, no traceback."""
    try:
        app()
    except CommandFailed as exc:
        typer.echo(exc.message, err=True)
        sys.exit(exc.code)
