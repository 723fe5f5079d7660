"""AWS errors in the driver vocabulary: throttling/5xx are retryable, limits are QuotaExceeded with AWS's numbers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
)

from dodas_tasks.clouds.base import CloudError, QuotaExceeded

RETRYABLE_CODES = frozenset(
    {
        "RequestLimitExceeded",
        "Throttling",
        "ThrottlingException",
        "TooManyRequestsException",
        "ServiceUnavailable",
        "Unavailable",
        "InternalError",
        "InternalFailure",
        "RequestTimeout",
        "RequestTimeoutException",
        "PriorRequestNotComplete",
        "InsufficientInstanceCapacity",  # capacity, not quota: AWS advises trying again
        "InsufficientAddressCapacity",
    }
)
QUOTA_CODES = frozenset(
    {
        "InstanceLimitExceeded",
        "VcpuLimitExceeded",
        "MaxSpotInstanceCountExceeded",
        "VolumeLimitExceeded",
        "AddressLimitExceeded",
        "SecurityGroupLimitExceeded",
        "RulesPerSecurityGroupLimitExceeded",
        "ResourceLimitExceeded",
        "InsufficientFreeAddressesInSubnet",
    }
)
_TRANSIENT = (EndpointConnectionError, ConnectionClosedError, ConnectTimeoutError, ReadTimeoutError)


def error_code(exc: BaseException) -> str:
    """The AWS error code a translated CloudError came from ("" when it did not come from AWS)."""
    return str(getattr(exc, "aws_code", ""))


def translate(exc: BaseException, what: str, conn_id: str) -> CloudError:
    """A CloudError naming the call and AWS's code and message (never the request, which may hold user data)."""
    error = _translate(exc, what, conn_id)
    if isinstance(exc, ClientError):
        error.aws_code = str(exc.response.get("Error", {}).get("Code", ""))  # type: ignore[attr-defined]
    return error


def _translate(exc: BaseException, what: str, conn_id: str) -> CloudError:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "Unknown"))
        message = f"EC2 {what}: {code}: {error.get('Message', '')}".rstrip(": ")
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if code in QUOTA_CODES:
            return QuotaExceeded(message)
        if code in ("AuthFailure", "UnauthorizedOperation", "InvalidClientTokenId", "SignatureDoesNotMatch"):
            return CloudError(f"{message} (check the credentials of Airflow connection {conn_id!r})")
        return CloudError(message, retryable=code in RETRYABLE_CODES or status >= 500 or status == 429)
    if isinstance(exc, _TRANSIENT):
        return CloudError(f"EC2 {what}: {type(exc).__name__}: {exc}", retryable=True)
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return CloudError(f"EC2 {what}: no usable AWS credentials in Airflow connection {conn_id!r}")
    return CloudError(f"EC2 {what}: {type(exc).__name__}: {exc}")


@contextmanager
def aws_errors(what: str, conn_id: str) -> Iterator[None]:
    """Run a boto3 call, turning its exceptions into CloudError/QuotaExceeded."""
    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        raise translate(exc, what, conn_id) from None
