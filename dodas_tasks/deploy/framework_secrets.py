"""A deployment's own secret for each framework that authenticates its members with one (Spark: spark.authenticate).

Generated on the first deploy, kept encrypted in the deployment's options like the cluster's IAM client, handed to
the framework's node scripts by the deployer (masked in logs). Outputs never hold it: they are shown in Airflow's UI
(task results) and posted to callbacks. Its owner reads it through the orchestrator API, which adds it to the
deployment's outputs for the owner only (`owner_outputs`).
"""

from __future__ import annotations

import secrets

from dodas_tasks import crypto
from dodas_tasks.store import DeploymentRecord, Store

OPTION = "framework_secrets"  # deployment option: framework name -> Fernet token of its secret
SECRET_BYTES = 32


def framework_secret(dep: DeploymentRecord, framework: str) -> str | None:
    """The framework's secret of this deployment, decrypted; None before its first deploy."""
    sealed = (dep.options.get(OPTION) or {}).get(framework)
    return crypto.decrypt(sealed) if sealed else None


def ensure_framework_secret(store: Store, deployment_id: str, framework: str) -> str:
    """The framework's secret, generated and stored on first use; two tasks racing keep the one stored first."""
    existing = framework_secret(store.get_deployment(deployment_id), framework)
    if existing is not None:
        return existing
    clear = secrets.token_urlsafe(SECRET_BYTES)
    sealed = crypto.encrypt(clear)

    def keep_first(dep: DeploymentRecord) -> dict[str, object]:
        stored = dict(dep.options.get(OPTION) or {})
        if framework in stored:
            return {}
        return {"options": {**dep.options, OPTION: {**stored, framework: sealed}}}

    kept = framework_secret(store.modify_deployment(deployment_id, keep_first), framework)
    assert kept is not None
    if kept == clear:
        store.add_event(deployment_id, "secret", f"{framework}: a secret of the deployment's own generated")
    return kept


def all_framework_secrets(dep: DeploymentRecord) -> dict[str, str]:
    """Every framework secret of the deployment, decrypted (for masking them in logs)."""
    return {name: crypto.decrypt(sealed) for name, sealed in (dep.options.get(OPTION) or {}).items()}


def owner_outputs(dep: DeploymentRecord) -> dict[str, str]:
    """What only the deployment's owner is shown besides its outputs: `<framework>_secret` for each framework
    secret (e.g. spark_standalone_secret, the spark.authenticate.secret a driver outside the master needs)."""
    return {f"{name.replace('-', '_')}_secret": value for name, value in all_framework_secrets(dep).items()}
