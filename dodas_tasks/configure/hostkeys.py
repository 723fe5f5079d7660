"""Host-key pinning: trust a node's key at first contact, refuse a different key afterwards.

Nodes are fresh VMs, so no known_hosts exists beforehand; the deployment store persists the pins as JSON.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from collections.abc import Callable, MutableMapping

import paramiko

from dodas_tasks.configure.errors import ConfigureError

KnownHosts = MutableMapping[str, str]
"""Pinned keys: {"ip:port": "ssh-ed25519 AAAA..."}; the caller loads and persists it."""

NewHostKeyCallback = Callable[[str, str], None]
"""Called as on_new_host_key(host_id, key_str) when a key is pinned at first contact."""

_pin_lock = threading.Lock()


class HostKeyMismatch(ConfigureError):
    """The node offered a key other than the pinned one: a rebuilt VM or a man in the middle."""

    permanent = True

    def __init__(self, host: str, expected_fingerprint: str, offered_fingerprint: str) -> None:
        super().__init__(
            f"host key of {host} changed: pinned {expected_fingerprint}, offered {offered_fingerprint}. "
            "If the node was rebuilt on purpose, remove its entry from the deployment's known hosts; "
            "otherwise someone may be intercepting the connection.",
            node=host,
        )
        self.host = host
        self.expected_fingerprint = expected_fingerprint
        self.offered_fingerprint = offered_fingerprint


def host_id(host: str, port: int) -> str:
    """The KnownHosts key of a node: "ip:port" ("[v6]:port" for IPv6 addresses)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def key_string(key: paramiko.PKey) -> str:
    """A key as stored in KnownHosts: "<type> <base64>", as in an OpenSSH known_hosts line."""
    return f"{key.get_name()} {key.get_base64()}"


def fingerprint(key_str: str) -> str:
    """OpenSSH-style SHA256 fingerprint of a stored "<type> <base64>" key string."""
    parts = key_str.split()
    blob = base64.b64decode(parts[1]) if len(parts) >= 2 else key_str.encode()
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode("ascii").rstrip("=")
    return f"SHA256:{digest}"


def _same_key(pinned: str, offered: str) -> bool:
    """Compare type and key data only; a stored comment after them does not matter."""
    return pinned.split()[:2] == offered.split()[:2]


class PinnedHostKeyPolicy(paramiko.MissingHostKeyPolicy):
    """Trust on first use for one node: pin the key it offers the first time, refuse any other later.

    The runner adds no keys to paramiko's own host-key store, so every connection comes through here.
    paramiko always prefers ed25519 host keys first, so a node's offered key type stays the same.
    """

    def __init__(self, host: str, known_hosts: KnownHosts, on_new_host_key: NewHostKeyCallback | None = None) -> None:
        self.host = host
        self.known_hosts = known_hosts
        self.on_new_host_key = on_new_host_key

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        offered = key_string(key)
        with _pin_lock:
            pinned = self.known_hosts.get(self.host)
            if pinned is None:
                self.known_hosts[self.host] = offered
                if self.on_new_host_key is not None:
                    self.on_new_host_key(self.host, offered)
                return
        if not _same_key(pinned, offered):
            raise HostKeyMismatch(self.host, fingerprint(pinned), fingerprint(offered))
