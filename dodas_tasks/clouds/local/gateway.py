"""The SSH gateway of a local cloud served to other hosts: a jump host that forwards to its VMs only.

Workers on other hosts cannot reach the VMs' addresses (loopback or a private bridge of the service's host);
they log in here with a deployment's key and open `direct-tcpip` channels to that deployment's VMs, as
through a site's bastion. A key is accepted when it is one of the cloud's key pairs; a channel is opened only
to a VM that accepts the same key. No shell, no other forwarding.
"""

from __future__ import annotations

import logging
from pathlib import Path

import asyncssh

from dodas_tasks.clouds.local.driver import LocalCloud, normalise_public_key
from dodas_tasks.clouds.local.node import load_or_create_host_key

log = logging.getLogger("dodas.localcloud.gateway")


def _key_string(key: asyncssh.SSHKey) -> str:
    return normalise_public_key(key.export_public_key().decode(), "the offered key")


class GatewaySshd(asyncssh.SSHServer):
    """One client connection: public-key login with a key pair of the cloud, forwarding to its VMs."""

    def __init__(self, cloud: LocalCloud) -> None:
        self.cloud = cloud
        self.key: str | None = None

    def begin_auth(self, username: str) -> bool:
        return True  # authentication is required

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        offered = _key_string(key)
        if offered in self.cloud.key_pair_keys():
            self.key = offered
            return True
        return False

    def connection_requested(self, dest_host: str, dest_port: int, orig_host: str, orig_port: int) -> bool:
        allowed = self.key is not None and self.cloud.authorized_key_at(dest_host) == self.key
        if not allowed:
            log.info("refused forwarding to %s:%d (not a VM of this key)", dest_host, dest_port)
            raise asyncssh.ChannelOpenError(
                asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED, f"{dest_host} is no VM of this key in this local cloud"
            )
        return True

    def session_requested(self) -> bool:
        return False  # a jump host only: no shell, no commands


def host_key_path(cloud: LocalCloud) -> Path:
    return cloud.config.root / "gateway" / "ssh_host_ed25519_key"


async def start_gateway(cloud: LocalCloud, host: str, port: int) -> tuple[asyncssh.SSHAcceptor, str]:
    """Listen on host:port; returns the acceptor and the gateway's public host key ("ssh-ed25519 AAAA…"),
    kept in the cloud's home so a restarted service keeps its identity."""
    path = host_key_path(cloud)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    host_key = load_or_create_host_key(path)
    acceptor = await asyncssh.listen(
        host,
        port,
        server_factory=lambda: GatewaySshd(cloud),
        server_host_keys=[host_key],
        allow_scp=False,
        agent_forwarding=False,
        x11_forwarding=False,
    )
    return acceptor, host_key.export_public_key().decode().strip()
