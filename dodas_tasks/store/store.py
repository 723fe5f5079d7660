"""The Store: one object per process that reads and writes deployments, nodes and events in short transactions.

Every write is its own transaction, retried on conflicts with other writers (optimistic row versions; SQLite's
lock). Reads return plain records; secrets come out only through the explicit ``get_*``/``*_secret_*`` methods.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from tenacity import retry, retry_if_exception_type, stop_after_attempt

from dodas_tasks import crypto
from dodas_tasks.naming import server_name
from dodas_tasks.settings import database_url
from dodas_tasks.store import changes as field_changes
from dodas_tasks.store.engine import make_engine
from dodas_tasks.store.ids import AmbiguousDeploymentId, DeploymentIdError
from dodas_tasks.store.listing import (
    DeploymentFilter,
    DeploymentPage,
    DeploymentShape,
    matching_ids,
    page_of,
    shapes_of,
)
from dodas_tasks.store.migrate import upgrade_to_head
from dodas_tasks.store.models import Deployment, Event, Node, PendingDelegation, utcnow
from dodas_tasks.store.records import DeploymentRecord, EventRecord, NodeRecord, PendingDelegationRecord
from dodas_tasks.store.retry import retry_on_conflict
from dodas_tasks.store.vocabulary import FINISHED_STATUSES, DeploymentStatus, NodeState, parse_status
from dodas_tasks.tosca.plan import Plan

UPSERT_ATTEMPTS = 5  # a lost insert race is resolved by the next attempt adopting the winner's row
_adopting_lost_inserts = retry(
    retry=retry_if_exception_type(IntegrityError), stop=stop_after_attempt(UPSERT_ATTEMPTS), reraise=True
)(retry_on_conflict)


class DeploymentNotFoundError(DeploymentIdError):
    """No deployment with that id."""


class NodeNotFoundError(LookupError):
    """No node with that id."""


class Store:
    """Deployments, nodes and events in SQLite (default: settings.database_url()) or PostgreSQL.

    The schema is migrated lazily on first use (or explicitly with ``migrate()``).
    """

    def __init__(self, url: str | None = None) -> None:
        self._engine = make_engine(url or database_url())
        self._sessions = sessionmaker(self._engine, expire_on_commit=False)
        self._migrated = False
        self._migrate_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Store({self._engine.url.render_as_string(hide_password=True)!r})"

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (for diagnostics and tests)."""
        return self._engine

    def close(self) -> None:
        """Close pooled connections."""
        self._engine.dispose()

    def migrate(self) -> None:
        """Upgrade the schema to the newest revision; idempotent, safe when processes race."""
        with self._migrate_lock:
            upgrade_to_head(self._engine)
            self._migrated = True

    # -- deployments -------------------------------------------------------------------------------------------

    def create_deployment(
        self,
        *,
        template: str,
        plan: Plan,
        owner_subject: str,
        owner_issuer: str,
        ssh_private_key: str,
        ssh_public_key: str,
        owner_groups: Sequence[str] = (),
        inputs: Mapping[str, Any] | None = None,
        secret_inputs: Iterable[str] = (),
        cloud: str = "local",
        clouds: Sequence[str] | None = None,
        options: Mapping[str, Any] | None = None,
        desired_counts: Mapping[str, int] | None = None,
        refresh_token: str | None = None,
        status: str = DeploymentStatus.CREATE_IN_PROGRESS,
        status_reason: str | None = None,
        deployment_id: str | None = None,
        user_group: str | None = None,
        callback: str | None = None,
    ) -> str:
        """Record a new deployment and return its id; the values of ``secret_inputs`` are encrypted at rest."""
        new_id = deployment_id or str(uuid.uuid4())
        stored_inputs, secret_names = field_changes.encrypt_inputs(dict(inputs or {}), secret_inputs)
        fields: dict[str, Any] = dict(
            id=new_id,
            owner_subject=owner_subject,
            owner_issuer=owner_issuer,
            owner_groups=list(owner_groups),
            template=template,
            inputs=stored_inputs,
            secret_inputs=secret_names,
            plan=field_changes.stored_plan(plan),
            status=parse_status(status).value,
            status_reason=status_reason,
            desired_counts=field_changes.check_desired_counts(desired_counts or {}),
            removal_list=[],
            outputs={},
            cloud=cloud,
            clouds=list(clouds) if clouds is not None else [cloud],
            options=field_changes.json_copy(dict(options or {}), "options"),
            refresh_token=crypto.encrypt(refresh_token) if refresh_token is not None else None,
            ssh_private_key=crypto.encrypt(ssh_private_key),
            ssh_public_key=ssh_public_key,
            known_hosts={},
            user_group=user_group,
            callback=callback,
        )
        reason = f": {status_reason}" if status_reason else ""

        def attempt() -> None:  # fresh objects each time: a rolled-back attempt leaves its objects unusable
            now = utcnow()
            with self._session() as session, session.begin():
                session.add(Deployment(**fields, created_at=now, updated_at=now))
                session.flush()  # the deployment must exist before its event (foreign key)
                session.add(
                    Event(time=now, deployment_id=new_id, kind="status", message=f"(new) → {fields['status']}{reason}")
                )

        retry_on_conflict(attempt, what=f"creating deployment {new_id}")
        return new_id

    def get_deployment(self, deployment_id: str) -> DeploymentRecord:
        """Snapshot of one deployment (secrets left out)."""
        with self._session() as session:
            return DeploymentRecord.from_row(_deployment_row(session, deployment_id))

    def list_deployments(
        self,
        *,
        live_only: bool = False,
        owner_subject: str | None = None,
        owner_issuer: str | None = None,
        statuses: Iterable[str] | None = None,
    ) -> list[DeploymentRecord]:
        """Deployments, oldest first; live_only leaves out those fully deleted (DELETE_COMPLETE)."""
        query = select(Deployment).order_by(Deployment.created_at, Deployment.id)
        if live_only:
            query = query.where(Deployment.status.not_in([s.value for s in FINISHED_STATUSES]))
        if owner_subject is not None:
            query = query.where(Deployment.owner_subject == owner_subject)
        if owner_issuer is not None:
            query = query.where(Deployment.owner_issuer == owner_issuer)
        if statuses is not None:
            query = query.where(Deployment.status.in_([parse_status(s).value for s in statuses]))
        with self._session() as session:
            return [DeploymentRecord.from_row(row, copy=False) for row in session.scalars(query)]

    def page_deployments(
        self,
        where: DeploymentFilter | None = None,
        sort: Sequence[tuple[str, bool]] = (("created_at", True),),
        number: int = 0,
        size: int = 10,
    ) -> DeploymentPage:
        """One page of deployment summaries, filtered, sorted and paged in SQL (see listing.page_of)."""
        with self._session() as session:
            return page_of(session, where or DeploymentFilter(), sort, number, size)

    def deployment_shapes(self, ids: Sequence[str]) -> dict[str, DeploymentShape]:
        """Description and VMs per group of the given deployments (a listing page's), by id."""
        with self._session() as session:
            return shapes_of(session, ids)

    def resolve_id(self, reference: str, where: DeploymentFilter | None = None) -> str:
        """The full id of the one deployment (among ``where``'s, default all, deleted ones included) whose id starts
        with ``reference``: a full id or its first 8+ characters, dashes and case ignored. Raises
        MalformedDeploymentId, DeploymentNotFoundError or AmbiguousDeploymentId (with the candidates), all
        DeploymentIdError with a one-line message (see store/ids.py)."""
        with self._session() as session:
            found = matching_ids(session, reference, where or DeploymentFilter(include_deleted=True))
        if not found:
            raise DeploymentNotFoundError(f"no deployment with id {reference!r} in the store")
        if len(found) > 1:
            raise AmbiguousDeploymentId(reference, found)
        return found[0]

    def update_deployment(self, deployment_id: str, **changes: Any) -> DeploymentRecord:
        """Set fields (see changes.DEPLOYMENT_FIELDS); secrets given in clear are encrypted.

        A new ``status`` without ``status_reason`` clears the reason. Retried on conflicts.
        """
        return self.modify_deployment(deployment_id, lambda _current: changes)

    def modify_deployment(
        self,
        deployment_id: str,
        change: Callable[[DeploymentRecord], Mapping[str, Any]],
        event: tuple[str, str] | None = None,
    ) -> DeploymentRecord:
        """Read-modify-write: ``change(current)`` returns the fields to set; re-run on a fresh read if another
        writer changed the row meanwhile, so no update is lost (e.g. incrementing a counter in options).
        ``event`` (kind, message) is recorded in the same transaction: a reader never sees one without the other."""
        if event is not None:
            field_changes.new_event(deployment_id, *event)  # checks kind before any I/O

        def attempt() -> DeploymentRecord:
            with self._session() as session, session.begin():
                row = _deployment_row(session, deployment_id)
                events = field_changes.apply_deployment_changes(row, change(DeploymentRecord.from_row(row)))
                if event is not None:
                    events.append(field_changes.new_event(deployment_id, *event))
                session.add_all(events)
            return DeploymentRecord.from_row(row)

        return retry_on_conflict(attempt, what=f"updating deployment {deployment_id}")

    def set_status(self, deployment_id: str, status: str, reason: str | None = None) -> DeploymentRecord:
        """Change the status (an event records old → new and the reason)."""
        return self.update_deployment(deployment_id, status=status, status_reason=reason)

    def get_inputs(self, deployment_id: str) -> dict[str, Any]:
        """All inputs with secret ones decrypted: for compiling and deploying, never for display."""
        with self._session() as session:
            row = _deployment_row(session, deployment_id)
            secret = set(row.secret_inputs)
            return {
                name: (json.loads(crypto.decrypt(value)) if name in secret else value)
                for name, value in row.inputs.items()
            }

    def deployment_secret_inputs(self, deployment_id: str) -> dict[str, Any]:
        """Only the secret inputs, decrypted."""
        with self._session() as session:
            row = _deployment_row(session, deployment_id)
            return {name: json.loads(crypto.decrypt(row.inputs[name])) for name in row.secret_inputs}

    def get_refresh_token(self, deployment_id: str) -> str | None:
        """The owner's refresh token, decrypted (None if none was given)."""
        with self._session() as session:
            token = _deployment_row(session, deployment_id).refresh_token
            return crypto.decrypt(token) if token is not None else None

    def get_ssh_private_key(self, deployment_id: str) -> str:
        """The deployment's SSH private key, decrypted."""
        with self._session() as session:
            return crypto.decrypt(_deployment_row(session, deployment_id).ssh_private_key)

    # -- nodes -------------------------------------------------------------------------------------------------

    def upsert_node(self, deployment_id: str, group: str, index: int, **fields: Any) -> NodeRecord:
        """The live node in this slot, created (state INITIAL unless given) or adopted; fields are then set.

        Two workers upserting the same slot at once end with one row: the loser's insert violates the partial
        unique index and its retry adopts the winner's row.
        """
        field_changes.check_field_names(fields, field_changes.NODE_FIELDS, "node")
        if not group or not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise ValueError(f"a node needs a group name and an index ≥ 0, got group={group!r} index={index!r}")

        def attempt() -> NodeRecord:
            with self._session() as session, session.begin():
                _deployment_row(session, deployment_id)
                row = session.scalars(_live_slot_query(deployment_id, group, index)).first()
                events: list[Event] = []
                if row is None:
                    row = _new_node(deployment_id, group, index)
                    session.add(row)
                    session.flush()  # claims the slot now, or raises IntegrityError if another worker did
                    events.append(
                        field_changes.new_event(
                            deployment_id, "node_state", f"{row.name} ({group}[{index}]): (new) → {row.state}", row.id
                        )
                    )
                events += field_changes.apply_node_changes(row, fields)
                session.add_all(events)
            return NodeRecord.from_row(row)

        return _adopting_lost_inserts(attempt, what=f"recording node {group}[{index}] of {deployment_id}")

    def get_node(self, node_id: str) -> NodeRecord:
        """Snapshot of one node."""
        with self._session() as session:
            return NodeRecord.from_row(_node_row(session, node_id))

    def update_node(self, node_id: str, **changes: Any) -> NodeRecord:
        """Set fields (see changes.NODE_FIELDS); a new ``state`` without ``state_reason`` clears the reason."""
        return self.modify_node(node_id, lambda _current: changes)

    def modify_node(self, node_id: str, change: Callable[[NodeRecord], Mapping[str, Any]]) -> NodeRecord:
        """Read-modify-write of one node, re-run on a fresh read after a conflicting write."""

        def attempt() -> NodeRecord:
            with self._session() as session, session.begin():
                row = _node_row(session, node_id)
                session.add_all(field_changes.apply_node_changes(row, change(NodeRecord.from_row(row))))
            return NodeRecord.from_row(row)

        return retry_on_conflict(attempt, what=f"updating node {node_id}")

    def list_nodes(
        self, deployment_id: str, group: str | None = None, include_deleted: bool = False
    ) -> list[NodeRecord]:
        """Nodes of a deployment ordered by group and index; DELETED ones only if asked."""
        query = (
            select(Node).where(Node.deployment_id == deployment_id).order_by(Node.group, Node.index, Node.created_at)
        )
        if group is not None:
            query = query.where(Node.group == group)
        if not include_deleted:
            query = query.where(Node.state != NodeState.DELETED.value)
        with self._session() as session:
            return [NodeRecord.from_row(row) for row in session.scalars(query)]

    # -- events ------------------------------------------------------------------------------------------------

    def add_event(self, deployment_id: str, kind: str, message: str, node_id: str | None = None) -> EventRecord:
        """Append a line to a deployment's history."""
        field_changes.new_event(deployment_id, kind, message, node_id)  # checks kind before any I/O

        def attempt() -> EventRecord:
            event = field_changes.new_event(deployment_id, kind, message, node_id)
            with self._session() as session, session.begin():
                _deployment_row(session, deployment_id)
                session.add(event)
            return EventRecord.from_row(event)

        return retry_on_conflict(attempt, what=f"recording an event of {deployment_id}")

    def list_events(self, deployment_id: str, limit: int = 50, after_id: int | None = None) -> list[EventRecord]:
        """The newest ``limit`` events (after ``after_id`` if given, for polling), oldest first."""
        query = select(Event).where(Event.deployment_id == deployment_id).order_by(Event.id.desc()).limit(limit)
        if after_id is not None:
            query = query.where(Event.id > after_id)
        with self._session() as session:
            return [EventRecord.from_row(row) for row in reversed(session.scalars(query).all())]

    # -- internals ---------------------------------------------------------------------------------------------

    # -- delegations made before their deployment ---------------------------------------------------------------

    def add_pending_delegation(
        self, digest: str, owner_issuer: str, owner_subject: str, owner_groups: Sequence[str], refresh_token: str,
        expires_at: datetime,
    ) -> None:  # fmt: skip
        """Keep a delegation (its refresh token encrypted) until a submission takes it; expired ones are dropped."""
        with self._session() as session, session.begin():
            session.execute(delete(PendingDelegation).where(PendingDelegation.expires_at < utcnow()))
            session.add(
                PendingDelegation(
                    digest=digest,
                    owner_issuer=owner_issuer,
                    owner_subject=owner_subject,
                    owner_groups=list(owner_groups),
                    refresh_token=crypto.encrypt(refresh_token),
                    created_at=utcnow(),
                    expires_at=expires_at,
                )
            )

    def take_pending_delegation(self, digest: str) -> PendingDelegationRecord | None:
        """The delegation filed under `digest`, removed as it is read (one submission takes it); None when unknown,
        already taken or expired."""
        with self._session() as session, session.begin():
            row = session.get(PendingDelegation, digest, with_for_update=True)
            if row is None:
                return None
            session.delete(row)
            if row.expires_at < utcnow():
                return None
            return PendingDelegationRecord(
                owner_issuer=row.owner_issuer,
                owner_subject=row.owner_subject,
                owner_groups=tuple(row.owner_groups),
                refresh_token=crypto.decrypt(row.refresh_token),
            )

    def _session(self) -> Session:
        if not self._migrated:
            self.migrate()
        return self._sessions()


def _deployment_row(session: Session, deployment_id: str) -> Deployment:
    row = session.get(Deployment, deployment_id)
    if row is None:
        raise DeploymentNotFoundError(f"no deployment with id {deployment_id!r} in the store")
    return row


def _node_row(session: Session, node_id: str) -> Node:
    row = session.get(Node, node_id)
    if row is None:
        raise NodeNotFoundError(f"no node with id {node_id!r} in the store")
    return row


def _live_slot_query(deployment_id: str, group: str, index: int) -> Any:
    return select(Node).where(
        Node.deployment_id == deployment_id,
        Node.group == group,
        Node.index == index,
        Node.state != NodeState.DELETED.value,
    )


def _new_node(deployment_id: str, group: str, index: int) -> Node:
    now = utcnow()
    return Node(
        id=str(uuid.uuid4()),
        deployment_id=deployment_id,
        group=group,
        index=index,
        name=server_name(deployment_id, group, index),
        state=NodeState.INITIAL.value,
        applied={},
        created_at=now,
        updated_at=now,
    )
