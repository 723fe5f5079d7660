"""Configure and deploy stages: each TOSCA component becomes a framework role run over SSH on its group's VMs."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from dodas_tasks.configure import NodeTarget, run_on_nodes, run_script
from dodas_tasks.deploy.framework_secrets import all_framework_secrets, ensure_framework_secret
from dodas_tasks.deploy.refs import References, resolve_outputs
from dodas_tasks.deploy.ssh_access import SshAccess
from dodas_tasks.frameworks.base import (
    WORKER_ROLES,
    Cluster,
    DeployContext,
    Framework,
    Node,
    Script,
    ScriptResult,
    SiteServices,
    Verified,
)
from dodas_tasks.frameworks.cluster_view import (
    binding_of,
    cluster_of,
    deployable_components,
    framework_names,
    ready_nodes,
)
from dodas_tasks.frameworks.registry import (
    Binding,
    framework,
    framework_settings,
    needs_auth_secret,
    needs_deployment_id,
    needs_reach,
    needs_runner,
    needs_site_services,
)
from dodas_tasks.iam.cluster_client import ensure_cluster_client, stored_client
from dodas_tasks.iam.errors import IdpError
from dodas_tasks.store import DeploymentRecord, NodeRecord, NodeState, Store
from dodas_tasks.tosca.plan import CONFIGURE, Component

if TYPE_CHECKING:
    from dodas_tasks.iam import TokenSource

Log = Callable[[str], None]
VERIFIED_KEY = "_verified"  # deployment option: framework -> fingerprint of the central nodes its full check passed on
IAM_PROPERTIES = ("iam_access_token", "iam_client_id", "iam_client_secret")  # DODAS framework types' IAM slots


def deployment_framework(store: Store, dep: DeploymentRecord, name: str) -> Framework:
    """Framework `name` as the deployment's watchers (elasticity, healing) use it: its site settings, and an SSH
    runner only for frameworks that need one (the Deployer reads secrets; HTTP-only frameworks skip that cost,
    reaching the node's API through the deployment's SSH route, whose key is read only if it has jump hosts)."""
    if needs_runner(name):
        return Deployer(store, dep.id, log=lambda _m: None).framework(name)
    settings = framework_settings(dep.options, name)
    if needs_reach(name):
        settings["reach"] = SshAccess(store, dep.id).reach
    return framework(name, settings)


class Deployer:
    """Runs the configure/deploy/verify stages of one deployment against its provisioned nodes."""

    def __init__(
        self,
        store: Store,
        deployment_id: str,
        log: Log = print,
        tokens: TokenSource | None = None,
        on_secret: Callable[[str], None] | None = None,
        site_services: SiteServices | None = None,
    ) -> None:
        """tokens: the owner's token source (delegated deployments); frameworks' IAM credentials come from it.
        on_secret: told every secret obtained while deploying (Airflow's mask_secret), before anything logs it.
        site_services: the site's Marathon and Chronos, for components hosted on no VM of the deployment."""
        self.store = store
        self.deployment_id = deployment_id
        self.log = log
        self.tokens = tokens
        self.on_secret = on_secret or (lambda _secret: None)
        self.site_services = site_services
        self.deployment = store.get_deployment(deployment_id)
        self.plan = self.deployment.plan
        self.ssh = SshAccess(store, deployment_id)
        self._secrets = [str(v) for v in store.deployment_secret_inputs(deployment_id).values() if v]
        client = stored_client(self.deployment)
        if client is not None:
            self._secrets.append(client.client_secret)
        self._secrets += all_framework_secrets(self.deployment).values()

    # -- the cluster as frameworks see it --------------------------------------------------------------------

    def nodes(self) -> list[NodeRecord]:
        """The deployment's ready nodes, as recorded now."""
        return ready_nodes(self.store.list_nodes(self.deployment_id))

    def cluster(self, framework_name: str) -> Cluster:
        """The framework's nodes by role, as recorded now."""
        return cluster_of(self.plan, self.store.list_nodes(self.deployment_id), framework_name)

    def framework(self, name: str) -> Framework:
        """Framework `name` with this deployment's site settings (submit options: container runtime, ports …),
        this deployment's SSH runner when the framework reads its load through a node, and the site services
        handed in when it puts work on them, and the deployment's secret for it when it authenticates its members."""
        settings = framework_settings(self.deployment.options, name)
        if needs_auth_secret(name):
            settings["auth_secret"] = self._framework_secret(name)
        if needs_runner(name):
            settings["runner"] = self.run
        if needs_reach(name):
            settings["reach"] = self.ssh.reach
        if needs_deployment_id(name):
            settings["deployment_id"] = self.deployment_id
        if needs_site_services(name):
            settings["site_services"] = self.site_services
        return framework(name, settings)

    def _framework_secret(self, name: str) -> str:
        secret = ensure_framework_secret(self.store, self.deployment_id, name)
        if secret not in self._secrets:  # generated just now: masked before any script can print it
            self._secrets.append(secret)
            self.on_secret(secret)
        return secret

    def frameworks(self) -> list[str]:
        return framework_names(self.plan)

    # -- running scripts over SSH ------------------------------------------------------------------------------

    def _target(self, node: Node, nodes: list[NodeRecord] | None = None) -> NodeTarget:
        """The framework's node as the SSH runner reaches it (through the deployment's jump hosts, if any)."""
        nodes = self.nodes() if nodes is None else nodes
        return self.ssh.target(next(n for n in nodes if n.name == node.name), nodes)

    def run(self, node: Node, script: Script) -> ScriptResult:
        """One script on one node (the frameworks' Runner)."""
        result = run_script(
            self._target(node),
            script.body,
            env=dict(script.env),
            private_key=self.ssh.private_key,
            known_hosts=self.ssh.known_hosts(),
            on_new_host_key=self.ssh.pin,
            secrets=self._secrets,
            log=self.log if script.log_output else _quiet,
            check=False,
        )
        return ScriptResult(result.exit_code, result.stdout, result.stderr)

    # -- stages ----------------------------------------------------------------------------------------------

    def apply(self, component_name: str) -> list[str]:
        """Install and start one component's role on every ready node of its group that lacks the current config,
        then run the framework's API-driven deploy step (Marathon apps); returns what changed."""
        comp = self.plan.component(component_name)
        binding = binding_of(comp)
        fw = self.framework(binding.framework)
        cluster = self.cluster(binding.framework)
        refs = References(self.plan, self.nodes(), self.store.deployment_secret_inputs(self.deployment_id))
        changed = self._run_node_scripts(comp, binding, fw, cluster, self.property_env(comp, refs))
        context = DeployContext(
            component=comp.name,
            role=binding.role,
            properties=self.iam_credentials(comp, {k: refs.resolve(v) for k, v in comp.properties.items()}),
            cluster=cluster,
            run=self.run,
            peers={name: self.cluster(name) for name in self.frameworks() if name != binding.framework},
            log=self.log,
            deployment_id=self.deployment_id,
            artifacts={k: refs.resolve(v) for k, v in comp.artifacts.items()},
            host=self._host_capabilities(comp, refs),
            requirements=self._requirements(comp),
        )
        changed += fw.deploy(context)
        return changed

    def _host_capabilities(self, comp: Component, refs: References) -> dict[str, Any]:
        """The capabilities of the component `comp` is hosted on (none when it sits on a VM or nowhere)."""
        host = next((c for c in self.plan.components if c.name == comp.host), None)
        return {} if host is None else {cap: refs.resolve(props) for cap, props in host.capabilities.items()}

    def _requirements(self, comp: Component) -> dict[str, tuple[str, ...]]:
        found: dict[str, tuple[str, ...]] = {}
        for edge in self.plan.edges:
            if edge.source == comp.name:
                found[edge.requirement] = (*found.get(edge.requirement, ()), edge.target)
        return found

    def release(self) -> list[str]:
        """At undeploy: frameworks with components hosted on no VM of this deployment (apps on a site's Marathon)
        remove what they put there (see Framework.release); the rest went with the VMs."""
        released = []
        for name in self.frameworks():
            if any(binding_of(c).framework == name and c.host_group is None for c in deployable_components(self.plan)):
                released += self.framework(name).release()
        return released

    def _run_node_scripts(
        self, comp: Component, binding: Binding, fw: Framework, cluster: Cluster, properties: dict[str, str]
    ) -> list[str]:
        targets = cluster.nodes(binding.role)
        if not targets:
            self.log(f"{comp.name}: no ready node in group {comp.host_group}; no node scripts to run")
            return []
        records = {n.name: n for n in self.nodes()}
        scripts = {}
        for node in targets:
            install, configure = fw.install_script(node), fw.configure_script(binding.role, node, cluster)
            configure = Script(configure.name, {**properties, **configure.env}, configure.body)
            digest = _digest(comp.name, install, configure)
            if records[node.name].applied.get(comp.name) == digest:
                continue  # already configured with exactly this configuration
            scripts[node.name] = (node, install, configure, digest)
        if not scripts:
            self.log(f"{comp.name}: all {len(targets)} node(s) already configured")
            return []
        for name in scripts:
            self.store.update_node(records[name].id, state=NodeState.CONFIGURING)
        by_name = {name: node for name, (node, *_rest) in scripts.items()}
        ready = self.nodes()
        results = run_on_nodes(
            [self._target(node, ready) for node in by_name.values()],
            lambda t: scripts[t.name][1].body + "\n" + scripts[t.name][2].body,
            env=lambda t: {**scripts[t.name][1].env, **scripts[t.name][2].env},
            private_key=self.ssh.private_key,
            known_hosts=self.ssh.known_hosts(),
            on_new_host_key=self.ssh.pin,
            secrets=self._secrets,
            log=self.log,
        )
        done = NodeState.CONFIGURED if comp.stage == CONFIGURE else NodeState.STARTED
        for name in results:
            record = records[name]
            self.store.update_node(record.id, state=done, applied={**record.applied, comp.name: scripts[name][3]})
        self.log(f"{comp.name}: {binding.role} running on {', '.join(results)}")
        return list(results)

    def iam_credentials(self, comp: Component, properties: Mapping[str, Any]) -> dict[str, Any]:
        """The component's resolved properties with the IAM slots the template left empty filled from the IAM
        layer: a fresh access token of the owner and the cluster's own registered client (delegated deployments
        only), and iam_endpoint set to the IdP they belong to. Values the template gives win. Only API-driven
        deploys get them: node scripts' digests stay stable.
        """
        filled = {k: v for k, v in properties.items() if v is not None}
        empty = [k for k in IAM_PROPERTIES if k in comp.properties and not filled.get(k)]
        if not empty or self.tokens is None:
            return filled
        try:
            client = ensure_cluster_client(self.store, self.deployment_id, self.tokens.iam)
        except IdpError as exc:
            raise IdpError(
                f"{comp.name}: no IAM client for the cluster ({exc}); give the template's iam_client_id and "
                "iam_client_secret inputs a client registered by hand instead"
            ) from None
        issued = {
            "iam_access_token": self.tokens.access_token(),
            "iam_client_id": client.client_id,
            "iam_client_secret": client.client_secret,
        }
        for secret in (issued["iam_access_token"], client.client_secret):
            self._secrets.append(secret)
            self.on_secret(secret)
        filled.update({k: issued[k] for k in empty})
        filled["iam_endpoint"] = self.tokens.iam.config.issuer  # those credentials are good at this IdP only
        self.log(f"{comp.name}: IAM credentials from the IAM layer ({', '.join(empty)}; client {client.client_id})")
        return filled

    @staticmethod
    def property_env(comp: Component, refs: References) -> dict[str, str]:
        """The component's TOSCA properties, resolved, as TOSCA_PROPERTY_<NAME> variables for its scripts.

        Values travel as environment (quoted by the SSH runner), never spliced into a command line.
        """
        env = {}
        for name, value in comp.properties.items():
            resolved = refs.resolve(value)
            if resolved is None:
                continue
            text = resolved if isinstance(resolved, str) else json.dumps(resolved)
            env[f"TOSCA_PROPERTY_{re.sub(r'[^A-Za-z0-9]', '_', name).upper()}"] = text
        return env

    def verify(self) -> list[Verified]:
        """Each framework's full check (a real job) once per configuration of its central nodes; a run that
        changed only which workers there are gets the framework's membership check instead, so scaling does
        not queue a test job behind the users' work."""
        checks = []
        verified = dict(self.deployment.options.get(VERIFIED_KEY) or {})
        for name in self.frameworks():
            fw, cluster = self.framework(name), self.cluster(name)
            fingerprint = self._central_fingerprint(cluster)
            result = fw.membership_check(cluster) if verified.get(name) == fingerprint else None
            if result is None:
                result = fw.verify(cluster, self.run)
                verified[name] = fingerprint
                self.store.modify_deployment(
                    self.deployment_id, lambda d: {"options": {**d.options, VERIFIED_KEY: dict(verified)}}
                )
            self.log(f"verify {name}: {result.summary}")
            self.store.add_event(self.deployment_id, "verify", f"{name}: {result.summary}")
            checks.append(result)
        return checks

    def _central_fingerprint(self, cluster: Cluster) -> str:
        """Which VMs hold the framework's non-worker roles, and with which configuration."""
        records = {n.name: n for n in self.nodes()}
        central = sorted(
            (role, node.name, records[node.name].cloud_id, sorted(records[node.name].applied.items()))
            for role, members in cluster.roles.items()
            if role not in WORKER_ROLES
            for node in members
            if node.name in records
        )
        return hashlib.sha256(json.dumps(central, default=str).encode()).hexdigest()[:16]

    def outputs(self) -> dict[str, object]:
        outputs = resolve_outputs(self.plan, self.store.list_nodes(self.deployment_id))
        for name in self.frameworks():
            for key, value in self.framework(name).outputs(self.cluster(name)).items():
                outputs.setdefault(key, value)
        self.store.update_deployment(self.deployment_id, outputs=outputs)
        return outputs


def _quiet(_line: str) -> None:
    """Log sink of scripts whose output is data, not progress (see Script.log_output)."""


def _digest(component: str, *scripts: Script) -> str:
    text = json.dumps([component, *[(s.name, dict(s.env), s.body) for s in scripts]], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
