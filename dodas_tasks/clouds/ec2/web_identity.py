"""EC2 as the deployment's owner: STS AssumeRoleWithWebIdentity with the owner's OIDC access token.

The role (per site, connection extra `role_arn`) trusts the IdP; each owner gets a role session named after
their subject, in botocore refreshable credentials that call STS again, with a fresh access token, before they
expire. The STS call itself is unsigned: the token is the credential.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import boto3
import botocore.exceptions
import botocore.session
from botocore import UNSIGNED
from botocore.config import Config
from botocore.credentials import RefreshableCredentials

from dodas_tasks.clouds.base import CloudError

AccessTokenSource = Callable[[], str]
DEFAULT_DURATION_S = 3600


@dataclass(frozen=True)
class AwsWebIdentity:
    """Where and as whom to assume a role with the owner's token (from an Airflow aws connection)."""

    role_arn: str
    endpoint_url: str | None = None  # STS endpoint; None = AWS's
    region_name: str = "us-east-1"
    session_name: str = "dodas"
    duration_s: int = DEFAULT_DURATION_S


def web_identity_of(conn_id: str, extra: dict[str, Any], session_name: str) -> AwsWebIdentity:
    """STS settings from an aws connection's extra: role_arn (required), sts_endpoint_url or endpoint_url,
    region_name, duration_seconds."""
    role_arn = extra.get("role_arn")
    if not role_arn:
        raise CloudError(
            f"aws connection {conn_id!r} acts as each deployment's owner but has no role_arn in its extra: add the "
            'role that the IdP\'s tokens may assume, e.g. {"role_arn": "arn:aws:iam::123456789012:role/dodas"}'
        )
    return AwsWebIdentity(
        role_arn=role_arn,
        endpoint_url=extra.get("sts_endpoint_url") or extra.get("endpoint_url"),
        region_name=extra.get("region_name") or "us-east-1",
        session_name=session_name,
        duration_s=int(extra.get("duration_seconds") or DEFAULT_DURATION_S),
    )


def assume_role_with_web_identity(identity: AwsWebIdentity, access_token: str) -> dict[str, Any]:
    """One STS call: temporary credentials as botocore metadata (access_key, secret_key, token, expiry_time)."""
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
        raise CloudError(f"STS AssumeRoleWithWebIdentity for {identity.role_arn} refused: {code}") from None
    except botocore.exceptions.BotoCoreError as exc:
        where = identity.endpoint_url or "AWS"
        raise CloudError(f"STS at {where}: {type(exc).__name__}", retryable=True) from None
    creds = answer["Credentials"]
    expiration = creds["Expiration"]
    return {
        "access_key": creds["AccessKeyId"],
        "secret_key": creds["SecretAccessKey"],
        "token": creds["SessionToken"],
        "expiry_time": expiration.isoformat() if isinstance(expiration, datetime) else str(expiration),
    }


def web_identity_session(identity: AwsWebIdentity, tokens: AccessTokenSource) -> boto3.Session:
    """A boto3 Session on credentials that renew themselves (STS again, fresh access token) before they expire."""

    def fetch() -> dict[str, Any]:
        return assume_role_with_web_identity(identity, tokens())

    credentials = RefreshableCredentials.create_from_metadata(
        metadata=fetch(), refresh_using=fetch, method="assume-role-with-web-identity"
    )
    core = botocore.session.get_session()
    core._credentials = credentials  # botocore has no public setter for refreshable credentials
    return boto3.Session(botocore_session=core, region_name=identity.region_name)
