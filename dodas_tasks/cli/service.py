"""`dodas db` and `dodas service`: the store's database and the service's setup (docker-compose.yml's airflow-init)."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from dodas_tasks.cli.app import app, fail

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
        fail(f"cannot migrate the DODAS store: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}", code=1)
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
        fail(f"set {names.ADMIN_PASSWORD_VARIABLE} and {names.PASSWORDS_FILE_VARIABLE} (see `dodas service env`)")
    names.write_passwords_file(Path(path), user, password)
    typer.echo(f"admin user {user!r}: password written to {path}")
