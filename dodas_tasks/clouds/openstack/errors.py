"""openstacksdk / keystoneauth exceptions → CloudError: retryable for 429, 5xx and network trouble; quota errors
become QuotaExceeded carrying the numbers the cloud gave (Nova, Neutron and Cinder word them differently)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from keystoneauth1 import exceptions as ks_exc
from openstack import exceptions as os_exc

from dodas_tasks.clouds.base import CloudError, QuotaExceeded

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_NOVA_QUOTA = re.compile(
    r"Quota exceeded for (?P<resource>[\w-]+): Requested (?P<requested>\d+), "
    r"but already used (?P<used>\d+) of (?P<limit>\d+)"
)
_CINDER_QUOTA = re.compile(
    r"Requested (?P<requested>\d+)G?, quota is (?P<limit>\d+)G? and (?P<used>\d+)G? has been consumed"
)


class OpenStackQuotaExceeded(QuotaExceeded):
    """QuotaExceeded with the cloud's numbers: which resource, how much was asked, used and allowed."""

    def __init__(self, message: str, resource: str, requested: int | None, used: int | None, limit: int | None) -> None:
        super().__init__(message, retryable=False)
        self.resource, self.requested, self.used, self.limit = resource, requested, used, limit


def status_of(exc: BaseException) -> int | None:
    for attr in ("status_code", "http_status"):
        value = getattr(exc, attr, None)
        if isinstance(value, int):
            return value
    return None


def quota_error(what: str, status: int | None, details: str) -> OpenStackQuotaExceeded | None:
    """The quota error in a 403/413/409 message, or None when the message is about something else."""
    if status not in (403, 409, 413) or "quota" not in details.lower():
        return None
    match = _NOVA_QUOTA.search(details) or _CINDER_QUOTA.search(details)
    if match:
        numbers = {k: int(v) for k, v in match.groupdict().items() if k != "resource"}
        resource = match.groupdict().get("resource") or "gigabytes"
        return OpenStackQuotaExceeded(
            f"{what}: quota exceeded for {resource}: requested {numbers['requested']}, "
            f"already used {numbers['used']} of {numbers['limit']}",
            resource,
            numbers["requested"],
            numbers["used"],
            numbers["limit"],
        )
    named = re.search(r"resources?: \[?'?([\w-]+)", details)
    resource = named.group(1) if named else "unknown"
    return OpenStackQuotaExceeded(f"{what}: quota exceeded: {details.strip()[:300]}", resource, None, None, None)


def translate(exc: BaseException, what: str) -> CloudError:
    """The CloudError for an SDK failure; the message names the operation and the cloud's own reason."""
    status = status_of(exc)
    details = str(getattr(exc, "details", None) or getattr(exc, "message", None) or exc)
    quota = quota_error(what, status, details)
    if quota is not None:
        return quota
    if isinstance(exc, ks_exc.Unauthorized) or status == 401:
        return CloudError(f"{what}: OpenStack refused the credentials (401); check the connection's auth settings")
    if status in RETRYABLE_STATUS:
        return CloudError(f"{what}: OpenStack answered {status}: {details[:300]}", retryable=True)
    if isinstance(exc, ks_exc.ConnectionError | ks_exc.RetriableConnectionFailure):
        return CloudError(f"{what}: cannot reach OpenStack: {type(exc).__name__}", retryable=True)
    if status is not None:
        return CloudError(f"{what}: OpenStack answered {status}: {details[:300]}")
    return CloudError(f"{what}: {type(exc).__name__}: {details[:300]}")


@contextmanager
def cloud_errors(what: str) -> Iterator[None]:
    """Run SDK calls; their exceptions leave as CloudError (our own CloudErrors pass unchanged)."""
    try:
        yield
    except CloudError:
        raise
    except (os_exc.SDKException, ks_exc.ClientException) as exc:
        raise translate(exc, what) from None
