"""The AWS EC2 driver (boto3 through the Amazon provider's EC2Hook and an Airflow `aws` connection).

`EC2Driver` is imported lazily so that `get_driver("local")` never pays for boto3.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dodas_tasks.clouds.ec2.driver import EC2Driver

__all__ = ["EC2Driver"]


def __getattr__(name: str) -> Any:
    if name == "EC2Driver":
        from dodas_tasks.clouds.ec2.driver import EC2Driver

        return EC2Driver
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
