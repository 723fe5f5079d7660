"""The orchestrator's `callback` delivered from the triggerer: a POST retried with exponential backoff, so no worker
slot waits on a slow receiver (operators/callback.py defers to it)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
from airflow.triggers.base import BaseTrigger, TriggerEvent
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

ATTEMPTS = 5
FIRST_WAIT_S = 1.0  # then 2, 4, 8 s: about 15 s of retries in all
TIMEOUT_S = 10.0


class CallbackRefused(Exception):
    """The receiver answered, but not with a 2xx status."""


async def deliver(
    url: str, payload: dict[str, Any], attempts: int = ATTEMPTS, first_wait_s: float = FIRST_WAIT_S
) -> dict[str, Any]:
    """POST payload as JSON until a 2xx answer or `attempts` tries; returns what happened (never raises)."""
    tries = 0
    retrying = AsyncRetrying(
        stop=stop_after_attempt(attempts),
        wait=wait_exponential(multiplier=first_wait_s, max=60),
        retry=retry_if_exception_type((httpx.HTTPError, CallbackRefused)),
        reraise=True,
    )
    try:
        async for attempt in retrying:
            with attempt:
                tries += 1
                async with httpx.AsyncClient(timeout=TIMEOUT_S) as client:
                    reply = await client.post(url, json=payload)
                if not reply.is_success:
                    raise CallbackRefused(f"HTTP {reply.status_code}")
        return {"delivered": True, "attempts": tries, "detail": f"HTTP {reply.status_code}"}
    except (httpx.HTTPError, CallbackRefused) as exc:
        return {"delivered": False, "attempts": tries, "detail": str(exc) or type(exc).__name__}


class CallbackTrigger(BaseTrigger):
    """Delivers one callback from the triggerer and fires with the outcome."""

    def __init__(self, url: str, payload: dict[str, Any], attempts: int = ATTEMPTS, first_wait_s: float = FIRST_WAIT_S):
        super().__init__()
        self.url, self.payload, self.attempts, self.first_wait_s = url, payload, attempts, first_wait_s

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"url": self.url, "payload": self.payload, "attempts": self.attempts, "first_wait_s": self.first_wait_s},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        outcome = await deliver(self.url, self.payload, self.attempts, self.first_wait_s)
        yield TriggerEvent({**outcome, "status": self.payload.get("status")})
