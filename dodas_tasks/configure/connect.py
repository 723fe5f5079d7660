"""Open SSH connections to nodes: directly, or through jump hosts (bastions) as OpenSSH's ProxyJump does.

Each hop is a paramiko client whose transport opens a `direct-tcpip` channel to the next hop; that channel is the
next client's socket, so the node's SSH session runs end to end and its host key is checked as on a direct
connection. Host keys are pinned at every hop, the jump hosts' too.
"""

from __future__ import annotations

import getpass
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field

import paramiko

from dodas_tasks.configure.errors import AuthenticationRefused, NodeUnreachable
from dodas_tasks.configure.hostkeys import KnownHosts, NewHostKeyCallback, PinnedHostKeyPolicy, host_id
from dodas_tasks.configure.keys import load_private_key

_ORIGIN = ("127.0.0.1", 0)  # the originator a direct-tcpip request names; servers only log it
_PROHIBITED = 1  # SSH_OPEN_ADMINISTRATIVELY_PROHIBITED: the jump host will never forward there


@dataclass(frozen=True)
class JumpHost:
    """One SSH hop on the way to a node: a site's bastion, a local cloud's gateway, or the cluster's front-end.

    private_key None logs in with the key of the node behind it (the deployment's: a front-end VM of the
    deployment, a gateway that accepts the cloud's key pairs). host_key, when the site or the cloud reports it,
    is pinned before the first contact instead of trusted on first use.
    """

    host: str
    port: int = 22
    username: str | None = None
    private_key: str | None = field(default=None, repr=False)
    host_key: str | None = None
    name: str = "jump host"

    @property
    def label(self) -> str:
        return f"jump host {self.name} ({host_id(self.host, self.port)})"


@dataclass(frozen=True)
class NodeTarget:
    """Where to reach one node; username None means the local user name, as with OpenSSH.

    jump: the hops to go through, first to last (empty: connect directly); the node's host is then an address
    as the last hop sees it.
    """

    name: str
    host: str
    port: int = 22
    username: str | None = None
    jump: tuple[JumpHost, ...] = ()

    @property
    def route(self) -> str:
        """How the node is reached, for messages: "ip:port" or "ip:port via jump host …"."""
        via = " via ".join(hop.label for hop in reversed(self.jump))
        return host_id(self.host, self.port) + (f" via {via}" if via else "")


class Connection:
    """A logged-in client to a node and the jump-host clients under it; closed together, innermost first."""

    def __init__(self, client: paramiko.SSHClient, hops: Sequence[paramiko.SSHClient] = ()) -> None:
        self.client = client
        self.hops = list(hops)

    def close(self) -> None:
        self.client.close()
        close_all(self.hops)

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def close_all(clients: Sequence[paramiko.SSHClient]) -> None:
    for client in reversed(clients):
        client.close()


def describe(error: BaseException) -> str:
    """A one-line reason for a connection error, without a traceback."""
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _login(
    host: str,
    port: int,
    username: str | None,
    pkey: paramiko.PKey,
    known_hosts: KnownHosts,
    on_new_host_key: NewHostKeyCallback | None,
    timeout: float,
    *,
    sock: paramiko.Channel | None,
    who: str,
    node: str,
    key_what: str = "the deployment's SSH key",
) -> paramiko.SSHClient:
    """One login; errors a booting node gives (refused, timed out, reset, channel refused) come out as they are."""
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(PinnedHostKeyPolicy(host_id(host, port), known_hosts, on_new_host_key))
    user = username or getpass.getuser()
    try:
        client.connect(
            host,
            port=port,
            username=user,
            pkey=pkey,
            sock=sock,
            timeout=timeout,
            banner_timeout=timeout,
            auth_timeout=timeout,
            allow_agent=False,
            look_for_keys=False,
        )
    except paramiko.AuthenticationException as error:
        client.close()
        raise AuthenticationRefused(
            f"{who} refused {key_what} for user {user!r} ({describe(error)}); check that the public key "
            "was installed there and that the user name matches the image",
            node,
        ) from None
    except socket.gaierror as error:
        client.close()
        raise NodeUnreachable(f"{who}: address {host!r} cannot be resolved ({describe(error)})", node) from None
    except BaseException:  # HostKeyMismatch (raised at once), and what a booting node answers
        client.close()
        raise
    return client


def _pin_reported(hop: JumpHost, known_hosts: KnownHosts, on_new_host_key: NewHostKeyCallback | None) -> None:
    """A host key the site or cloud reported is pinned before the first contact (a different pin stays and wins)."""
    key = host_id(hop.host, hop.port)
    if hop.host_key and key not in known_hosts:
        known_hosts[key] = hop.host_key
        if on_new_host_key is not None:
            on_new_host_key(key, hop.host_key)


def open_channel(
    client: paramiko.SSHClient, host: str, port: int, timeout: float, origin: tuple[str, int] = _ORIGIN
) -> paramiko.Channel:
    """A direct-tcpip channel from the hop `client` to host:port (paramiko.ChannelException if refused)."""
    transport = client.get_transport()
    if transport is None or not transport.is_active():
        raise paramiko.SSHException("the jump host closed the connection")
    return transport.open_channel("direct-tcpip", (host, port), origin, timeout=timeout)


def open_hops(
    hops: Sequence[JumpHost],
    host: str,
    port: int,
    *,
    pkey: paramiko.PKey,
    known_hosts: KnownHosts,
    on_new_host_key: NewHostKeyCallback | None,
    timeout: float,
    node: str,
    final_channel: bool = True,
) -> tuple[list[paramiko.SSHClient], paramiko.Channel | None]:
    """Log in to each hop through the one before, then (final_channel) open a channel from the last to host:port.

    Returns the hop clients (close them when done) and the channel (None when there are no hops or final_channel
    is false).
    """
    clients: list[paramiko.SSHClient] = []
    sock: paramiko.Channel | None = None
    try:
        for index, hop in enumerate(hops):
            _pin_reported(hop, known_hosts, on_new_host_key)
            hop_key = load_private_key(hop.private_key) if hop.private_key else pkey
            who = f"{hop.label} (on the way to node {node})"
            clients.append(
                _login(
                    hop.host,
                    hop.port,
                    hop.username,
                    hop_key,
                    known_hosts,
                    on_new_host_key,
                    timeout,
                    sock=sock,
                    who=who,
                    node=node,
                    key_what="the jump host's own key" if hop.private_key else "the deployment's SSH key",
                )
            )
            following = hops[index + 1] if index + 1 < len(hops) else None
            if following is None and not final_channel:
                break
            next_host, next_port = (following.host, following.port) if following else (host, port)
            try:
                sock = open_channel(clients[-1], next_host, next_port, timeout)
            except paramiko.ChannelException as error:
                if error.code != _PROHIBITED:
                    raise  # e.g. connection refused: the next hop or the node may still be booting
                raise NodeUnreachable(
                    f"{hop.label} refuses to forward to {host_id(next_host, next_port)} ({error.text}) on the way "
                    f"to node {node}",
                    node,
                ) from None
    except BaseException:
        close_all(clients)
        raise
    return clients, sock


def connect_node(
    target: NodeTarget,
    pkey: paramiko.PKey,
    known_hosts: KnownHosts,
    on_new_host_key: NewHostKeyCallback | None,
    timeout: float,
) -> Connection:
    """One connection attempt to the node, through its jump hosts if it has any."""
    hops, sock = open_hops(
        target.jump,
        target.host,
        target.port,
        pkey=pkey,
        known_hosts=known_hosts,
        on_new_host_key=on_new_host_key,
        timeout=timeout,
        node=target.name,
    )
    try:
        client = _login(
            target.host,
            target.port,
            target.username,
            pkey,
            known_hosts,
            on_new_host_key,
            timeout,
            sock=sock,
            who=f"node {target.name} ({target.route})",
            node=target.name,
        )
    except BaseException:
        close_all(hops)
        raise
    return Connection(client, hops)
