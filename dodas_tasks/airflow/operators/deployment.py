"""Thin operators over the deploy library: one per stage of a deployment DAG run.

Every run reconciles: provision makes the cloud match the desired counts (deletes too), configure/deploy install
only what is missing, finalize sets the orchestrator status from what this run recorded in the store.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException, TaskDeferred

from dodas_tasks.airflow.hooks.airflow_api import note_run
from dodas_tasks.store import DeploymentStatus, Store

# Nothing to configure, verify or act for the owner on: being deleted, or deleted (a stray run changes nothing)
DELETING_OR_DELETED = {DeploymentStatus.DELETE_IN_PROGRESS, DeploymentStatus.DELETE_COMPLETE}
DELETION_RUN_KEY = "deletion_run"  # XCom of begin: whether this run began as a deletion (else it creates/updates)
SINCE_EVENT_KEY = "since_event"  # XCom of begin: the deployment's last event before this run (its failures follow)
IN_TASK_BOOT_WAIT_S = 5.0  # boots shorter than this are waited for in the task, longer ones in the triggerer
IN_TASK_BOOT_POLL_S = 0.5
SUPERSEDED = "undeploy requested during this run: it stops here, the next run deletes the deployment"


def _mask(store: Store, deployment_id: str) -> None:
    """Register the deployment's secrets with Airflow's masker before anything can log them."""
    from airflow.sdk.log import mask_secret

    from dodas_tasks.iam.cluster_client import stored_client

    for value in store.deployment_secret_inputs(deployment_id).values():
        if value:
            mask_secret(str(value))
    client = stored_client(store.get_deployment(deployment_id))
    if client is not None:
        mask_secret(client.client_secret)
        mask_secret(client.registration_token)


def records_failure(method: Callable[..., Any]) -> Callable[..., Any]:
    """Write a task's last failure into the deployment's events so finalize can name the task and node.

    A try that will be retried is not recorded: a retry that succeeds must not fail the run.
    """

    @functools.wraps(method)
    def wrapper(self: DeploymentOperator, context: Context, *args: Any, **kwargs: Any) -> Any:
        from dodas_tasks.iam import RefreshTokenRevoked

        try:
            return method(self, context, *args, **kwargs)
        except (AirflowSkipException, TaskDeferred):
            raise
        except RefreshTokenRevoked as exc:  # met in a cloud call (a site acting as the owner): fail it, saying so
            with Store() as store:
                reason = _owner_lost(store, self.deployment_id, exc)
                from dodas_tasks.deploy.finalize import record_failure

                record_failure(store, self.deployment_id, self.task_id, AirflowFailException(reason))
            raise AirflowFailException(reason) from None
        except Exception as exc:
            from dodas_tasks.deploy.finalize import record_failure

            final = isinstance(exc, AirflowFailException) or context["ti"].try_number > (self.retries or 0)
            if final:
                with Store() as store:
                    record_failure(store, self.deployment_id, self.task_id, exc)
            raise

    return wrapper


def _owner_lost(store: Store, deployment_id: str, exc: Exception) -> str:
    from dodas_tasks.iam import mark_token_failure

    return mark_token_failure(store, deployment_id, exc)


def _masking(source: Callable[[], str], mask: Callable[[str], None]) -> Callable[[], str]:
    """The token source, each token it gives registered with Airflow's masker before anything can log it."""

    def access_token() -> str:
        token = source()
        mask(token)
        return token

    return access_token


class DeploymentOperator(BaseOperator):
    """Base: knows its deployment; logs go to the task log through `self.log`."""

    template_fields = ()
    ui_color = "#e8f4fd"

    def __init__(self, *, deployment_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.deployment_id = deployment_id
        self.token_source: Any = None  # set per execution for delegated deployments (frameworks needing the user)
        self.owner_tokens: Callable[[], str] | None = None  # the same tokens, masked, for the cloud drivers

    def _store(self) -> Store:
        store = Store()
        _mask(store, self.deployment_id)
        self._act_for_owner(store)
        return store

    def _act_for_owner(self, store: Store) -> None:
        """A delegated deployment acts for its owner: every task gets a fresh access token from the one token
        source (refreshed on the way, however long the deployment), which also reaches the cloud drivers (sites
        that act as the owner); a dead delegation fails it, saying so. A deletion does not check it first: only
        a site that needs the owner to delete fails on it."""
        dep = store.get_deployment(self.deployment_id)
        if not dep.has_refresh_token:
            return
        from airflow.sdk.log import mask_secret

        from dodas_tasks.airflow.hooks.iam import IamHook, owner_access_tokens
        from dodas_tasks.iam import RefreshTokenRevoked

        if dep.status in DELETING_OR_DELETED:  # read the IdP's connection only if a cloud asks for the owner
            self.owner_tokens = _masking(owner_access_tokens(store, self.deployment_id), mask_secret)
            return
        self.token_source = IamHook().token_source(store, self.deployment_id)
        self.owner_tokens = _masking(self.token_source, mask_secret)
        try:
            self.owner_tokens()
        except RefreshTokenRevoked as exc:
            raise AirflowFailException(_owner_lost(store, self.deployment_id, exc)) from None

    def _deleting(self, store: Store) -> bool:
        return store.get_deployment(self.deployment_id).status in DELETING_OR_DELETED

    @staticmethod
    def _deletion_run(context: Context) -> bool:
        """Whether this run began as a deletion; a creation or update that an undeploy request overtook did not."""
        began = context["ti"].xcom_pull(task_ids="begin", key=DELETION_RUN_KEY)
        return True if began is None else bool(began)

    def _superseded(self, context: Context, store: Store) -> bool:
        """An undeploy was requested while this creation/update ran: it boots and configures nothing more."""
        return self._deleting(store) and not self._deletion_run(context)


class BeginOperator(DeploymentOperator):
    """Marks the run IN_PROGRESS and returns the event id from which finalize looks for failures.

    A run of a deleted deployment (a stray trigger) is skipped, so every task after it is, and changes nothing.
    Whether the run began as a deletion is kept (XCom `deletion_run`): an undeploy request that comes later stops
    a creation/update at its next task, and the deletion is left to the run the request queued."""

    @records_failure
    def execute(self, context: Context) -> int:
        from dodas_tasks.clouds.base import QuotaExceeded
        from dodas_tasks.deploy.finalize import set_status_unless_deleting
        from dodas_tasks.deploy.quota import check_quota

        with self._store() as store:
            dep = store.get_deployment(self.deployment_id)
            if dep.status == DeploymentStatus.DELETE_COMPLETE:
                reason = f"deployment {self.deployment_id} is deleted (DELETE_COMPLETE): this run changes nothing"
                note_run(context.get("dag_run"), reason)
                raise AirflowSkipException(reason)
            if dep.status == DeploymentStatus.DELETE_FAILED:  # a failed deletion is retried as a deletion
                store.set_status(
                    self.deployment_id, DeploymentStatus.DELETE_IN_PROGRESS, f"retry, run {context['run_id']}"
                )
            elif dep.status not in DELETING_OR_DELETED:
                first = dep.status in (DeploymentStatus.CREATE_IN_PROGRESS, DeploymentStatus.CREATE_FAILED)
                status = DeploymentStatus.CREATE_IN_PROGRESS if first else DeploymentStatus.UPDATE_IN_PROGRESS
                set_status_unless_deleting(store, self.deployment_id, status, f"run {context['run_id']}")
            deleting = store.get_deployment(self.deployment_id).status == DeploymentStatus.DELETE_IN_PROGRESS
            events = store.list_events(self.deployment_id, limit=1)
            since = events[-1].id if events else 0
            context["ti"].xcom_push(key=DELETION_RUN_KEY, value=deleting)
            context["ti"].xcom_push(key=SINCE_EVENT_KEY, value=since)  # kept even if the quota refuses the run
            if not deleting:
                try:
                    check_quota(store, self.deployment_id, log=self.log.info, tokens=self.owner_tokens)
                except QuotaExceeded as exc:  # before any VM: cannot pass by trying again
                    raise AirflowFailException(str(exc)) from None
            return since


class ProvisionGroupOperator(DeploymentOperator):
    """Creates/deletes the VMs of one compute group, then defers until the cloud has booted them.

    VMs that fail to be created or to boot are replaced (backfill) within the run's budget and deadline
    (deploy/backfill.py), each round waiting in the triggerer again; what cannot succeed by trying again (a quota,
    the budget or the deadline spent) fails the task at once, without its retries."""

    ui_color = "#fdf2e8"

    def __init__(self, *, group: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.group = group

    def _provisioner(self, store: Store) -> Any:
        from dodas_tasks.deploy.provision import GroupProvisioner

        return GroupProvisioner(store, self.deployment_id, self.group, log=self.log.info, tokens=self.owner_tokens)

    def _budget(self, context: Context, store: Store) -> Any:
        from dodas_tasks.deploy.backfill import backfill_budget

        since = int(context["ti"].xcom_pull(task_ids="begin", key=SINCE_EVENT_KEY) or 0)
        started = getattr(context.get("dag_run"), "start_date", None) or datetime.now(UTC)
        return backfill_budget(store.get_deployment(self.deployment_id), started, since)

    @records_failure
    def execute(self, context: Context) -> list[str]:
        with self._store() as store:
            if self._superseded(context, store):
                raise AirflowSkipException(SUPERSEDED)
            budget = self._budget(context, store)
            refusal = budget.refusal(0, datetime.now(UTC))
            if refusal is not None:  # e.g. a retry after the wait for the boot timed out
                raise AirflowFailException(f"{self.group}: VMs still not ready: {refusal}")
            with _final_if_permanent():
                progress = self._provisioner(store).start()
            return self._wait_then_finish(context, store, progress.pending)

    @records_failure
    def execute_complete(self, context: Context, event: dict[str, Any]) -> list[str]:
        with self._store() as store:
            if event.get("deleting"):  # the VMs are the deletion's to remove
                raise AirflowSkipException(SUPERSEDED)
            return self._wait_then_finish(context, store, [], booted=list(event.get("statuses", {})))

    def _wait_then_finish(
        self, context: Context, store: Store, pending: list[str], booted: list[str] | None = None
    ) -> list[str]:
        """Defer while VMs boot; once they have, record them, replacing failed ones while the budget allows."""
        from dodas_tasks.airflow.triggers.servers_ready import ServersReadyTrigger
        from dodas_tasks.deploy.provision import BootFailed

        while True:
            if self._superseded(context, store):
                raise AirflowSkipException(SUPERSEDED)
            if pending and self._booted_soon(store, pending):
                pending, booted = [], pending
            if pending:
                budget = self._budget(context, store)
                self.defer(
                    trigger=ServersReadyTrigger(self.deployment_id, self.group, pending),
                    method_name="execute_complete",
                    timeout=max(budget.deadline - datetime.now(UTC), timedelta(seconds=1)),
                )
            provisioner = self._provisioner(store)
            with _final_if_permanent():
                try:
                    provisioner.finish(booted or [])
                    break
                except BootFailed as failed:
                    progress = provisioner.backfill(failed, self._budget(context, store), datetime.now(UTC))
            pending, booted = progress.pending, []
        ready = [n.name for n in store.list_nodes(self.deployment_id, self.group)]
        self.log.info("%s: %d node(s) ready", self.group, len(ready))
        return ready

    def _booted_soon(self, store: Store, pending: list[str]) -> bool:
        """Whether the pending VMs leave BUILD within IN_TASK_BOOT_WAIT_S, polled in the task: a boot that short is
        cheaper to wait for here than a deferral's round trip through the triggerer and the scheduler (seconds), and
        a trigger firing before the scheduler has processed the deferral itself hits an Airflow race that has the
        resumed try reported as killed."""
        from dodas_tasks.clouds.base import BUILD

        provisioner = self._provisioner(store)
        deadline = time.monotonic() + IN_TASK_BOOT_WAIT_S
        while True:
            if all(status != BUILD for status in provisioner.poll(pending).values()):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(IN_TASK_BOOT_POLL_S)


@contextmanager
def _final_if_permanent() -> Iterator[None]:
    """A ProvisioningFailed that trying again cannot fix fails the task at once (no retry), its message as it is."""
    from dodas_tasks.deploy.provision import ProvisioningFailed

    try:
        yield
    except ProvisioningFailed as exc:
        if exc.permanent:
            raise AirflowFailException(str(exc)) from exc
        raise


class ComponentOperator(DeploymentOperator):
    """Installs and starts one TOSCA component (a framework role) on the VMs of its group that need it.

    Its steps are idempotent, so a failed try is retried, unless the failure is permanent (a script that exits
    non-zero, a refused key, a changed host key). Its log is guarded: a broken log stream (the task's supervisor
    killed) never fails a node."""

    ui_color = "#eefde8"

    def __init__(self, *, component: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.component = component

    @records_failure
    def execute(self, context: Context) -> list[str]:
        from dodas_tasks.airflow.hooks.site_services import AirflowSiteServices
        from dodas_tasks.configure import ConfigureError, safe_log
        from dodas_tasks.deploy.components import Deployer

        with self._store() as store:
            if self._deleting(store):
                raise AirflowSkipException("deployment is being deleted")
            from airflow.sdk.log import mask_secret

            deployer = Deployer(
                store,
                self.deployment_id,
                log=safe_log(self.log.info),
                tokens=self.token_source,
                on_secret=mask_secret,
                site_services=AirflowSiteServices(),
            )
            try:
                return deployer.apply(self.component)
            except ConfigureError as exc:
                if exc.permanent:  # running it again cannot help: no retry, the reason as it is
                    raise AirflowFailException(str(exc)) from exc
                raise


class VerifyOperator(DeploymentOperator):
    """Runs each framework's end-to-end check (SparkPi for Spark) against the live cluster."""

    ui_color = "#f4e8fd"

    @records_failure
    def execute(self, context: Context) -> list[str]:
        from dodas_tasks.airflow.hooks.site_services import AirflowSiteServices
        from dodas_tasks.configure import safe_log
        from dodas_tasks.deploy.components import Deployer

        with self._store() as store:
            if self._deleting(store):
                raise AirflowSkipException("deployment is being deleted")
            deployer = Deployer(
                store, self.deployment_id, log=safe_log(self.log.info), site_services=AirflowSiteServices()
            )
            return [check.summary for check in deployer.verify()]


class FinalizeOperator(DeploymentOperator):
    """Sets the orchestrator status from this run's outcome; publishes outputs or finishes a deletion."""

    ui_color = "#eeeeee"

    def __init__(self, *, begin_task_id: str = "begin", **kwargs: Any) -> None:
        kwargs.setdefault("trigger_rule", "all_done")
        super().__init__(**kwargs)
        self.begin_task_id = begin_task_id

    def execute(self, context: Context) -> dict[str, Any]:
        from dodas_tasks.airflow.hooks.site_services import AirflowSiteServices
        from dodas_tasks.deploy.finalize import finalize_run
        from dodas_tasks.iam.cluster_client import stored_client

        ti = context["ti"]
        since = ti.xcom_pull(task_ids=self.begin_task_id, key=SINCE_EVENT_KEY) or 0
        # a task killed on its last try recorded no failure of its own: Airflow's state of it still counts
        states = ti.get_task_states(dag_id=ti.dag_id, run_ids=[ti.run_id]).get(ti.run_id, {})
        with self._store() as store:
            iam = None
            if stored_client(store.get_deployment(self.deployment_id)) is not None:
                from dodas_tasks.airflow.hooks.iam import IamHook

                iam = IamHook().client  # deletes the cluster's own IAM client when the deployment goes
            outcome = finalize_run(
                store,
                self.deployment_id,
                since_event=int(since),
                log=self.log.info,
                iam=iam,
                site_services=AirflowSiteServices(),
                deletion_run=self._deletion_run(context),
                tokens=self.owner_tokens,
                failed_tasks=[task for task, state in states.items() if state == "failed"],
            )
        if outcome.failed:
            raise AirflowFailException(outcome.reason)
        return outcome.public()


class FailoverOperator(TriggerDagRunOperator):
    """After a creation failed over to the next cloud, queue the deployment DAG's next run (max_active_runs=1
    makes it start when this one ends); otherwise skipped."""

    ui_color = "#fde8e8"

    def __init__(self, *, deployment_id: str, **kwargs: Any) -> None:
        kwargs.setdefault("trigger_rule", "all_done")
        super().__init__(**kwargs)
        self.deployment_id = deployment_id

    def execute(self, context: Context) -> Any:
        with Store() as store:
            dep = store.get_deployment(self.deployment_id)
            if not dep.options.get("failover_pending"):
                raise AirflowSkipException("no failover to start")
            store.update_deployment(self.deployment_id, options={**dep.options, "failover_pending": False})
        self.log.info("starting a new run on %s", dep.cloud)
        return super().execute(context)


class OutcomeOperator(DeploymentOperator):
    """The run's last task: fails when this run left the deployment failed or moving to another cloud, so the run's
    state says what happened (a run's state follows its last tasks)."""

    ui_color = "#eeeeee"

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("trigger_rule", "all_done")
        super().__init__(**kwargs)

    def execute(self, context: Context) -> str:
        with Store() as store:
            dep = store.get_deployment(self.deployment_id)
        if dep.status == DeploymentStatus.DELETE_IN_PROGRESS and not self._deletion_run(context):
            note_run(context.get("dag_run"), f"stopped: {SUPERSEDED}")  # not a failure: only the deletion reports
            return dep.status
        failed = dep.status.endswith("_FAILED") or dep.status.endswith("_IN_PROGRESS")
        outcome = f"{dep.status}: {dep.status_reason or ('see the failed tasks' if failed else 'done')}"
        stray = dep.status == DeploymentStatus.DELETE_COMPLETE and context["ti"].xcom_pull(task_ids="begin") is None
        if not stray:  # a stray run of a deleted deployment keeps the note its begin task wrote
            note_run(context.get("dag_run"), outcome)
        if failed:
            raise AirflowFailException(outcome)
        return dep.status
