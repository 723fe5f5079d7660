"""A compile-time promise kept at deploy time: every component type the compiler accepts has a deployer.

The set of accepted types comes from the compiler's own rule (TypeRegistry.stage over the type library), the
bindings from the deployer's own lookup (frameworks.registry), so a type that compiles but has no framework and
role fails here, not in a user's deployment run.
"""

from __future__ import annotations

import pytest

from dodas_tasks.frameworks.registry import BINDINGS, FRAMEWORKS, ComponentNotDeployable, binding_for, framework_class
from dodas_tasks.tosca.compiler import compile
from dodas_tasks.tosca.errors import DodasTemplateError
from dodas_tasks.tosca.plan import CONFIGURE, DEPLOY
from dodas_tasks.tosca.stages import TypeRegistry

REGISTRY = TypeRegistry()


def accepted_component_types() -> list[str]:
    """Library types the compiler turns into configure or deploy components (not compute groups, volumes or
    elasticity switches, which need no framework)."""
    return [n for n in REGISTRY.accepted_types() if REGISTRY.stage(n)[1] in (CONFIGURE, DEPLOY)]


def test_every_component_type_the_compiler_accepts_has_a_framework_and_role() -> None:
    accepted = accepted_component_types()
    assert len(accepted) >= len(set(BINDINGS)) > 10  # the enumeration is not empty by accident
    missing: list[str] = []
    for type_name in accepted:
        try:
            binding = binding_for(REGISTRY.chain(type_name), type_name)  # what the deployer asks at deploy time
        except ComponentNotDeployable:
            missing.append(f"{type_name}: no binding")
            continue
        if binding.framework not in FRAMEWORKS:
            missing.append(f"{type_name}: framework {binding.framework!r} is not registered")
        elif binding.role not in framework_class(binding.framework).roles:
            missing.append(f"{type_name}: {binding.framework} has no role {binding.role!r}")
    assert not missing, "accepted by the compiler but not deployable:\n" + "\n".join(missing)


def test_every_bound_type_is_accepted_by_the_compiler() -> None:
    """A binding the compiler refuses is dead: the type library or NOT_DEPLOYABLE is wrong."""
    accepted = set(accepted_component_types())
    assert sorted(set(BINDINGS) - accepted) == []


TEMPLATE = """
tosca_definitions_version: tosca_simple_yaml_1_0
imports:
  - indigo: https://raw.githubusercontent.com/indigo-dc/tosca-types/master/custom_types.yaml
node_types:
  my.App:
    derived_from: tosca.nodes.Container.Application
topology_template:
  node_templates:
    vm:
      type: tosca.nodes.indigo.Compute
    oneclient:
      type: tosca.nodes.indigo.CmsOneclient
      properties: {oneclient_pkg: oneclient}
      requirements: [{host: vm}]
    app:
      type: my.App
      requirements: [{host: vm}]
"""


def test_types_without_a_deployer_are_refused_at_compile_time_with_the_list() -> None:
    with pytest.raises(DodasTemplateError) as info:
        compile(TEMPLATE, {}, source="t.yaml")
    problems = info.value.problems
    assert {p.type_name for p in problems if p.type_name} == {"tosca.nodes.indigo.CmsOneclient", "my.App"}
    assert all(p.kind == "unsupported_type" for p in problems)
    assert "unsupported TOSCA types: my.App, tosca.nodes.indigo.CmsOneclient" in info.value.report()
