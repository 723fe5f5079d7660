"""What an OpenStack site tells once per process (flavors, image ids, networks, security groups, key pairs).

Drivers are made for every provisioning pass and poll; the answers below stay true between them, so they are
asked once. A cachetools TLRUCache keeps them (forever, or `ttl` seconds for what can change, like flavors); one
caller computes a missing entry while concurrent callers of the same key wait for its answer.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from cachetools import TLRUCache, cached

T = TypeVar("T")


@dataclass(frozen=True)
class _Entry:
    value: Any
    ttl: float  # seconds the value stays good


def _computed(_key: str, compute: Callable[[], Any], ttl: float) -> _Entry:
    return _Entry(compute(), ttl)


class SiteCache:
    """Per site and process: values by key, each computed once (errors are not kept: the next caller tries again)."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._entries: TLRUCache[str, _Entry] = TLRUCache(maxsize=math.inf, ttu=lambda _k, entry, now: now + entry.ttl)
        self._get = cached(self._entries, key=lambda key, _compute, _ttl: key, condition=self._condition)(_computed)

    def get(self, key: str, compute: Callable[[], T], ttl: float = math.inf) -> T:
        """The value of `key`, computed by `compute` when missing or older than `ttl` seconds."""
        return self._get(key, compute, ttl).value

    def peek(self, key: str) -> Any:
        """The value of `key` if known, else None; never computes."""
        with self._condition:
            entry = self._entries.get(key)
        return None if entry is None else entry.value

    def drop(self, prefix: str) -> None:
        """Forget every key starting with `prefix` (the cloud changed behind our back, or we changed it)."""
        with self._condition:
            for key in [k for k in self._entries if k.startswith(prefix)]:
                self._entries.pop(key, None)


_caches: dict[str, SiteCache] = {}
_caches_lock = threading.Lock()


def site_cache(conn_id: str) -> SiteCache:
    """The cache of the site behind Airflow connection `conn_id`, shared by every driver of this process."""
    with _caches_lock:
        return _caches.setdefault(conn_id, SiteCache())
