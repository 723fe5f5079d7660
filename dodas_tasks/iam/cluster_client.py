"""The cluster's own IAM client, registered for one deployment (RFC 7591) and deleted with it (RFC 7592).

Framework services exchange the owner's token themselves (DODAS's TTS proxy cache, the HTCondor schedd), so they
need a client id and secret. Users of the original DODAS created that client by hand and pasted its secret into
the template; here each cluster gets a client of its own that can be revoked alone and leaves nothing at the IdP.
The client is kept encrypted in the deployment's options; its secret never reaches a log (the deployer masks it).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from dodas_tasks import crypto
from dodas_tasks.iam.client import TOKEN_EXCHANGE_GRANT, IamClient
from dodas_tasks.naming import iam_client_name
from dodas_tasks.store import DeploymentRecord, Store

OPTION = "iam_cluster_client"  # deployment option holding the registered client (Fernet token of its JSON)
SCOPES = "openid profile offline_access"  # what the proxy cache asks for when it exchanges the owner's token


@dataclass(frozen=True)
class ClusterClient:
    """A registered client and what deletes it; repr shows neither secret."""

    client_id: str
    client_secret: str = field(repr=False)
    registration_uri: str
    registration_token: str = field(repr=False)


def stored_client(dep: DeploymentRecord) -> ClusterClient | None:
    """The deployment's registered client, decrypted; None before registration or after deletion."""
    sealed = dep.options.get(OPTION)
    return ClusterClient(**json.loads(crypto.decrypt(sealed))) if sealed else None


def ensure_cluster_client(store: Store, deployment_id: str, iam: IamClient) -> ClusterClient:
    """The deployment's client, registered on first use. Two tasks racing both register, one keeps its client in
    the store and the other deletes its own at the IdP: a retry adopts, never duplicates."""
    existing = stored_client(store.get_deployment(deployment_id))
    if existing is not None:
        return existing
    answer = iam.register_client(
        {
            "client_name": iam_client_name(deployment_id),
            "grant_types": [TOKEN_EXCHANGE_GRANT, "refresh_token"],
            "scope": SCOPES,
            "token_endpoint_auth_method": "client_secret_basic",
        }
    )
    ours = ClusterClient(
        answer["client_id"],
        answer["client_secret"],
        answer["registration_client_uri"],
        answer["registration_access_token"],
    )
    sealed = crypto.encrypt(json.dumps(asdict(ours)))
    kept = stored_client(
        store.modify_deployment(
            deployment_id, lambda d: {} if d.options.get(OPTION) else {"options": {**d.options, OPTION: sealed}}
        )
    )
    assert kept is not None
    if kept.client_id != ours.client_id:
        iam.delete_client(ours.registration_uri, ours.registration_token)
        return kept
    store.add_event(deployment_id, "token", f"IAM client {ours.client_id} registered for the cluster's services")
    return ours


def release_cluster_client(store: Store, deployment_id: str, iam: IamClient) -> str | None:
    """Delete the deployment's client at the IdP, then forget it; returns its id (None when there was none)."""
    client = stored_client(store.get_deployment(deployment_id))
    if client is None:
        return None
    existed = iam.delete_client(client.registration_uri, client.registration_token)
    store.modify_deployment(deployment_id, lambda d: {"options": {k: v for k, v in d.options.items() if k != OPTION}})
    what = "deleted at the IdP" if existed else "already gone at the IdP"
    store.add_event(deployment_id, "token", f"IAM client {client.client_id} of the cluster {what}")
    return client.client_id
