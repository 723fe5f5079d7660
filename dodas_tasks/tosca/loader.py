"""Read a TOSCA template: YAML with line numbers for errors, and imports resolved offline to our type library."""

from __future__ import annotations

import dataclasses
import re
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from dodas_tasks.tosca.errors import TemplateProblem

TYPES_DIR = Path(__file__).with_name("types")
INDIGO_TYPES = TYPES_DIR / "indigo_custom_types.yaml"

# Real DODAS templates import the INDIGO types by branch URL; every branch resolves to our own library.
_INDIGO_IMPORT = re.compile(
    r"^https?://(raw\.githubusercontent\.com/indigo-dc/tosca-types/[^/]+"
    r"|github\.com/indigo-dc/tosca-types/raw/[^/]+)/custom_types\.ya?ml$"
)


_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when available: same result, faster


class YamlDocument:
    """A parsed template plus a lazily built index from YAML paths to (line, column), used only for errors."""

    def __init__(self, text: str, data: dict[str, Any]) -> None:
        self.text = text
        self.data = data

    @cached_property
    def _marks(self) -> dict[tuple[Any, ...], tuple[int, int]]:
        marks: dict[tuple[Any, ...], tuple[int, int]] = {}

        def walk(node: yaml.Node, path: tuple[Any, ...]) -> None:
            if isinstance(node, yaml.MappingNode):
                for key, value in node.value:
                    sub = (*path, key.value)
                    marks[sub] = (key.start_mark.line + 1, key.start_mark.column + 1)
                    walk(value, sub)
            elif isinstance(node, yaml.SequenceNode):
                for i, item in enumerate(node.value):
                    sub = (*path, i)
                    marks[sub] = (item.start_mark.line + 1, item.start_mark.column + 1)
                    walk(item, sub)

        root = yaml.compose(self.text, Loader=_SafeLoader)
        if root is not None:
            walk(root, ())
        return marks

    def locate(self, problem: TemplateProblem) -> TemplateProblem:
        """Fill in line and column from the problem's YAML path (composing the YAML only when errors exist)."""
        if problem.line is not None or not problem.path:
            return problem
        line, column = self.line_of(*problem.path)
        return dataclasses.replace(problem, line=line, column=column)

    def line_of(self, *path: Any) -> tuple[int | None, int | None]:
        """Line and column of the deepest existing prefix of `path` (1-based), or (None, None)."""
        for end in range(len(path), 0, -1):
            mark = self._marks.get(tuple(path[:end]))
            if mark:
                return mark
        return None, None


def load_yaml(text: str) -> tuple[YamlDocument | None, list[TemplateProblem]]:
    """Parse the template text; a syntax error becomes one problem with its line and column."""
    try:
        data = yaml.load(text, Loader=_SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        column = mark.column + 1 if mark else None
        snippet = text.splitlines()[line - 1].strip() if line and line <= len(text.splitlines()) else ""
        problem = f"invalid YAML: {exc.problem or exc.context}"
        if snippet:
            problem += f" (in: {snippet!r})"
        hint = "quote the value" if "mapping values are not allowed" in str(exc.problem) else None
        hint = hint or "fix the YAML syntax at this position"
        return None, [TemplateProblem("yaml", problem, line=line, column=column, hint=hint)]
    except yaml.YAMLError as exc:
        return None, [TemplateProblem("yaml", f"invalid YAML: {exc}", hint="fix the YAML syntax")]
    if not isinstance(data, dict):
        return None, [
            TemplateProblem(
                "yaml",
                "the template is not a YAML mapping",
                line=1,
                hint="a TOSCA template starts with 'tosca_definitions_version:'",
            )
        ]
    return YamlDocument(text, data), []


def resolve_imports(doc: YamlDocument) -> list[TemplateProblem]:
    """Rewrite known type-library URLs to our local library, in place; anything else cannot be fetched."""
    imports = doc.data.get("imports") or []
    if not isinstance(imports, list):
        return [TemplateProblem("import", "'imports' must be a list", path=("imports",))]
    problems: list[TemplateProblem] = []
    resolved: list[Any] = []
    for i, entry in enumerate(imports):
        name, url = _import_target(entry)
        if isinstance(url, str) and _INDIGO_IMPORT.match(url.strip()):
            resolved.append({name or "indigo_custom_types": str(INDIGO_TYPES)})
            continue
        problems.append(
            TemplateProblem(
                "import",
                f"import {url!r} cannot be resolved: templates are compiled offline and only the INDIGO type "
                "library (indigo-dc/tosca-types custom_types.yaml) is known",
                path=("imports", i),
                hint="import https://raw.githubusercontent.com/indigo-dc/tosca-types/master/custom_types.yaml "
                "or define the types in the template's own node_types section",
            )
        )
    doc.data["imports"] = resolved
    if not resolved:
        doc.data.pop("imports")
    return problems


def _import_target(entry: Any) -> tuple[str | None, Any]:
    if isinstance(entry, dict) and len(entry) == 1:
        ((name, value),) = entry.items()
        if isinstance(value, dict):
            return name, value.get("file")
        return name, value
    return None, entry
