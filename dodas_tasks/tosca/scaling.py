"""A template update that scales one compute group, as orchestrator clients (CLUES, orchent users) make it: the
deployment's template with the group's scalable count changed, sent back with PUT (deploy/update.py applies it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml


class ScalingError(ValueError):
    """The template has no such group, or cannot be read; the message says which in one line."""


@dataclass(frozen=True)
class ScaledTemplate:
    """The body of the update: the template and the inputs that change."""

    template: str
    parameters: dict[str, Any] = field(default_factory=dict)


def scale_group(template_text: str, group: str, count: int) -> ScaledTemplate:
    """The update asking for `count` VMs of compute group `group` (the node's `scalable` capability).

    A count taken from an input (`{get_input: name}`) changes through that input, the text left as it is, so the
    input's constraints still apply and later updates by input keep working; a literal count (or none) is written
    into the template, re-serialised (its comments are lost).
    """
    try:
        doc = yaml.safe_load(template_text)
    except yaml.YAMLError as exc:
        raise ScalingError(f"the deployment's template is not valid YAML: {exc}") from None
    nodes = ((doc or {}).get("topology_template") or {}).get("node_templates") or {}
    if group not in nodes:
        raise ScalingError(f"the deployment's template has no node {group!r}; its nodes: {', '.join(nodes) or '-'}")
    node = nodes[group] if isinstance(nodes[group], dict) else {}
    scalable = ((node.get("capabilities") or {}).get("scalable") or {}).get("properties") or {}
    current = scalable.get("count")
    if isinstance(current, dict) and isinstance(current.get("get_input"), str):
        return ScaledTemplate(template_text, {current["get_input"]: count})
    capabilities = node.get("capabilities") or {}
    capability = capabilities.get("scalable") or {}
    capability["properties"] = {**scalable, "count": count}
    capabilities["scalable"] = capability
    node["capabilities"] = capabilities
    nodes[group] = node
    return ScaledTemplate(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
