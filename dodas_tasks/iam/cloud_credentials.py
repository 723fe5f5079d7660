"""Cloud credentials from the owner's OIDC tokens (the token translation service's job), for the cloud drivers.

OpenStack: Keystone OS-FEDERATION with an OIDC access token (keystoneauth's v3oidcaccesstoken), identity
provider and protocol per site; each re-authentication takes a fresh access token from the token source.
AWS: STS AssumeRoleWithWebIdentity (role per connection) into botocore refreshable credentials, renewed before
they expire with a fresh access token each time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

AccessTokenSource = Callable[[], str]  # a TokenSource, or any callable returning a valid access token


@dataclass(frozen=True)
class KeystoneSite:
    """An OpenStack site federated with the IdP (names as configured in its Keystone)."""

    auth_url: str  # the identity v3 URL, e.g. https://keystone.example.org:5000/v3
    identity_provider: str  # Keystone's name for the IdP, e.g. "dodas-iam"
    protocol: str = "openid"  # "openid" or "oidc", as the site's mapping says
    project_id: str | None = None
    project_name: str | None = None
    project_domain_name: str | None = "Default"  # needed with project_name (names are unique per domain)
    region_name: str | None = None


def keystone_oidc_auth(site: KeystoneSite, access_token: str) -> dict[str, Any]:
    """openstacksdk connection arguments: ``openstack.connect(**keystone_oidc_auth(site, token))``."""
    auth: dict[str, Any] = {
        "auth_url": site.auth_url,
        "identity_provider": site.identity_provider,
        "protocol": site.protocol,
        "access_token": access_token,
    }
    for name in ("project_id", "project_name", "project_domain_name"):
        if getattr(site, name):
            auth[name] = getattr(site, name)
    args: dict[str, Any] = {"auth_type": "v3oidcaccesstoken", "auth": auth}
    if site.region_name:
        args["region_name"] = site.region_name
    return args


def keystone_session(site: KeystoneSite, tokens: AccessTokenSource) -> Any:
    """A keystoneauth Session whose re-authentications (Keystone token expiry) use a fresh OIDC access token.

    Pass it to openstacksdk as ``openstack.connection.Connection(session=..., region_name=...)``.
    """
    from keystoneauth1 import session as ks_session
    from keystoneauth1.identity.v3 import OidcAccessToken

    class _FreshOidcAccessToken(OidcAccessToken):
        def get_unscoped_auth_ref(self, session: Any) -> Any:
            self.access_token = tokens()
            return super().get_unscoped_auth_ref(session)

    auth = _FreshOidcAccessToken(
        auth_url=site.auth_url,
        identity_provider=site.identity_provider,
        protocol=site.protocol,
        access_token="",
        project_id=site.project_id,
        project_name=site.project_name,
        project_domain_name=site.project_domain_name,
    )
    return ks_session.Session(auth=auth)


@dataclass(frozen=True)
class AwsWebIdentity:
    """Where and as whom to assume a role with the owner's token (from an Airflow aws connection)."""

    role_arn: str
    endpoint_url: str | None = None  # STS endpoint; None = AWS's
    region_name: str = "us-east-1"
    session_name: str = "dodas"
    duration_s: int = 3600


def assume_role_with_web_identity(identity: AwsWebIdentity, access_token: str) -> dict[str, Any]:
    """One STS call: temporary credentials as botocore metadata (access_key, secret_key, token, expiry_time)."""
    import boto3
    import botocore.exceptions
    from botocore import UNSIGNED
    from botocore.config import Config

    from dodas_tasks.iam.errors import IdpError, IdpUnreachable

    sts = boto3.client(
        "sts",
        endpoint_url=identity.endpoint_url,
        region_name=identity.region_name,
        config=Config(signature_version=UNSIGNED, retries={"max_attempts": 3}),
    )
    try:
        answer = sts.assume_role_with_web_identity(
            RoleArn=identity.role_arn,
            RoleSessionName=identity.session_name[:64],
            WebIdentityToken=access_token,
            DurationSeconds=identity.duration_s,
        )
    except botocore.exceptions.ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "?")
        raise IdpError(f"STS AssumeRoleWithWebIdentity for {identity.role_arn} refused: {code}") from None
    except botocore.exceptions.BotoCoreError as exc:
        raise IdpUnreachable(f"STS at {identity.endpoint_url or 'AWS'}: {type(exc).__name__}") from None
    creds = answer["Credentials"]
    expiration = creds["Expiration"]
    return {
        "access_key": creds["AccessKeyId"],
        "secret_key": creds["SecretAccessKey"],
        "token": creds["SessionToken"],
        "expiry_time": expiration.isoformat() if isinstance(expiration, datetime) else str(expiration),
    }


def aws_session(identity: AwsWebIdentity, tokens: AccessTokenSource, endpoint_region: str | None = None) -> Any:
    """A boto3 Session on credentials that renew themselves (STS again, fresh access token) before they expire."""
    import boto3
    import botocore.session
    from botocore.credentials import RefreshableCredentials

    def fetch() -> dict[str, Any]:
        return assume_role_with_web_identity(identity, tokens())

    credentials = RefreshableCredentials.create_from_metadata(
        metadata=fetch(), refresh_using=fetch, method="assume-role-with-web-identity"
    )
    core = botocore.session.get_session()
    core._credentials = credentials  # botocore has no public setter for refreshable credentials
    return boto3.Session(botocore_session=core, region_name=endpoint_region or identity.region_name)
