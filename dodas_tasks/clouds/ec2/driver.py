"""EC2Driver: the CloudDriver interface on boto3 (via the Amazon provider's EC2Hook and an Airflow connection).

Every instance is in its deployment's security group (all traffic between its members) and its compute group's
(SSH and the template's published ports); an availability zone launches it in that zone's default subnet.

Crash safety: every RunInstances carries a ClientToken derived from (deployment, group, index, attempt), so a
retried call returns the instance the first one made. Security groups are named from their rules, volumes are
EBS block-device mappings deleted with their instance, public IPs are auto-assigned (no Elastic IP to leak).
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, WaiterError
from tenacity import retry, retry_if_exception, stop_after_delay, wait_exponential

from dodas_tasks.clouds.base import (
    ACTIVE,
    BUILD,
    DEFAULT_CONCURRENCY,
    DELETED,
    ERROR,
    CloudDriver,
    CloudError,
    OwnerIdentity,
    QuotaRoom,
    Server,
    ServerSpec,
    SiteAuth,
    SshGateway,
    gateway_from_extra,
)
from dodas_tasks.clouds.ec2 import client as clients
from dodas_tasks.clouds.ec2 import resources
from dodas_tasks.clouds.ec2.catalog import DEFAULT_IMAGE_OWNERS, instance_types, named_type, resolve_image
from dodas_tasks.clouds.ec2.client import Ec2Connection, conn_id_from_env, connect
from dodas_tasks.clouds.ec2.errors import aws_errors, error_code, translate
from dodas_tasks.clouds.ec2.resources import ProjectResource
from dodas_tasks.clouds.ec2.rules import (
    Rule,
    deployment_group_name,
    ingress_rules,
    missing_port_rules,
    missing_self_rule,
    security_group_name,
)
from dodas_tasks.clouds.ec2.tokens import client_token, slot_key
from dodas_tasks.clouds.sizing import choose_flavor
from dodas_tasks.naming import (
    PREFIX,
    TAG_ATTEMPT,
    TAG_DEPLOYMENT,
    TAG_GROUP,
    TAG_PROJECT,
    deployment_in_name,
    key_pair_name,
)
from dodas_tasks.settings import PROJECT_TAG

LIVE_STATES = ["pending", "running", "stopping", "stopped"]
_DEAD = {"shutting-down", "terminated"}
_STATUS = {"pending": BUILD, "running": ACTIVE, "shutting-down": DELETED, "terminated": DELETED}
_VOLUME_TYPES = {"gp2", "gp3", "io1", "io2", "st1", "sc1", "standard"}
TERMINATION_POLL_S = 5  # the instance_terminated waiter's delay between two DescribeInstances
_TOKEN_CHAIN = 8  # at most this many dead instances per slot before giving up
_attempted: set[str] = set()  # slots this process already sent a RunInstances for (retries check first)
_attempted_lock = threading.Lock()


class EC2Driver(CloudDriver):
    """AWS EC2 (or any endpoint speaking its API, e.g. moto) through Airflow connection `aws_conn_id`.

    Settings not given here come from the connection extra: `dodas_default_image` (used when the template names
    no image), `dodas_subnet_id` (else the region's default subnet), `dodas_image_owners`, `dodas_max_concurrency`,
    `dodas_auth` (`owner`: act as the deployment's `owner` through STS web identity, see client.py).
    """

    name = "ec2"

    def __init__(
        self,
        aws_conn_id: str | None = None,
        max_concurrency: int | None = None,
        default_image: str | None = None,
        subnet_id: str | None = None,
        termination_timeout_s: float = 600.0,
        owner: OwnerIdentity | None = None,
    ) -> None:
        self.conn_id = aws_conn_id or conn_id_from_env()
        self._owner = owner
        self._max_concurrency = max_concurrency
        self._default_image = default_image
        self._subnet_id = subnet_id
        self.termination_timeout_s = termination_timeout_s
        self._conn: Ec2Connection | None = None
        self._lock = threading.Lock()
        self._group_locks: dict[str, threading.Lock] = {}
        self._groups: dict[str, str] = {}  # security group name -> id, ensured by this driver
        self._subnets: dict[str | None, dict[str, str]] = {}  # by availability zone (None: the default one)

    @classmethod
    def site_auth(cls, aws_conn_id: str | None = None) -> SiteAuth:
        """How the site authenticates (the connection's extra dodas_auth), without calling AWS."""
        return clients.site_auth(aws_conn_id or conn_id_from_env())

    # -- plumbing ---------------------------------------------------------------------------------------------

    @property
    def max_concurrency(self) -> int:  # type: ignore[override]
        """Parallel calls allowed: option, else connection extra `dodas_max_concurrency`, else the default."""
        if self._max_concurrency is None:
            self._max_concurrency = int(self.conn.extra.get("dodas_max_concurrency") or DEFAULT_CONCURRENCY)
        return self._max_concurrency

    def ssh_gateway(self) -> SshGateway | None:
        """The site's bastion from the connection's extra `dodas_ssh_bastion`, if it has one."""
        return gateway_from_extra(self.conn.extra, self.conn_id)

    @property
    def conn(self) -> Ec2Connection:
        if self._conn is None:
            self._conn = connect(self.conn_id, self._owner)
        return self._conn

    @property
    def client(self) -> Any:
        return self.conn.client

    def _call(self, what: str, **params: Any) -> Any:
        method = getattr(self.client, re.sub(r"(?<!^)(?=[A-Z])", "_", what).lower())
        with aws_errors(what, self.conn_id):
            return method(**params)

    # -- servers ----------------------------------------------------------------------------------------------

    def create_server(self, spec: ServerSpec) -> Server:
        image = resolve_image(self.client, self._image_ref(spec.image), self.conn_id, self._image_owners())
        if spec.flavor.instance_type:
            flavor = named_type(self.client, spec.flavor.instance_type, self.conn_id)
        else:  # the smallest fitting type; disk never rules one out (the root volume is sized below)
            options = instance_types(self.client, image.architecture, self.conn_id)
            flavor = choose_flavor(options, replace(spec.flavor, disk_gb=0), "EC2")
        rules = ingress_rules(spec.ports)
        devices = self._block_devices(spec, image)  # validates volumes before anything is created
        subnet = self._default_subnet(spec.availability_zone)
        group_ids = self._security_groups(spec, rules, subnet["VpcId"])
        tags = _aws_tags({**spec.tags, "Name": spec.name})
        params: dict[str, Any] = {
            "ImageId": image.id,
            "InstanceType": flavor.name,
            "MinCount": 1,
            "MaxCount": 1,
            "KeyName": spec.key_name,
            "NetworkInterfaces": [
                {
                    "DeviceIndex": 0,
                    "SubnetId": subnet["SubnetId"],
                    "Groups": group_ids,
                    "AssociatePublicIpAddress": spec.network.upper() == "PUBLIC",
                    "DeleteOnTermination": True,
                }
            ],
            "TagSpecifications": [{"ResourceType": "instance", "Tags": tags}]
            + ([{"ResourceType": "volume", "Tags": tags}] if devices else []),
        }
        if devices:
            params["BlockDeviceMappings"] = devices
        if spec.availability_zone:
            params["Placement"] = {"AvailabilityZone": spec.availability_zone}
        if spec.user_data:
            params["UserData"] = spec.user_data
        return self._run_idempotent(spec, params)

    def _run_idempotent(self, spec: ServerSpec, params: dict[str, Any]) -> Server:
        """RunInstances along the slot's token chain: a token spent on a dead instance moves to the next one.

        A slot this process already tried is looked up by its tags first, which covers endpoints that ignore
        ClientToken (moto does) for in-process retries; across processes the provisioner adopts by tag.
        """
        slot = slot_key(spec.tags, spec.name)
        with _attempted_lock:
            retried = slot in _attempted
            _attempted.add(slot)
        if retried:
            live = self.list_servers(spec.tags)
            if live:
                return live[0]
        for link in range(_TOKEN_CHAIN):
            try:
                reply = self._call("RunInstances", ClientToken=client_token(slot, link), **params)
            except CloudError as exc:
                if error_code(exc).startswith("Idempotent"):  # e.g. IdempotentParameterMismatch
                    continue  # the token was spent with other parameters (a previous life of this slot)
                raise
            instance = reply["Instances"][0]
            if instance["State"]["Name"] in _DEAD:
                continue  # the token belongs to an instance that has since died: take the next one
            return _to_server(instance)
        raise CloudError(f"{spec.name}: {_TOKEN_CHAIN} earlier instances of this slot died; set a new {TAG_ATTEMPT}")

    def get_server(self, server_id: str) -> Server | None:
        instance = self._describe_instance(server_id)
        return _to_server(instance) if instance else None

    def list_servers(self, tags: dict[str, str]) -> list[Server]:
        filters = [{"Name": f"tag:{k}", "Values": [v]} for k, v in tags.items()]
        filters.append({"Name": "instance-state-name", "Values": LIVE_STATES})
        return [_to_server(i) for i in self._instances(filters)]

    def delete_server(self, server_id: str) -> None:
        """Terminate; the last instance of a DODAS security group also removes the group."""
        instance = self._describe_instance(server_id)
        if instance is None:
            return
        if instance["State"]["Name"] != "terminated":
            try:
                self._call("TerminateInstances", InstanceIds=[server_id])
            except CloudError as exc:
                if not error_code(exc).startswith("InvalidInstanceID"):
                    raise
        groups = {g["GroupId"]: g["GroupName"] for g in instance.get("SecurityGroups", [])}
        for nic in instance.get("NetworkInterfaces", []):
            groups.update({g["GroupId"]: g["GroupName"] for g in nic.get("Groups", [])})
        ours = {gid: name for gid, name in groups.items() if name.startswith(PREFIX)}
        tags = _tags_of(instance)
        unused = [gid for gid, name in ours.items() if not self._still_used(tags, name)]
        if unused:
            self._wait_terminated(server_id)
            for group_id in unused:
                self.delete_security_group(group_id)

    def _describe_instance(self, server_id: str) -> dict[str, Any] | None:
        try:
            reply = self._call("DescribeInstances", InstanceIds=[server_id])
        except CloudError as exc:
            if error_code(exc).startswith("InvalidInstanceID"):
                return None
            raise
        return next((i for r in reply["Reservations"] for i in r["Instances"]), None)

    def _instances(self, filters: list[dict[str, Any]]) -> list[dict[str, Any]]:
        with aws_errors("DescribeInstances", self.conn_id):
            pages = self.client.get_paginator("describe_instances").paginate(Filters=filters)
            return [i for page in pages for r in page["Reservations"] for i in r["Instances"]]

    def _still_used(self, tags: dict[str, str], group_name: str) -> bool:
        """Whether live instances still need a security group of a terminated one: the deployment's group while the
        deployment has some, a compute group's while that group has some. Asked by tag, not by group id: that
        filter misses groups set on network interfaces on some endpoints (moto)."""
        if TAG_DEPLOYMENT not in tags or TAG_GROUP not in tags:
            return True  # not a DODAS group member: never delete its security groups
        scope = [TAG_DEPLOYMENT]
        if group_name != deployment_group_name(tags[TAG_DEPLOYMENT]):
            scope.append(TAG_GROUP)
        filters = [{"Name": f"tag:{k}", "Values": [tags[k]]} for k in scope]
        return bool(self._instances([*filters, {"Name": "instance-state-name", "Values": LIVE_STATES}]))

    def _wait_terminated(self, server_id: str) -> None:
        """Security groups can only go once their instances are terminated (not just shutting down)."""
        config = {
            "Delay": TERMINATION_POLL_S,
            "MaxAttempts": max(1, math.ceil(self.termination_timeout_s / TERMINATION_POLL_S)),
        }
        try:
            self.client.get_waiter("instance_terminated").wait(InstanceIds=[server_id], WaiterConfig=config)
        except WaiterError as exc:  # out of attempts, or an answer that is not an instance state
            last = exc.last_response or {}
            if "Error" in last:
                if str(last["Error"].get("Code", "")).startswith("InvalidInstanceID"):
                    return  # gone altogether
                raise translate(ClientError(last, "DescribeInstances"), "DescribeInstances", self.conn_id) from None
            states = sorted({i["State"]["Name"] for r in last.get("Reservations", []) for i in r["Instances"]})
            if states:
                raise CloudError(f"instance {server_id} still {', '.join(states)}", retryable=True) from None
        except BotoCoreError as exc:  # endpoint unreachable and the like
            raise translate(exc, "DescribeInstances", self.conn_id) from None

    # -- key pairs ----------------------------------------------------------------------------------------------

    def import_key_pair(self, name: str, public_key: str) -> None:
        tags = [{"Key": TAG_PROJECT, "Value": PROJECT_TAG}]
        deployment = deployment_in_name(name)
        if deployment is not None and name == key_pair_name(deployment):
            tags.append({"Key": TAG_DEPLOYMENT, "Value": deployment})
        try:
            self._call(
                "ImportKeyPair",
                KeyName=name,
                PublicKeyMaterial=public_key.encode(),
                TagSpecifications=[{"ResourceType": "key-pair", "Tags": tags}],
            )
            return
        except CloudError as exc:
            if error_code(exc) != "InvalidKeyPair.Duplicate":
                raise
        existing = self._call("DescribeKeyPairs", KeyNames=[name], IncludePublicKey=True)["KeyPairs"]
        stored = (existing[0].get("PublicKey") or "").split()[:2] if existing else []
        if stored and stored != public_key.split()[:2]:
            raise CloudError(f"key pair {name!r} already exists on EC2 with a different public key; delete it first")

    def delete_key_pair(self, name: str) -> None:
        try:
            self._call("DeleteKeyPair", KeyName=name)
        except CloudError as exc:
            if error_code(exc) != "InvalidKeyPair.NotFound":
                raise

    # -- security groups ----------------------------------------------------------------------------------------

    def _security_groups(self, spec: ServerSpec, rules: list[Rule], vpc_id: str) -> list[str]:
        """The deployment's group (when the server belongs to one) and the compute group's, ensured."""
        group_tags = {k: spec.tags[k] for k in (TAG_DEPLOYMENT, TAG_GROUP) if k in spec.tags}
        name = security_group_name(spec.tags, spec.name, rules)
        owner = spec.tags.get(TAG_DEPLOYMENT, spec.name)
        ports = self._ensure_group(
            name, vpc_id, group_tags, f"DODAS {owner} ports", lambda group: missing_port_rules(group, rules)
        )
        deployment = spec.tags.get(TAG_DEPLOYMENT)
        if deployment is None:
            return [ports]
        shared = self._ensure_group(
            deployment_group_name(deployment),
            vpc_id,
            {TAG_DEPLOYMENT: deployment},
            f"DODAS {deployment}: its VMs reach each other",
            missing_self_rule,
        )
        return [shared, ports]

    def _ensure_group(
        self,
        name: str,
        vpc_id: str,
        tags: dict[str, str],
        description: str,
        missing: Callable[[dict[str, Any]], list[dict[str, Any]]],
    ) -> str:
        """A security group created once and given the IpPermissions `missing` says it lacks (a crash may have left
        it without some)."""
        with self._lock:
            lock = self._group_locks.setdefault(name, threading.Lock())
        with lock:
            if name in self._groups:
                return self._groups[name]
            group = self._find_group(name, vpc_id)
            if group is None:
                all_tags = {TAG_PROJECT: PROJECT_TAG, "Name": name, **tags}
                try:
                    self._call(
                        "CreateSecurityGroup",
                        GroupName=name,
                        Description=description,
                        VpcId=vpc_id,
                        TagSpecifications=[
                            {
                                "ResourceType": "security-group",
                                "Tags": [{"Key": k, "Value": v} for k, v in all_tags.items()],
                            }
                        ],
                    )
                except CloudError as exc:
                    if error_code(exc) != "InvalidGroup.Duplicate":
                        raise
                group = self._find_group(name, vpc_id)
                if group is None:
                    raise CloudError(f"security group {name} vanished right after creation", retryable=True)
            permissions = missing(group)
            if permissions:
                try:
                    self._call("AuthorizeSecurityGroupIngress", GroupId=group["GroupId"], IpPermissions=permissions)
                except CloudError as exc:
                    if error_code(exc) != "InvalidPermission.Duplicate":
                        raise
            self._groups[name] = group["GroupId"]
            return group["GroupId"]

    def _find_group(self, name: str, vpc_id: str) -> dict[str, Any] | None:
        filters = [{"Name": "group-name", "Values": [name]}, {"Name": "vpc-id", "Values": [vpc_id]}]
        groups = self._call("DescribeSecurityGroups", Filters=filters)["SecurityGroups"]
        return groups[0] if groups else None

    def delete_security_group(self, group_id: str, timeout_s: float = 120.0) -> None:
        """Delete, retrying while EC2 still sees a (terminating) instance in it; unknown groups are fine."""

        @retry(
            retry=retry_if_exception(lambda e: error_code(e) == "DependencyViolation"),
            stop=stop_after_delay(timeout_s),
            wait=wait_exponential(multiplier=1.0, exp_base=1.5, max=10.0),  # 1, 1.5, 2.25 … 10 s
            reraise=True,
        )
        def delete() -> None:
            self._call("DeleteSecurityGroup", GroupId=group_id)

        try:
            delete()
        except CloudError as exc:
            if error_code(exc) != "InvalidGroup.NotFound":
                in_use = error_code(exc) == "DependencyViolation"
                raise CloudError(str(exc), retryable=exc.retryable or in_use) from None
        with self._lock:
            self._groups = {n: g for n, g in self._groups.items() if g != group_id}

    # -- quota ------------------------------------------------------------------------------------------------

    def quota_room(self) -> QuotaRoom | None:
        """The account attribute max-instances less the instances pending or running (all of the account's)."""
        reply = self._call("DescribeAccountAttributes", AttributeNames=["max-instances"])
        values = [
            value["AttributeValue"]
            for attribute in reply.get("AccountAttributes", [])
            if attribute.get("AttributeName") == "max-instances"
            for value in attribute.get("AttributeValues", [])
        ]
        if not values or not str(values[0]).isdigit():
            return None
        limit = int(values[0])
        in_use = len(self._instances([{"Name": "instance-state-name", "Values": ["pending", "running"]}]))
        return QuotaRoom(servers=max(0, limit - in_use), source=f"EC2 max-instances {limit}, {in_use} in use")

    # -- leak collection ----------------------------------------------------------------------------------------

    def list_project_resources(self) -> list[ProjectResource]:
        """Instances, key pairs, security groups and volumes DODAS made here, with their deployment."""
        return resources.list_project_resources(self)

    def delete_resource(self, kind: str, resource_id: str) -> None:
        """Delete one resource from list_project_resources() (kind: instance/key_pair/security_group/volume)."""
        resources.delete_resource(self, kind, resource_id)

    # -- images, networks, disks -------------------------------------------------------------------------------

    def _image_ref(self, image: str) -> str:
        if image and image != "default":
            return image
        default = self._default_image or self.conn.extra.get("dodas_default_image")
        if not default:
            raise CloudError(
                "the template names no image: give the Compute node an os image (aws://<region>/ami-… or an AMI "
                f"name) or set dodas_default_image in the extra of Airflow connection {self.conn_id!r}"
            )
        return str(default)

    def _image_owners(self) -> tuple[str, ...]:
        owners = self.conn.extra.get("dodas_image_owners")
        return tuple(owners) if owners else DEFAULT_IMAGE_OWNERS

    def _default_subnet(self, zone: str | None = None) -> dict[str, str]:
        """The configured subnet, else the region's first default subnet (sorted by zone for stability); with a
        zone, the default subnet of that zone (a configured subnet must lie in it)."""
        with self._lock:  # held while asking: 20 threads creating at once ask once
            if zone not in self._subnets:
                self._subnets[zone] = self._find_subnet(zone)
            return self._subnets[zone]

    def _find_subnet(self, zone: str | None) -> dict[str, str]:
        subnet_id = self._subnet_id or self.conn.extra.get("dodas_subnet_id")
        if subnet_id:
            found = self._call("DescribeSubnets", SubnetIds=[subnet_id])["Subnets"]
        else:
            found = self._call("DescribeSubnets", Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
        if not found:
            raise CloudError(
                f"no subnet to launch in: the region has no default VPC; set dodas_subnet_id in the extra of "
                f"Airflow connection {self.conn_id!r}"
            )
        if zone is not None:
            zones = sorted({s.get("AvailabilityZone", "") for s in found})
            found = [s for s in found if s.get("AvailabilityZone") == zone]
            if not found:
                where = f"subnet {subnet_id} is in {', '.join(zones)}" if subnet_id else f"zones: {', '.join(zones)}"
                raise CloudError(f"availability zone {zone!r} has no subnet to launch in ({where})")
        subnet = min(found, key=lambda s: (s.get("AvailabilityZone", ""), s["SubnetId"]))
        return {"SubnetId": subnet["SubnetId"], "VpcId": subnet["VpcId"]}

    @staticmethod
    def _block_devices(spec: ServerSpec, image: Any) -> list[dict[str, Any]]:
        """Root disk grown to flavor.disk_gb, plus one EBS volume per BlockStorage (deleted with the instance).

        Volumes come from an optional `spec.volumes`: dicts or objects with name, size_gb, device, volume_type.
        """
        devices = []
        if spec.flavor.disk_gb and spec.flavor.disk_gb > image.root_size_gb:
            devices.append(
                {
                    "DeviceName": image.root_device,
                    "Ebs": {"VolumeSize": int(spec.flavor.disk_gb), "DeleteOnTermination": True},
                }
            )
        for n, volume in enumerate(getattr(spec, "volumes", None) or []):
            v = volume if isinstance(volume, dict) else vars(volume)
            size = v.get("size_gb")
            if not size or float(size) <= 0:
                raise CloudError(f"volume {v.get('name')!r}: needs a size (BlockStorage size, e.g. 10 GB)")
            kind = v.get("volume_type") or "gp3"
            if kind not in _VOLUME_TYPES:
                raise CloudError(f"volume {v.get('name')!r}: type {kind!r} is not one of {sorted(_VOLUME_TYPES)}")
            device = v.get("device") or f"/dev/sd{chr(ord('f') + n)}"
            ebs = {"VolumeSize": max(1, math.ceil(float(size))), "VolumeType": kind, "DeleteOnTermination": True}
            devices.append({"DeviceName": device, "Ebs": ebs})
        return devices


def _aws_tags(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def _tags_of(item: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in item.get("Tags", [])}


def _to_server(instance: dict[str, Any]) -> Server:
    tags = _tags_of(instance)
    state = instance["State"]["Name"]
    reason = instance.get("StateReason") or {}
    status = _STATUS.get(state, ERROR)
    fault = None
    if state in _DEAD and str(reason.get("Code", "")).startswith("Server."):
        status = ERROR  # died at AWS's hand (capacity, internal error), not deleted by us
    if status == ERROR:
        fault = f"{state}: {reason.get('Message') or reason.get('Code') or 'no reason given'}"
    return Server(
        id=instance["InstanceId"],
        name=tags.get("Name", instance["InstanceId"]),
        status=status,
        private_ip=instance.get("PrivateIpAddress"),
        public_ip=instance.get("PublicIpAddress"),
        tags=tags,
        fault=fault,
    )
