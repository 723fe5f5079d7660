"""Masks secrets in any text that leaves the runner (log lines, results, exception messages)."""

from __future__ import annotations

import json
from collections.abc import Iterable

MASK = "***"


def secret_fragments(secrets: Iterable[str]) -> list[str]:
    """The strings to mask, longest first: each secret, its JSON-escaped forms (a password holding `"` or `\\`
    comes back escaped in API answers such as Marathon's app definitions), and each line of a multi-line secret
    (private keys)."""
    fragments: set[str] = set()
    for secret in secrets:
        if not secret or not secret.strip():
            continue
        fragments.add(secret)
        fragments.update(json.dumps(secret, ensure_ascii=ascii)[1:-1] for ascii in (True, False))
        if "\n" in secret:
            fragments.update(line.strip() for line in secret.splitlines() if line.strip())
    return sorted(fragments, key=len, reverse=True)


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every occurrence of every secret in text by ***."""
    return mask_fragments(text, secret_fragments(secrets))


def mask_fragments(text: str, fragments: list[str]) -> str:
    """redact() with the fragments computed once, for callers masking many lines."""
    for fragment in fragments:
        text = text.replace(fragment, MASK)
    return text
