"""TOSCA intrinsic functions: resolved now when they can be, kept as typed references when they cannot.

get_input and get_property resolve at compile time; get_attribute (IP addresses and the like) only exists after
provisioning, so it becomes {"$attr": ...}. Secret inputs become {"$secret": name} so the Plan never holds them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dodas_tasks.tosca.errors import TemplateProblem

FUNCTIONS = {"get_input", "get_property", "get_attribute", "concat", "token", "get_operation_output"}
_SECRET_NAME = re.compile(r"(password|passwd|_pass|pwd|token|secret)$", re.IGNORECASE)


def is_secret_name(name: str) -> bool:
    """Inputs and properties whose names end like password/token/secret hold secrets."""
    return bool(_SECRET_NAME.search(name))


def is_ref(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)).startswith("$")


@dataclass
class Resolver:
    """Resolves intrinsic functions for one template; collects problems instead of raising."""

    inputs: dict[str, Any]  # effective values: given or default
    secret_inputs: set[str]
    declared_inputs: set[str]
    node_names: set[str]
    raw_property: Callable[[str, list[Any]], tuple[bool, Any]]  # (node, path) -> (found, raw value)
    host_of: Callable[[str], str | None]
    attribute_roots: Callable[[str], set[str]]  # attribute and capability names a node offers
    secrets: dict[str, Any] = field(default_factory=dict)
    problems: list[TemplateProblem] = field(default_factory=list)
    _depth: int = 0

    def resolve(self, value: Any, where: str, self_node: str | None = None) -> Any:
        if isinstance(value, list):
            return [self.resolve(v, where, self_node) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((name, args),) = value.items()
            if name in FUNCTIONS:
                return self._call(name, args, where, self_node)
        return {k: self.resolve(v, where, self_node) for k, v in value.items()}

    def _problem(self, message: str, where: str, hint: str | None = None) -> None:
        self.problems.append(TemplateProblem("function", f"{where}: {message}", node=where, hint=hint))

    def _node(self, ref: Any, where: str, self_node: str | None) -> str | None:
        if ref == "SELF":
            return self_node
        if ref == "HOST":
            host = self.host_of(self_node) if self_node else None
            if host is None:
                self._problem("HOST used in a node with no host requirement", where)
            return host
        if ref in ("SOURCE", "TARGET"):
            self._problem(f"{ref} is only meaningful in relationship templates, which are not supported", where)
            return None
        if ref not in self.node_names:
            self._problem(
                f"refers to node template {ref!r}, which does not exist",
                where,
                hint=f"use one of: {', '.join(sorted(self.node_names))}",
            )
            return None
        return ref

    def _call(self, name: str, args: Any, where: str, self_node: str | None) -> Any:
        if name == "get_input":
            input_name = args[0] if isinstance(args, list) and args else args
            if not isinstance(input_name, str) or input_name not in self.declared_inputs:
                self._problem(
                    f"get_input {input_name!r}: no such input is declared",
                    where,
                    hint="declare it under topology_template.inputs or fix the name",
                )
                return None
            if input_name in self.secret_inputs:
                if input_name in self.inputs:
                    self.secrets[input_name] = self.inputs[input_name]
                return {"$secret": input_name}
            if input_name not in self.inputs:
                return {"$input": input_name}
            return self.inputs[input_name]
        if name == "concat":
            parts = [self.resolve(p, where, self_node) for p in (args or [])]
            if any(is_ref(p) or isinstance(p, dict) for p in parts):
                return {"$concat": parts}
            return "".join("" if p is None else str(p) for p in parts)
        if name == "get_attribute":
            if not isinstance(args, list) or len(args) < 2:
                self._problem("get_attribute needs [node, attribute, ...]", where)
                return None
            node = self._node(args[0], where, self_node)
            if node is None:
                return None
            roots = self.attribute_roots(node)
            if roots and args[1] not in roots:
                self._problem(
                    f"get_attribute: node {node!r} has no attribute or capability {args[1]!r}",
                    where,
                    hint=f"use one of: {', '.join(sorted(roots))}",
                )
                return None
            return {"$attr": {"node": node, "path": list(args[1:])}}
        if name == "get_property":
            if not isinstance(args, list) or len(args) < 2:
                self._problem("get_property needs [node, property, ...]", where)
                return None
            node = self._node(args[0], where, self_node)
            if node is None:
                return None
            found, raw = self.raw_property(node, list(args[1:]))
            if not found:
                self._problem(f"get_property: node {node!r} has no property {'.'.join(map(str, args[1:]))}", where)
                return None
            if self._depth > 20:
                self._problem("get_property chain is too deep (a loop?)", where)
                return None
            self._depth += 1
            try:
                return self.resolve(raw, where, node)
            finally:
                self._depth -= 1
        self._problem(f"function {name!r} is not supported", where)
        return None

    def protect_secrets(self, value: Any, key_path: str, name: str = "") -> Any:
        """Replace literal values under secret-looking keys by {"$secret": key_path}, keeping them apart."""
        if isinstance(value, dict) and not is_ref(value):
            return {k: self.protect_secrets(v, f"{key_path}.{k}", k) for k, v in value.items()}
        if isinstance(value, str) and value and is_secret_name(name):
            self.secrets[key_path] = value
            return {"$secret": key_path}
        return value
