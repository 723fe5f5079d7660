"""Which stage a node template belongs to, chosen by its type's derivation chain, never by its name."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml

from dodas_tasks.tosca.loader import TYPES_DIR
from dodas_tasks.tosca.plan import CONFIGURE, DEPLOY, PROVISION

COMPUTE = "tosca.nodes.Compute"
BLOCK_STORAGE = "tosca.nodes.BlockStorage"
ELASTICITY = "tosca.nodes.indigo.dodas.Elasticity"

# Base type -> stage. The first base found walking up a type's chain decides.
STAGE_OF_BASE: dict[str, str | None] = {
    COMPUTE: PROVISION,
    BLOCK_STORAGE: PROVISION,
    "tosca.nodes.indigo.dodas.ClusterManager": CONFIGURE,
    "tosca.nodes.Container.Runtime": CONFIGURE,
    "tosca.nodes.indigo.Container.Runtime.Docker": CONFIGURE,  # derives from Root upstream: the Marathon runtime
    "tosca.nodes.indigo.dodas.Framework": DEPLOY,
    "tosca.nodes.Container.Application": DEPLOY,
    ELASTICITY: None,  # no install step: switches the elasticity sensor DAG on
}

# Library types below a stage base that no framework deploys: abstract bases a template must specialise, and INDIGO
# frameworks this project does not implement. The library keeps them so corpus templates validate; the compiler
# refuses them, and a template's own subtypes of them, so nothing compiles that has no deployer (tests/test_bindings).
NOT_DEPLOYABLE = frozenset(
    {
        "tosca.nodes.Container.Application",
        "tosca.nodes.Container.Application.Docker",
        "tosca.nodes.Container.Runtime",
        "tosca.nodes.indigo.Container.Application.Docker",
        "tosca.nodes.indigo.dodas.ClusterManager",
        "tosca.nodes.indigo.dodas.Framework",
        "tosca.nodes.indigo.LRMS.FrontEnd",
        "tosca.nodes.indigo.LRMS.WorkerNode",
        "tosca.nodes.indigo.CmsOneclient",
        "tosca.nodes.indigo.XCache",
    }
)


@cache
def _library_types() -> dict[str, dict[str, Any]]:
    """Node and policy types of our library and of TOSCA's normative definitions, parsed once per process."""
    from toscaparser.elements.entity_type import EntityType

    types: dict[str, dict[str, Any]] = {
        name: spec for name, spec in EntityType.TOSCA_DEF.items() if isinstance(spec, dict)
    }
    for path in sorted(Path(TYPES_DIR).glob("*.yaml")):
        data = yaml.safe_load(path.read_text()) or {}
        for section in ("node_types", "policy_types", "relationship_types", "capability_types", "data_types"):
            types.update(data.get(section) or {})
    return types


class TypeRegistry:
    """Type definitions visible to one template: our library, TOSCA's normative types, the template's own."""

    def __init__(self, template_types: dict[str, dict[str, Any]] | None = None) -> None:
        self._own = dict(template_types or {})

    def get(self, name: str) -> dict[str, Any] | None:
        spec = self._own.get(name)
        return spec if spec is not None else _library_types().get(name)

    def known(self, name: str) -> bool:
        return self.get(name) is not None

    def chain(self, name: str) -> list[str]:
        """[name, parent, grandparent, ...]; stops at an unknown parent or a loop."""
        chain: list[str] = []
        current: str | None = name
        while current and current not in chain:
            chain.append(current)
            spec = self.get(current)
            current = spec.get("derived_from") if spec else None
        return chain

    def derives_from(self, name: str, base: str) -> bool:
        return base in self.chain(name)

    def stage(self, name: str) -> tuple[bool, str | None]:
        """(deployable, stage). Elasticity nodes are deployable with no stage; a type whose nearest library
        ancestor (itself, for a library type) is NOT_DEPLOYABLE is not deployable."""
        chain = self.chain(name)
        if next((t for t in chain if t in _library_types()), None) in NOT_DEPLOYABLE:
            return False, None
        for base in chain:
            if base in STAGE_OF_BASE:
                return True, STAGE_OF_BASE[base]
        return False, None

    def accepted_types(self) -> list[str]:
        """Every type of our library (and TOSCA's) that the compiler accepts on a node template."""
        return sorted(n for n in _library_types() if self.stage(n)[0])

    def deployable_types(self) -> list[str]:
        """Concrete node types of our library that a template may use (for error hints)."""
        names = [n for n in self.accepted_types() if n.startswith("tosca.nodes.indigo.")]
        return sorted(n for n in names if ".dodas." not in n.replace("dodas.Spark", ""))
