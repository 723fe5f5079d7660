"""Whose identity a deployment's cloud calls use: the site's service credentials, or the deployment's owner.

A site says it in its Airflow connection (clouds.site_auth). For a delegated deployment the owner's fresh access
tokens (the IAM layer's token source, a plain callable here) go down to the driver with every driver made, so on a
site that acts as the owners every call of every task — provision, scale, heal, undeploy, leak collection — is the
owner's. A deployment nobody delegated cannot act as anyone: such sites refuse it at submission.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from dodas_tasks.clouds.base import CloudDriver, OwnerIdentity, get_driver, site_auth
from dodas_tasks.store import DeploymentRecord

AccessTokens = Callable[[], str]  # a fresh, valid access token of the owner at each call (iam.TokenSource)
TokensFor = Callable[[DeploymentRecord], AccessTokens | None]  # a deployment's owner tokens, None if not delegated


def owner_identity(dep: DeploymentRecord, tokens: AccessTokens | None) -> OwnerIdentity | None:
    """The owner as drivers know them, or None for a deployment without delegated tokens."""
    if tokens is None:
        return None
    return OwnerIdentity(issuer=dep.owner_issuer, subject=dep.owner_subject, delegation=dep.id, access_token=tokens)


def driver_for(dep: DeploymentRecord, tokens: AccessTokens | None, cloud: str | None = None) -> CloudDriver:
    """The driver of the deployment's cloud (or `cloud`), acting as its owner where the site says so."""
    return get_driver(cloud or dep.cloud, owner=owner_identity(dep, tokens))


def clouds_needing_an_owner(clouds: Iterable[str]) -> dict[str, str]:
    """Of `clouds`, those whose site acts as each deployment's owner, with how (for the refusal's reason)."""
    found = {}
    for cloud in clouds:
        auth = site_auth(cloud)
        if auth.acts_as_owner:
            found[cloud] = auth.description
    return found
