"""Template inputs: values coerced to their declared type, missing and unknown ones reported by name."""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from typing import Any

import yaml

from dodas_tasks.tosca import TOSCA_PARSER_LOCK
from dodas_tasks.tosca.errors import TemplateProblem
from dodas_tasks.tosca.functions import is_secret_name
from dodas_tasks.tosca.loader import YamlDocument

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


@dataclass
class InputCheck:
    values: dict[str, Any] = field(default_factory=dict)  # effective values: given, else default
    given: set[str] = field(default_factory=set)
    missing: list[str] = field(default_factory=list)  # required, no default, not given
    problems: list[TemplateProblem] = field(default_factory=list)


def is_secret_input(name: str, decl: Any) -> bool:
    """Password/token/secret inputs, or any input whose declaration says `metadata: {secret: true}`."""
    meta = (decl or {}).get("metadata") if isinstance(decl, dict) else None
    return is_secret_name(name) or bool(isinstance(meta, dict) and meta.get("secret"))


def check(doc: YamlDocument, decls: dict[str, Any], given: dict[str, Any] | None) -> InputCheck:
    """`given=None` means: check the template alone; missing inputs are listed, not errors."""
    result = InputCheck()
    given = dict(given or {}) if given is not None else None
    for name, decl in decls.items():
        decl = decl if isinstance(decl, dict) else {}
        where = ("topology_template", "inputs", name)
        if given is not None and name in given:
            try:
                result.values[name] = coerce(given[name], str(decl.get("type", "string")))
                result.given.add(name)
                _check_constraints(name, decl, result.values[name])
            except ValueError as exc:
                shown = "***" if is_secret_input(name, decl) else repr(given[name])
                result.problems.append(
                    TemplateProblem(
                        "input",
                        f"input {name!r} = {shown}: {exc} (declared type {decl.get('type', 'string')})",
                        node=name,
                        path=where,
                        hint=f"give {name} a value of type {decl.get('type', 'string')}"
                        + (f" satisfying {decl['constraints']}" if decl.get("constraints") else ""),
                    )
                )
        elif decl.get("default") is not None:
            result.values[name] = decl["default"]
        elif decl.get("required", True):
            result.missing.append(name)
            if given is not None:
                result.problems.append(
                    TemplateProblem(
                        "input",
                        f"input {name!r} is required and has no default",
                        node=name,
                        path=where,
                        hint=f"give it with -i {name}=VALUE (type {decl.get('type', 'string')})",
                    )
                )
    for name in sorted(set(given or {}) - set(decls)):
        close = difflib.get_close_matches(name, list(decls), n=1)
        result.problems.append(
            TemplateProblem(
                "input",
                f"input {name!r} is not declared by the template",
                node=name,
                hint=f"did you mean {close[0]!r}?" if close else f"declared inputs: {', '.join(decls) or 'none'}",
            )
        )
    return result


def _check_constraints(name: str, decl: dict[str, Any], value: Any) -> None:
    """TOSCA constraints (in_range, valid_values, ...) through tosca-parser's own implementation."""
    from toscaparser.common.exception import ExceptionCollector
    from toscaparser.elements.constraints import Constraint

    with TOSCA_PARSER_LOCK:
        collecting = ExceptionCollector.collecting
        ExceptionCollector.collecting = False
        try:
            for spec in decl.get("constraints") or []:
                try:
                    Constraint(name, str(decl.get("type", "string")), spec).validate(value)
                except Exception as exc:
                    raise ValueError(str(exc).replace(f'of property "{name}" ', "")) from None
        finally:
            ExceptionCollector.collecting = collecting


def coerce(value: Any, type_name: str) -> Any:
    """Values from a command line or a form arrive as strings: convert them to the declared TOSCA type."""
    if type_name == "integer":
        if isinstance(value, bool):
            raise ValueError("expected an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        try:
            return int(str(value).strip())
        except ValueError:
            raise ValueError("expected an integer") from None
    if type_name == "float":
        if isinstance(value, bool):
            raise ValueError("expected a number")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError("expected a number") from None
    if type_name == "boolean":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ValueError("expected true or false")
    if type_name in ("list", "map"):
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                value = yaml.safe_load(value)
        expected = list if type_name == "list" else dict
        if not isinstance(value, expected):
            raise ValueError(f"expected a {type_name} (JSON)")
        return value
    if isinstance(value, dict | list):
        raise ValueError(f"expected a {type_name}, got a {type(value).__name__}")
    return value if type_name.startswith("scalar-unit") and not isinstance(value, str) else str(value)
