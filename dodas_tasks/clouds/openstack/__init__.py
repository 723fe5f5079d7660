"""OpenStack sites behind the CloudDriver interface (openstacksdk through the Airflow openstack provider's hook)."""

from dodas_tasks.clouds.openstack.driver import CONN_ENV, DEFAULT_CONN_ID, OpenStackCloud

__all__ = ["CONN_ENV", "DEFAULT_CONN_ID", "OpenStackCloud"]
