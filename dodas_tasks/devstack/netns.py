"""Hosts of our own on this machine: network namespaces joined by veth links, made and removed by the caller.

A stack whose services run on several hosts (compose.Placement.hosts) gets them here: each host is a network
namespace with its loopback up, linked to this machine and to every other host by a veth pair of its own (a /30
from a private /24 no interface here uses). Nothing is routed between links (no default route in a namespace,
this machine's forwarding untouched), so a host reaches exactly the addresses of the links it is on, and its own
loopback, which nobody else reaches. Needs root and iproute2.
"""

from __future__ import annotations

import ipaddress
import itertools
import random
import shutil
import subprocess
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

MACHINE = ""  # this machine's own namespace, as a host name
_SUPERNET = ipaddress.IPv4Network("10.250.0.0/15")


class NetnsError(RuntimeError):
    """The namespaces or links could not be made (not root, no iproute2, a command failed)."""


def ip(*args: str) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


@dataclass
class Mesh:
    """Hosts by name, each a network namespace; the address of each host on the link to each other."""

    namespaces: dict[str, str] = field(default_factory=dict)  # host → namespace name
    addresses: dict[tuple[str, str], str] = field(default_factory=dict)  # (host, seen from) → its address there
    links: list[str] = field(default_factory=list)  # one end of each veth pair (deleting it deletes both)

    def netns(self, host: str) -> str:
        return self.namespaces[host]

    def address(self, host: str, seen_from: str = MACHINE) -> str:
        """The address `seen_from` reaches `host` at (MACHINE: this machine's own namespace)."""
        return self.addresses[(host, seen_from)]


def _free_subnet() -> ipaddress.IPv4Network:
    """A random /24 of _SUPERNET that no address or route here touches."""
    used = [_network(word) for word in ip("-4", "-o", "addr").split() if "/" in word]
    routes = ip("-4", "route", "show", "table", "all")
    candidates = list(_SUPERNET.subnets(new_prefix=24))
    random.shuffle(candidates)
    for subnet in candidates:
        if not any(net and subnet.overlaps(net) for net in used) and str(subnet.network_address)[:-1] not in routes:
            return subnet
    raise NetnsError(f"no free /24 in {_SUPERNET}")


def _network(word: str) -> ipaddress.IPv4Network | None:
    try:
        return ipaddress.IPv4Interface(word).network
    except ValueError:
        return None


@contextmanager
def mesh(hosts: Sequence[str]) -> Iterator[Mesh]:
    """Make a namespace per host and link every pair (this machine included); remove all of it on exit."""
    if shutil.which("ip") is None:
        raise NetnsError("iproute2's ip is needed to make hosts of our own (network namespaces)")
    tag = uuid.uuid4().hex[:6]
    made = Mesh()
    try:
        for host in hosts:
            namespace = f"dodas-{host}-{tag}"
            ip("netns", "add", namespace)
            made.namespaces[host] = namespace
            ip("-n", namespace, "link", "set", "lo", "up")
        links = list(_free_subnet().subnets(new_prefix=30))
        names = [MACHINE, *hosts]
        for index, (a, b) in enumerate(itertools.combinations(names, 2)):
            ends = {a: f"d{tag}{index}a", b: f"d{tag}{index}b"}  # ≤ 15 characters, unique to this mesh
            ip("link", "add", ends[a], "type", "veth", "peer", "name", ends[b])
            made.links.append(ends[a])
            first, second = list(links[index].hosts())
            for host, other, address in ((a, b, first), (b, a, second)):
                where: tuple[str, ...] = ()
                if host != MACHINE:
                    ip("link", "set", ends[host], "netns", made.namespaces[host])
                    where = ("-n", made.namespaces[host])
                ip(*where, "addr", "add", f"{address}/30", "dev", ends[host])
                ip(*where, "link", "set", ends[host], "up")
                made.addresses[(host, other)] = str(address)
        yield made
    finally:
        _remove(made)


def _remove(made: Mesh) -> None:
    """Delete the links (a pair goes with either end, wherever it is) and the namespaces; what is already gone
    is no error."""
    places: list[tuple[str, ...]] = [(), *(("-n", namespace) for namespace in made.namespaces.values())]
    for link in made.links:
        for where in places:
            subprocess.run(["ip", *where, "link", "del", link], capture_output=True, timeout=30)
    for namespace in made.namespaces.values():
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=30)
