"""compile(template, inputs) -> Plan: tosca-parser validates, this module turns the topology into a Plan.

Every problem found (YAML, imports, inputs, types, functions, cycles, tosca-parser's own checks) is gathered and
raised once as DodasTemplateError, so a user fixes a template in one round instead of one error per try.
"""

from __future__ import annotations

import difflib
import json
import logging
from graphlib import CycleError, TopologicalSorter
from typing import Any

from dodas_tasks.tosca import TOSCA_PARSER_LOCK
from dodas_tasks.tosca import inputs as input_rules
from dodas_tasks.tosca.errors import DodasTemplateError, TemplateProblem
from dodas_tasks.tosca.functions import Resolver, is_ref
from dodas_tasks.tosca.loader import YamlDocument, load_yaml, resolve_imports
from dodas_tasks.tosca.plan import (
    PROVISION,
    STAGES,
    Component,
    Edge,
    Elasticity,
    InputUse,
    NodeGroup,
    Output,
    Plan,
    PortRule,
    Volume,
)
from dodas_tasks.tosca.policies import ELASTIC_SETTINGS, SCALING, apply_policies, parser_view
from dodas_tasks.tosca.stages import BLOCK_STORAGE, COMPUTE, ELASTICITY, TypeRegistry
from dodas_tasks.tosca.units import size_to_gib, size_to_mib

_ORDERING_KINDS = {"HostedOn", "DependsOn", "ConnectsTo", "AttachesTo"}
_JUMP_HOST_POLICY = "tosca.policies.indigo.dodas.SshJumpHost"

for _name in ("toscaparser", "tosca"):  # tosca-parser warns about missing inputs; we report them ourselves
    logging.getLogger(_name).setLevel(logging.ERROR)


def compile(template_text: str, inputs: dict[str, Any] | None = None, *, source: str = "template") -> Plan:
    """Compile a TOSCA template. `inputs=None` checks the template alone and lists the inputs still needed."""
    doc, problems = load_yaml(template_text)
    if doc is None:
        raise DodasTemplateError(problems, source)
    problems += _check_header(doc)
    problems += resolve_imports(doc)
    topology = doc.data.get("topology_template")
    if not isinstance(topology, dict):
        topology = {}
    node_tpls: dict[str, Any] = topology.get("node_templates") or {}
    if not node_tpls:
        problems.append(
            TemplateProblem(
                "tosca",
                "the template has no node templates",
                path=("topology_template",),
                hint="add topology_template.node_templates",
            )
        )
    registry = TypeRegistry(doc.data.get("node_types"))
    problems += _check_types(doc, node_tpls, registry)
    decls: dict[str, Any] = topology.get("inputs") or {}
    checked = input_rules.check(doc, decls, inputs)
    values = checked.values
    problems += checked.problems

    parser_data, warnings = parser_view(doc.data)
    parsed = None
    if not problems:
        parsed, parser_problems = _run_tosca_parser(doc, parser_data, values, secrets=_secret_values(decls, values))
        problems += parser_problems
    plan = _build_plan(doc, topology, node_tpls, registry, decls, values, checked.given, parsed, problems, warnings)
    plan.missing_inputs = checked.missing
    if problems:
        raise DodasTemplateError([doc.locate(p) for p in _dedupe(problems)], source)
    plan.warnings = [doc.locate(w).render(source) for w in _dedupe(warnings)]
    return plan


def _check_header(doc: YamlDocument) -> list[TemplateProblem]:
    version = doc.data.get("tosca_definitions_version")
    if not version:
        return [
            TemplateProblem(
                "tosca",
                "missing 'tosca_definitions_version'",
                line=1,
                hint="start the file with 'tosca_definitions_version: tosca_simple_yaml_1_0'",
            )
        ]
    return []


def _check_types(doc: YamlDocument, node_tpls: dict[str, Any], registry: TypeRegistry) -> list[TemplateProblem]:
    problems: list[TemplateProblem] = []
    for name, tpl in node_tpls.items():
        type_name = tpl.get("type") if isinstance(tpl, dict) else None
        where = ("topology_template", "node_templates", name, "type")
        if not type_name:
            problems.append(TemplateProblem("tosca", f"node template {name!r} has no type", node=name, path=where[:-1]))
            continue
        if not registry.known(type_name):
            close = difflib.get_close_matches(type_name, registry.deployable_types(), n=1)
            problems.append(
                TemplateProblem(
                    "unsupported_type",
                    f"node {name!r}: type {type_name!r} is unknown to the DODAS type library",
                    node=name,
                    path=where,
                    type_name=type_name,
                    hint=f"did you mean {close[0]!r}?"
                    if close
                    else "DODAS v2 (tosca.nodes.DODAS.*, Kubernetes/Helm) and other non-INDIGO types are not supported",
                )
            )
        elif not registry.stage(type_name)[0]:
            problems.append(
                TemplateProblem(
                    "unsupported_type",
                    f"node {name!r}: type {type_name!r} is known but this project cannot deploy it",
                    node=name,
                    path=where,
                    type_name=type_name,
                    hint="supported: Compute, BlockStorage, the Mesos, HTCondor, CMS, AMS, Spark and "
                    "Marathon/Chronos types of the INDIGO library",
                )
            )
    refused = sorted({p.type_name for p in problems if p.type_name})
    if refused:
        problems.append(
            TemplateProblem(
                "unsupported_type",
                f"unsupported TOSCA types: {', '.join(refused)}",
                hint="replace these node types or remove the nodes that use them",
            )
        )
    return problems


def _secret_values(decls: dict[str, Any], values: dict[str, Any]) -> list[str]:
    return [str(values[n]) for n in decls if input_rules.is_secret_input(n, decls[n]) and values.get(n)]


def _run_tosca_parser(
    doc: YamlDocument, data: dict[str, Any], values: dict[str, Any], secrets: list[str]
) -> tuple[Any, list[TemplateProblem]]:
    """tosca-parser's checks on `data` (parser_view's copy of the template); line numbers come from `doc`."""
    from toscaparser.common.exception import ExceptionCollector, ValidationError
    from toscaparser.tosca_template import ToscaTemplate

    with TOSCA_PARSER_LOCK:
        try:
            return ToscaTemplate(yaml_dict_tpl=data, a_file=False, parsed_params=values), []
        except ValidationError:
            found = list(ExceptionCollector.getExceptions())
        except Exception as exc:  # tosca-parser raises plain exceptions on some malformed input
            found = [exc]
    problems = []
    for exc in found:
        message = str(exc).strip()
        for secret in secrets:
            message = message.replace(secret, "***")
        node = _quoted_node(message, doc)
        path = ("topology_template", "node_templates", node) if node else ()
        problems.append(TemplateProblem("tosca", message, node=node, path=path))
    return None, problems


def _quoted_node(message: str, doc: YamlDocument) -> str | None:
    node_tpls = (doc.data.get("topology_template") or {}).get("node_templates") or {}
    for part in message.split('"')[1::2]:
        if part in node_tpls:
            return part
    return None


def _dedupe(problems: list[TemplateProblem]) -> list[TemplateProblem]:
    seen: set[tuple[str, str]] = set()
    unique = []
    for p in problems:
        key = (p.kind, p.message)
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique


def _build_plan(
    doc: YamlDocument,
    topology: dict[str, Any],
    node_tpls: dict[str, Any],
    registry: TypeRegistry,
    decls: dict[str, Any],
    values: dict[str, Any],
    given: set[str],
    parsed: Any,
    problems: list[TemplateProblem],
    warnings: list[TemplateProblem],
) -> Plan:
    parsed_nodes = {n.name: n for n in parsed.nodetemplates} if parsed is not None else {}
    typed = {n: t for n, t in node_tpls.items() if isinstance(t, dict) and registry.known(t.get("type", ""))}
    requirements = {name: _requirements(tpl) for name, tpl in typed.items()}

    def host_of(node: str) -> str | None:
        for req_name, target, _ in requirements.get(node, []):
            if req_name in ("host", "lrms"):
                return target
        return None

    def raw_property(node: str, path: list[Any]) -> tuple[bool, Any]:
        tpl = typed.get(node, {})
        props = tpl.get("properties") or {}
        if path and path[0] in props:
            return _dig(props[path[0]], path[1:])
        caps = tpl.get("capabilities") or {}
        if len(path) >= 2 and path[0] in caps:
            cap_props = (caps[path[0]] or {}).get("properties") or {}
            if path[1] in cap_props:
                return _dig(cap_props[path[1]], path[2:])
        parsed_node = parsed_nodes.get(node)
        if parsed_node is not None:
            value = _parsed_default(parsed_node, path)
            if value is not _MISSING:
                return True, value
        return False, None

    def attribute_roots(node: str) -> set[str]:
        parsed_node = parsed_nodes.get(node)
        if parsed_node is None:
            return set()
        roots = set(parsed_node.type_definition.get_attributes_def() or {})
        roots |= set(parsed_node.get_capabilities() or {})
        roots |= {"tosca_id", "tosca_name", "state", "private_address", "public_address", "load_balancer_ips"}
        return roots

    secret_inputs = {n for n, d in decls.items() if input_rules.is_secret_input(n, d)}
    resolver = Resolver(
        inputs=values,
        secret_inputs=secret_inputs,
        declared_inputs=set(decls),
        node_names=set(node_tpls),
        raw_property=raw_property,
        host_of=host_of,
        attribute_roots=attribute_roots,
    )

    plan = Plan(description=str(doc.data.get("description") or "").strip())
    plan.inputs = [
        InputUse(
            name=name,
            type=str((d or {}).get("type", "string")),
            required=bool((d or {}).get("required", True)),
            secret=name in secret_inputs,
            has_default=(d or {}).get("default") is not None,
            given=name in given,
            value=None if name in secret_inputs else values.get(name),
            description=str((d or {}).get("description") or ""),
        )
        for name, d in decls.items()
    ]

    for name, tpl in typed.items():
        type_name = tpl["type"]
        deployable, stage = registry.stage(type_name)
        if not deployable or registry.derives_from(type_name, BLOCK_STORAGE):
            continue
        if registry.derives_from(type_name, COMPUTE):
            plan.groups.append(_group(name, tpl, parsed_nodes.get(name), resolver, problems, doc))
            continue
        if registry.derives_from(type_name, ELASTICITY):
            continue
        where = f"node {name}"
        props = {
            k: resolver.resolve(v, f"{where} property {k}", name) for k, v in (tpl.get("properties") or {}).items()
        }
        for k, v in _type_defaults(parsed_nodes.get(name)).items():
            props.setdefault(k, v)
        props = {k: resolver.protect_secrets(v, f"{name}.{k}", k) for k, v in props.items()}
        artifacts = {
            k: resolver.resolve(v, f"{where} artifact {k}", name) for k, v in (tpl.get("artifacts") or {}).items()
        }
        capabilities = {
            cap: {
                k: resolver.resolve(v, f"{where} capability {cap}.{k}", name) for k, v in _cap_props(tpl, cap).items()
            }
            for cap in tpl.get("capabilities") or {}
        }
        plan.components.append(
            Component(
                name=name,
                type=type_name,
                stage=stage or "",
                type_chain=registry.chain(type_name),
                host=host_of(name),
                properties=props,
                artifacts=artifacts,
                capabilities=capabilities,
            )
        )

    host_group = {g.name: g.name for g in plan.groups}
    for comp in plan.components:
        comp.host_group = _bottom_host(comp.name, host_of, host_group)

    plan.edges = _edges(requirements, parsed_nodes)
    problems += _check_cycles(plan.edges, doc)
    _attach_volumes(plan, typed, registry, requirements, resolver)
    plan.elasticity = _elasticity(plan, typed, registry, requirements, host_of, topology, resolver)
    plan.placement, placement_problems, placement_warnings = apply_policies(
        plan, doc.data, _groups_of(plan, topology), resolver
    )
    problems += placement_problems
    warnings += placement_warnings
    problems += _ssh_jump_host(plan, topology)
    for name, out in (topology.get("outputs") or {}).items():
        out = out if isinstance(out, dict) else {"value": out}
        value = resolver.resolve(out.get("value"), f"output {name}")
        plan.outputs.append(Output(name=name, value=value, description=str(out.get("description") or "")))
    problems += resolver.problems
    plan.secrets = resolver.secrets
    for name in secret_inputs:
        if name in values:
            plan.secrets.setdefault(name, values[name])
    return plan


_MISSING = object()


def _dig(value: Any, path: list[Any]) -> tuple[bool, Any]:
    for key in path:
        if (isinstance(value, dict) and key in value) or (
            isinstance(value, list) and isinstance(key, int) and -len(value) <= key < len(value)
        ):
            value = value[key]
        else:
            return False, None
    return True, value


def _from_parser(value: Any) -> Any:
    """tosca-parser's Function objects back to their raw {name: args} form."""
    from toscaparser.functions import Function

    if isinstance(value, Function):
        return {value.name: value.args}
    return value


def _parsed_default(parsed_node: Any, path: list[Any]) -> Any:
    prop = parsed_node.get_property_value(path[0])
    if prop is not None:
        found, value = _dig(_from_parser(prop), path[1:])
        return value if found else _MISSING
    if len(path) >= 2:
        cap = parsed_node.get_capability(path[0])
        if cap is not None:
            value = cap.get_property_value(path[1])
            if value is not None:
                found, value = _dig(_from_parser(value), path[2:])
                return value if found else _MISSING
    return _MISSING


def _type_defaults(parsed_node: Any) -> dict[str, Any]:
    """Property defaults from the type definition (the template's own values are resolved separately)."""
    if parsed_node is None:
        return {}
    defaults = {}
    for prop in parsed_node.get_properties_objects():
        if prop.name not in (parsed_node.entity_tpl.get("properties") or {}):
            value = _from_parser(prop.value)
            if value is not None:
                defaults[prop.name] = value
    return defaults


def _requirements(tpl: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    """(requirement name, target node, relationship type or None) for each requirement of a node template."""
    out = []
    for req in tpl.get("requirements") or []:
        if not isinstance(req, dict) or len(req) != 1:
            continue
        ((req_name, spec),) = req.items()
        if isinstance(spec, str):
            out.append((req_name, spec, None))
        elif isinstance(spec, dict) and spec.get("node"):
            rel = spec.get("relationship")
            rel_type = rel.get("type") if isinstance(rel, dict) else rel
            out.append((req_name, spec["node"], rel_type))
    return out


_DEFAULT_KIND = {
    "host": "HostedOn",
    "lrms": "HostedOn",
    "dependency": "DependsOn",
    "wn": "Manages",
    "local_storage": "AttachesTo",
    "master": "ConnectsTo",
}


def _edges(requirements: dict[str, list[tuple[str, str, str | None]]], parsed_nodes: dict[str, Any]) -> list[Edge]:
    edges = []
    for source, reqs in requirements.items():
        parsed_rels = {}
        parsed_node = parsed_nodes.get(source)
        if parsed_node is not None:
            parsed_rels = {target.name: rel.type for rel, target in parsed_node.relationships.items()}
        for req_name, target, rel_type in reqs:
            kind = rel_type or parsed_rels.get(target) or _DEFAULT_KIND.get(req_name, "DependsOn")
            edges.append(Edge(source=source, target=target, kind=kind.rsplit(".", 1)[-1], requirement=req_name))
    return edges


def _check_cycles(edges: list[Edge], doc: YamlDocument) -> list[TemplateProblem]:
    graph: dict[str, set[str]] = {}
    for e in edges:
        if e.kind in _ORDERING_KINDS or e.requirement in ("host", "dependency", "lrms"):
            graph.setdefault(e.source, set()).add(e.target)
    try:
        TopologicalSorter(graph).prepare()
    except CycleError as exc:
        cycle = exc.args[1]
        return [
            TemplateProblem(
                "cycle",
                f"requirements form a cycle: {' -> '.join(reversed(cycle))}",
                node=cycle[0],
                path=("topology_template", "node_templates", cycle[0], "requirements"),
                hint="remove one of these requirements (a node cannot depend on itself, even indirectly)",
            )
        ]
    return []


def _bottom_host(node: str, host_of: Any, groups: dict[str, str]) -> str | None:
    seen = set()
    current: str | None = node
    while current and current not in seen:
        if current in groups:
            return current
        seen.add(current)
        current = host_of(current)
    return None


def _cap_props(tpl: dict[str, Any], cap: str) -> dict[str, Any]:
    return ((tpl.get("capabilities") or {}).get(cap) or {}).get("properties") or {}


def _group(
    name: str,
    tpl: dict[str, Any],
    parsed_node: Any,
    resolver: Resolver,
    problems: list[TemplateProblem],
    doc: YamlDocument,
) -> NodeGroup:
    def cap(cap_name: str, prop: str, default: Any = None) -> Any:
        raw = _cap_props(tpl, cap_name)
        if prop in raw:
            value = resolver.resolve(raw[prop], f"node {name} capability {cap_name}.{prop}", name)
        else:
            value = _parsed_default(parsed_node, [cap_name, prop]) if parsed_node is not None else _MISSING
        return default if value is _MISSING or value is None or is_ref(value) else value

    def as_int(value: Any, what: str, default: int) -> int:
        try:
            return int(value)
        except (TypeError, ValueError):
            problems.append(
                TemplateProblem(
                    "tosca",
                    f"node {name!r}: {what} must be an integer, got {value!r}",
                    node=name,
                    path=("topology_template", "node_templates", name, "capabilities"),
                )
            )
            return default

    count = as_int(cap("scalable", "count", 1), "scalable.count", 1)
    min_i = as_int(cap("scalable", "min_instances", 1), "scalable.min_instances", 1)
    max_i = as_int(cap("scalable", "max_instances", 1), "scalable.max_instances", 1)
    group = NodeGroup(
        name=name,
        count=count,
        min_count=min(min_i, count),
        max_count=max(max_i, count),
        removal_list=list(cap("scalable", "removal_list", []) or []),
        num_cpus=_maybe(lambda v: int(v), cap("host", "num_cpus")),
        mem_mb=_maybe(lambda v: int(size_to_mib(v)), cap("host", "mem_size")),
        disk_gb=_maybe(size_to_gib, cap("host", "disk_size")),
        instance_type=cap("host", "instance_type"),
        num_gpus=_maybe(lambda v: int(v), cap("host", "num_gpus")),
        image=cap("os", "image"),
        os_type=cap("os", "type"),
        os_distribution=cap("os", "distribution"),
        os_version=_maybe(str, cap("os", "version")),
        network=str(cap("endpoint", "network_name", "PRIVATE") or "PRIVATE").upper(),
        dns_name=cap("endpoint", "dns_name"),
    )
    ports = cap("endpoint", "ports", {}) or {}
    if isinstance(ports, dict):
        for port_name, spec in ports.items():
            spec = spec or {}
            group.ports.append(
                PortRule(
                    name=str(port_name),
                    protocol=str(spec.get("protocol", "tcp")),
                    source=_maybe(int, spec.get("source")),
                    source_range=[int(x) for x in spec["source_range"]] if spec.get("source_range") else None,
                    remote_cidr=str(spec.get("remote_cidr") or "0.0.0.0/0"),
                )
            )
    return group


def _maybe(convert: Any, value: Any) -> Any:
    if value is None or is_ref(value):
        return None
    try:
        return convert(value)
    except (TypeError, ValueError):
        return None


def _attach_volumes(
    plan: Plan,
    typed: dict[str, Any],
    registry: TypeRegistry,
    requirements: dict[str, list[tuple[str, str, str | None]]],
    resolver: Resolver,
) -> None:
    groups = {g.name: g for g in plan.groups}
    for source, tpl in typed.items():
        for req in tpl.get("requirements") or []:
            if not isinstance(req, dict) or len(req) != 1:
                continue
            ((_, spec),) = req.items()
            target = spec if isinstance(spec, str) else (spec or {}).get("node")
            if source not in groups or target not in typed:
                continue
            if not registry.derives_from(typed[target]["type"], BLOCK_STORAGE):
                continue
            rel = spec.get("relationship") if isinstance(spec, dict) else None
            rel_props = (rel.get("properties") if isinstance(rel, dict) else None) or {}
            vol_props = {
                k: resolver.resolve(v, f"node {target}", target)
                for k, v in (typed[target].get("properties") or {}).items()
            }
            groups[source].volumes.append(
                Volume(
                    name=target,
                    size_gb=_maybe(size_to_gib, vol_props.get("size")),
                    mount_path=rel_props.get("location"),
                    device=rel_props.get("device"),
                    volume_type=vol_props.get("type"),
                    fs_type=rel_props.get("fs_type"),
                )
            )


def _elasticity(
    plan: Plan,
    typed: dict[str, Any],
    registry: TypeRegistry,
    requirements: dict[str, list[tuple[str, str, str | None]]],
    host_of: Any,
    topology: dict[str, Any],
    resolver: Resolver,
) -> Elasticity:
    groups = {g.name: g for g in plan.groups}
    for name, tpl in typed.items():
        if not registry.derives_from(tpl["type"], ELASTICITY):
            continue
        worker = next((t for r, t, _ in requirements.get(name, []) if r == "wn"), None)
        group = _bottom_host(worker, host_of, groups) if worker else None
        if worker and group:  # INDIGO puts the elastic bounds on the worker node's `wn` capability
            wn = {
                k: resolver.resolve(v, f"node {worker} capability wn.{k}", worker)
                for k, v in _cap_props(typed[worker], "wn").items()
            }
            _apply_bounds(groups[group], wn)
        props = {k: resolver.resolve(v, f"node {name}", name) for k, v in (tpl.get("properties") or {}).items()}
        settings = {k: props[k] for k in ELASTIC_SETTINGS if props.get(k) is not None}
        return _elastic(f"node {name}", groups.get(group), settings)
    for policy in topology.get("policies") or []:
        if not isinstance(policy, dict) or len(policy) != 1:
            continue
        ((pname, spec),) = policy.items()
        if not registry.derives_from(str((spec or {}).get("type", "")), SCALING):
            continue
        targets = [t for t in (spec.get("targets") or []) if t in groups]
        props = {k: resolver.resolve(v, f"policy {pname}") for k, v in (spec.get("properties") or {}).items()}
        group = groups.get(targets[0]) if targets else None
        if group is not None:
            _apply_bounds(group, props)
        settings = {k: props[k] for k in ELASTIC_SETTINGS if props.get(k) is not None}
        return _elastic(f"policy {pname}", group, settings)
    return Elasticity()


def _apply_bounds(group: NodeGroup, props: dict[str, Any]) -> None:
    if isinstance(props.get("min_instances"), int):
        group.min_count = min(props["min_instances"], group.count)
    if isinstance(props.get("max_instances"), int):
        group.max_count = max(props["max_instances"], group.count)


def _elastic(source: str, group: NodeGroup | None, settings: dict[str, Any]) -> Elasticity:
    return Elasticity(
        enabled=True,
        source=source,
        group=group.name if group else None,
        min_count=group.min_count if group else 0,
        max_count=group.max_count if group else 0,
        settings=json.loads(json.dumps(settings, default=str)),
    )


def _groups_of(plan: Plan, topology: dict[str, Any]) -> dict[str, list[str]]:
    """The compute groups a policy target stands for: a group itself, a TOSCA group's members, a component's host."""
    found: dict[str, list[str]] = {g.name: [g.name] for g in plan.groups}
    for comp in plan.components:
        if comp.host_group:
            found[comp.name] = [comp.host_group]
    for name, spec in (topology.get("groups") or {}).items():
        members = (spec.get("members") if isinstance(spec, dict) else None) or []
        found[name] = [g for m in members for g in found.get(str(m), [])]
    return found


def _ssh_jump_host(plan: Plan, topology: dict[str, Any]) -> list[TemplateProblem]:
    """Flag the group an SshJumpHost policy targets; it must target one Compute group, and only one policy may."""
    groups = {g.name: g for g in plan.groups}
    registry = TypeRegistry()
    problems = []
    for index, policy in enumerate(topology.get("policies") or []):
        if not isinstance(policy, dict) or len(policy) != 1:
            continue
        ((pname, spec),) = policy.items()
        if not registry.derives_from(str((spec or {}).get("type", "")), _JUMP_HOST_POLICY):
            continue
        targets = list(spec.get("targets") or [])
        if len(targets) != 1 or targets[0] not in groups:
            problems.append(
                TemplateProblem(
                    "tosca",
                    f"policy {pname!r}: an SshJumpHost policy targets exactly one Compute node, not {targets}",
                    node=pname,
                    path=("topology_template", "policies", index),
                    hint=f"target the front-end's Compute node, one of: {', '.join(groups)}",
                )
            )
            continue
        groups[targets[0]].ssh_jump_host = True
    flagged = [g.name for g in plan.groups if g.ssh_jump_host]
    if len(flagged) > 1:
        problems.append(
            TemplateProblem(
                "tosca",
                f"several SSH jump hosts: {', '.join(flagged)}",
                hint="a deployment has one front-end to go through",
            )
        )
    return problems


def plan_stages(plan: Plan) -> dict[str, list[str]]:
    """Stage -> names of what runs in it, for summaries."""
    stages: dict[str, list[str]] = {stage: [] for stage in STAGES}
    stages[PROVISION] = [g.name for g in plan.groups]
    for comp in plan.components:
        stages.setdefault(comp.stage, []).append(comp.name)
    return {stage: names for stage, names in stages.items() if names}
