"""The secrets an Airflow stack needs, made once: for the dev stack's home and for the service's `.env`.

`docker-compose.yml` reads its secrets and settings from a `.env` that `dodas service env` writes with this module;
the compose file's airflow-init writes the admin's password file (SimpleAuthManager) with it too.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from pathlib import Path
from typing import Any

ADMIN_USER = "admin"
# The variables of the official Airflow compose file for its admin account, kept for familiarity.
ADMIN_USER_VARIABLE = "_AIRFLOW_WWW_USER_USERNAME"
ADMIN_PASSWORD_VARIABLE = "_AIRFLOW_WWW_USER_PASSWORD"
PASSWORDS_FILE_VARIABLE = "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"


def generate_secrets() -> dict[str, str]:
    """Fresh JWT secret, API secret key (signs parse-file tokens) and Fernet key (encrypts connections, the
    store's secrets); long enough that Airflow warns about none of them."""
    return {
        "jwt_secret": secrets.token_urlsafe(64),
        "secret_key": secrets.token_urlsafe(64),
        # Same format as cryptography's Fernet.generate_key(): 32 random bytes, urlsafe base64.
        "fernet_key": base64.urlsafe_b64encode(os.urandom(32)).decode(),
    }


def generate_password() -> str:
    return secrets.token_urlsafe(18)


def service_dotenv() -> str:
    """A new `.env` for docker-compose.yml: fresh secrets, the admin account, commented connection examples."""
    keys = generate_secrets()
    return f"""# DODAS on Airflow as a service: the settings and secrets docker-compose.yml reads.
# Written by `dodas service env`. Keep it private (chmod 600) and out of version control; back it up with the
# database: without AIRFLOW_FERNET_KEY the connections and the deployments' secrets cannot be decrypted.
AIRFLOW_UID={os.getuid() or 50000}
POSTGRES_USER=airflow
POSTGRES_PASSWORD={generate_password()}
POSTGRES_DB=airflow
DODAS_DB=dodas
AIRFLOW_FERNET_KEY={keys["fernet_key"]}
AIRFLOW_API_SECRET_KEY={keys["secret_key"]}
AIRFLOW_JWT_SECRET={keys["jwt_secret"]}
DODAS_LOCALCLOUD_TOKEN={secrets.token_urlsafe(32)}
{ADMIN_USER_VARIABLE}={ADMIN_USER}
{ADMIN_PASSWORD_VARIABLE}={generate_password()}
AIRFLOW_PARALLELISM=32
AIRFLOW_WORKER_CONCURRENCY=16

# Clouds tried in order for orchestrator API submissions and swept by the leak collector.
DODAS_CLOUDS=local
# Clouds and the identity provider are Airflow connections (README "Run it as a service"), for example:
{connection_examples()}
"""


CONNECTION_EXAMPLES: dict[str, dict[str, Any]] = {
    "AIRFLOW_CONN_OPENSTACK_DEFAULT": {
        "conn_type": "openstack",
        "host": "https://keystone.example.org:5000/v3",
        "login": "user",
        "password": "secret",
        "extra": {"project_name": "dodas", "user_domain_name": "Default", "region_name": "RegionOne"},
    },
    "AIRFLOW_CONN_AWS_DEFAULT": {
        "conn_type": "aws",
        "login": "AKIA...",
        "password": "secret",
        "extra": {"region_name": "eu-west-1"},
    },
    "AIRFLOW_CONN_DODAS_IAM": {
        "conn_type": "http",
        "host": "https://iam.example.org/",
        "login": "client-id",
        "password": "client-secret",
        "extra": {"audience": "dodas", "scopes": "openid profile offline_access", "group_claim": "groups"},
    },
}


def connection_examples() -> str:
    """Commented `.env` lines, one connection each as JSON in single quotes (compose's .env syntax)."""
    return "\n".join(f"# {name}='{json.dumps(conn)}'" for name, conn in CONNECTION_EXAMPLES.items())


def write_passwords_file(path: Path, user: str, password: str) -> None:
    """SimpleAuthManager's passwords file holding `user`'s password (other users' entries kept), mode 0600."""
    current: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    current[user] = password
    write_private_json(path, current)


def write_private_json(path: Path, data: Any) -> None:
    """Write atomically with mode 0600 (files may hold secrets)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2)
    os.replace(tmp, path)
