"""Fresh access tokens for a deployment's owner, from its stored refresh token; one place for every task.

Per process, the access token is cached per (issuer, deployment) under a lock and refreshed when less than a
third of its life (at most 5 minutes) remains, so a task never starts a cloud call with a token about to expire.
A rotated refresh token is stored (encrypted) at once; another process that rotated it first is detected.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from cachetools import TLRUCache
from tenacity import retry, retry_if_result, stop_after_delay, wait_fixed

from dodas_tasks.iam.client import IamClient
from dodas_tasks.iam.errors import RefreshTokenRevoked
from dodas_tasks.store import Store

MAX_MARGIN_S = 300.0  # CLUES refreshed when < 300 s remained; short-lived tokens use a third of their life
ROTATION_RACE_WAIT_S = 3.0  # after invalid_grant, how long to look for a token another process just rotated
MAX_CACHED = 4096  # deployments whose access token a process keeps (least recently used go first)


@dataclass(frozen=True)
class _Cached:
    access_token: str
    expires_at: float
    obtained_at: float

    @property
    def fresh_until(self) -> float:
        """When to stop using it: a third of its life (at most MAX_MARGIN_S) before it expires."""
        return self.expires_at - min(MAX_MARGIN_S, (self.expires_at - self.obtained_at) / 3)


_CACHE: TLRUCache[tuple[str, str], _Cached] = TLRUCache(
    maxsize=MAX_CACHED, ttu=lambda _key, cached, _now: cached.fresh_until, timer=time.time
)
_LOCKS: dict[tuple[str, str], threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()  # also guards _CACHE, which is not thread-safe


def _lock_for(key: tuple[str, str]) -> threading.Lock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(key, threading.Lock())


def _cached(key: tuple[str, str]) -> _Cached | None:
    with _LOCKS_GUARD:
        return _CACHE.get(key)


def _keep(key: tuple[str, str], cached: _Cached | None) -> None:
    with _LOCKS_GUARD:
        if cached is None:
            _CACHE.pop(key, None)
        else:
            _CACHE[key] = cached


class TokenSource:
    """Access tokens on behalf of one deployment's owner; cheap to create (the cache is per process)."""

    def __init__(self, store: Store, deployment_id: str, iam: IamClient) -> None:
        self.store, self.deployment_id, self.iam = store, deployment_id, iam
        self._key = (iam.config.issuer, deployment_id)

    def __repr__(self) -> str:
        return f"TokenSource(deployment={self.deployment_id!r}, issuer={self.iam.config.issuer!r})"

    def __call__(self) -> str:
        return self.access_token()

    def access_token(self) -> str:
        """A valid access token, refreshed first if it is close to expiry; RefreshTokenRevoked if that is impossible."""
        with _lock_for(self._key):
            cached = _cached(self._key)  # None once it is no longer fresh
            if cached is not None:
                return cached.access_token
            return self._refresh_locked().access_token

    def refresh_now(self) -> bool:
        """Refresh at once (maintenance); returns True when the IdP rotated the refresh token."""
        with _lock_for(self._key):
            return self._refresh_locked().rotated

    def invalidate(self) -> None:
        """Forget the cached access token (e.g. after a 401 from a cloud API), so the next call refreshes."""
        with _lock_for(self._key):
            _keep(self._key, None)

    def _refresh_locked(self) -> _Refreshed:
        _keep(self._key, None)
        refresh_token = self.store.get_refresh_token(self.deployment_id)
        if refresh_token is None:
            raise RefreshTokenRevoked(
                f"deployment {self.deployment_id} holds no refresh token: its owner must delegate a new one"
            )
        try:
            tokens = self.iam.refresh(refresh_token)
        except RefreshTokenRevoked:
            newer = self._rotated_elsewhere(refresh_token)
            if newer is None:
                raise RefreshTokenRevoked(
                    f"deployment {self.deployment_id}: the IdP {self.iam.config.issuer} refused its refresh token "
                    "(revoked or expired); the owner must renew it"
                ) from None
            refresh_token, tokens = newer, self.iam.refresh(newer)
        rotated = bool(tokens.refresh_token) and tokens.refresh_token != refresh_token
        if rotated:
            self.store.update_deployment(self.deployment_id, refresh_token=tokens.refresh_token)
        _keep(self._key, _Cached(tokens.access_token, tokens.expires_at, time.time()))
        return _Refreshed(tokens.access_token, rotated)

    def _rotated_elsewhere(self, used: str) -> str | None:
        """The refresh token another process stored after rotating the one we used, if it appears shortly."""

        @retry(
            retry=retry_if_result(lambda current: current is None or current == used),
            stop=stop_after_delay(ROTATION_RACE_WAIT_S),
            wait=wait_fixed(0.2),
            retry_error_callback=lambda _state: None,
        )
        def stored() -> str | None:
            return self.store.get_refresh_token(self.deployment_id)

        return stored()


@dataclass(frozen=True)
class _Refreshed:
    access_token: str
    rotated: bool


def forget_cached_tokens() -> None:
    """Drop every cached access token of this process (tests, or after a key change)."""
    with _LOCKS_GUARD:
        _CACHE.clear()
