"""Deployments (PROTOCOL.md §10): the rows, their clock-driven states, and hot-load status.

Rows live in the ``deployments`` table of the emulator's SQLite store. State
changes that happen by time are computed from stored timestamps when a row is
read (``ready_at`` ends CREATING/UPDATING, ``gone_at`` ends DELETING), and
written back by the next write to that row, so every process over the file
sees the same world without a background thread:

* create -> ``CREATING``, ``READY`` after the store's ``provision_seconds``;
* a PATCH that restarts serving (``hot_load_trainer_job``,
  ``hot_load_transition_type``) -> ``UPDATING``, ``READY`` after ``settle_seconds``;
* delete -> ``DELETING`` for ``settle_seconds`` (well within the SDK's 60 s
  deletion wait), then: a soft delete leaves the ``DELETED`` tombstone
  (readable with ``deleteTime``/``purgeTime``, hidden from lists unless
  ``showDeleted``, its ID taken: 409); ``hard=true`` (what the SDK sends)
  removes the row: 404, and the ID is free again, so the SDK's
  ``create_or_get`` can recreate a FAILED deployment under its ID;
* the ``fail-deployment`` fault -> ``FAILED``.

Responses carry only fields the real API returns (§10.6): the declared ones
plus ``hotLoadTrainerJob`` and ``hotLoadTransitionType``; the sent-only fields
(``forTraining``, ``extraArgs``, ...) are stored, never echoed.
"""

from __future__ import annotations

import enum
import json
import re
import sqlite3
from typing import TYPE_CHECKING, Any

from rlorinfra.controlplane import shapes
from rlorinfra.controlplane.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from rlorinfra.controlplane.requests import JOB_ID_RE

if TYPE_CHECKING:
    from rlorinfra.controlplane.store import Store

PURGE_AFTER_S = 30 * 24 * 3600.0  # soft-deleted rows are purged after 30 days (shown as purgeTime)
BUCKET_ROOT = "gs://fireworks-emulator-hotload/rl-checkpoints"
DEFAULT_FAIL_MESSAGE = "deployment failed (injected failure)"

SCHEMA = """
CREATE TABLE IF NOT EXISTS deployments (
    deployment_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    status_message TEXT NOT NULL DEFAULT '',
    body TEXT NOT NULL,
    stored TEXT NOT NULL,
    create_time REAL NOT NULL,
    update_time REAL NOT NULL,
    ready_at REAL,
    gone_at REAL,
    hard INTEGER NOT NULL DEFAULT 0,
    delete_time REAL,
    loaded_snapshot TEXT
)
"""


class DeploymentState(enum.StrEnum):
    """``state`` of a deployment (``types/deployment.py:311-313``)."""

    CREATING = "CREATING"
    READY = "READY"
    UPDATING = "UPDATING"
    DELETING = "DELETING"
    DELETED = "DELETED"
    FAILED = "FAILED"
    PURGED = "PURGED"  # internal, never shown: a hard-deleted row past DELETING answers 404


# Fields of the create/PATCH body the real API returns (declared by the generated
# Deployment, plus the two hot-load fields the SDK reads back).
RETURNED_FIELDS = frozenset(
    "baseModel acceleratorCount acceleratorType autoscalingPolicy autoTune deploymentShape deploymentTemplate "
    "description directRouteApiKeys directRouteType disableDeploymentSizeValidation displayName draftModel "
    "draftTokenCount enableAddons enableHotLoad enableHotReloadLatestAddon enableMtp enableSessionAffinity "
    "expireTime hotLoadBucketType hotLoadBucketUrl maxContextLength maxReplicaCount maxWithRevocableReplicaCount "
    "minReplicaCount ngramSpeculationLength placement precision pricingPlanId targetModelVersion "
    "activeModelVersion hotLoadTrainerJob hotLoadTransitionType".split()
)
# Stored (the real API accepts them) but never returned: the SDK only sends them.
SENT_ONLY_FIELDS = frozenset({"forTraining", "extraArgs", "extraValues", "annotations", "preemptible"})
SUPERUSER_FIELDS = ("extraArgs", "extraValues", "preemptible")
RESTARTING_FIELDS = frozenset({"hotLoadTrainerJob", "hotLoadTransitionType"})
TRANSITION_TYPES = ("ASYNC", "SYNC")
_TRAINER_RE = re.compile(r"accounts/(?P<account>[^/]+)/rlorTrainerJobs/(?P<job>[^/]+)\Z")
_DEP_SHAPE_RE = re.compile(r"accounts/(?P<owner>[^/]+)/deploymentShapes/(?P<shape>[^/]+)(?:/versions/(?P<v>[^/]+))?\Z")


def snake_to_camel(path: str) -> str:
    """``hot_load_trainer_job`` -> ``hotLoadTrainerJob`` (an updateMask path to a body key)."""
    head, *rest = path.strip().split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


class Deployments:
    """Deployment rows of one ``Store`` (its connection, transactions, clock and account)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- names and views ---------------------------------------------------------

    def name(self, deployment_id: str) -> str:
        """``accounts/{a}/deployments/{id}``."""
        return f"accounts/{self.store.account_id}/deployments/{deployment_id}"

    def _effective(self, row: sqlite3.Row, now: float) -> tuple[str, float]:
        """The state at ``now`` and when it was entered (timed transitions applied)."""
        state = row["state"]
        if state in (DeploymentState.CREATING, DeploymentState.UPDATING) and row["ready_at"] is not None:
            if row["ready_at"] <= now:
                return DeploymentState.READY, row["ready_at"]
        if state == DeploymentState.DELETING and row["gone_at"] is not None and row["gone_at"] <= now:
            return (DeploymentState.PURGED if row["hard"] else DeploymentState.DELETED), row["gone_at"]
        return state, row["update_time"]

    def _render(self, row: sqlite3.Row, now: float) -> dict[str, Any]:
        stored: dict[str, Any] = json.loads(row["stored"])
        state, changed = self._effective(row, now)
        resource: dict[str, Any] = {"name": self.name(row["deployment_id"])}
        resource.update({k: v for k, v in stored.items() if k in RETURNED_FIELDS})
        replicas = int(stored.get("maxReplicaCount", 1)) if state == DeploymentState.READY else 0
        resource.update(
            state=str(state),
            status={"code": "INTERNAL" if state == DeploymentState.FAILED else "OK", "message": row["status_message"]},
            replicaCount=replicas,
            desiredReplicaCount=replicas,
            createTime=_rfc(row["create_time"]),
            updateTime=_rfc(max(changed, row["update_time"])),
        )
        if row["delete_time"] is not None:
            resource["deleteTime"] = _rfc(row["delete_time"])
            resource["purgeTime"] = _rfc(row["delete_time"] + PURGE_AFTER_S)
        return resource

    def _row(self, conn: sqlite3.Connection, deployment_id: str, now: float) -> sqlite3.Row:
        row: sqlite3.Row | None = conn.execute(
            "SELECT * FROM deployments WHERE deployment_id = ?", (deployment_id,)
        ).fetchone()
        if row is None or not JOB_ID_RE.match(deployment_id) or self._effective(row, now)[0] == DeploymentState.PURGED:
            raise NotFound(f"deployment {self.name(deployment_id[:80])} not found")
        return row

    def _settle(self, conn: sqlite3.Connection, row: sqlite3.Row, now: float) -> sqlite3.Row:
        """Write a timed transition that has happened back to the row before changing it."""
        state, changed = self._effective(row, now)
        if state != row["state"]:
            conn.execute(
                "UPDATE deployments SET state = ?, update_time = ?, ready_at = NULL, gone_at = NULL "
                "WHERE deployment_id = ?",
                (str(state), changed, row["deployment_id"]),
            )
            return self._row(conn, row["deployment_id"], now)
        return row

    # -- E13 create ------------------------------------------------------------------

    def create(self, body: Any, query: dict[str, str], *, superuser: bool) -> dict[str, Any]:
        """E13: a new row in CREATING (``validateOnly=true``: the row that would be created, not stored)."""
        if not isinstance(body, dict):
            raise InvalidArgument("the request body must be a JSON object (a deployment)")
        deployment_id = query.get("deploymentId") or f"dep-{self.store.clock():.0f}"
        if not JOB_ID_RE.match(deployment_id):
            raise InvalidArgument(f'invalid deploymentId "{deployment_id[:80]}": use lowercase letters, digits, "-"')
        _check_superuser(body, superuser)
        shape = self._check_create(body, query)
        stored = {k: v for k, v in body.items() if v is not None}  # a null field is an absent one
        if shape is not None:
            stored["deploymentShape"] = shape
        stored.setdefault("minReplicaCount", 0)
        stored.setdefault("maxReplicaCount", max(int(stored["minReplicaCount"]), 1))
        with self.store._write() as (conn, now):  # noqa: SLF001 - the store's transaction, same package
            self._fill_hot_load(conn, stored, deployment_id)
            existing = conn.execute("SELECT * FROM deployments WHERE deployment_id = ?", (deployment_id,)).fetchone()
            if existing is not None and self._effective(existing, now)[0] == DeploymentState.PURGED:
                conn.execute("DELETE FROM deployments WHERE deployment_id = ?", (deployment_id,))
            elif existing is not None:
                raise AlreadyExists(f"deployment {self.name(deployment_id)} already exists")
            values = (deployment_id, DeploymentState.CREATING.value, json.dumps(body), json.dumps(stored), now, now)
            conn.execute(
                "INSERT INTO deployments(deployment_id, state, body, stored, create_time, update_time, ready_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (*values, now + self.store.provision_seconds),
            )
            row = self._row(conn, deployment_id, now)
            resource = self._render(row, now)
            if query.get("validateOnly") == "true":
                conn.execute("DELETE FROM deployments WHERE deployment_id = ?", (deployment_id,))
            return resource

    @staticmethod
    def _check_create(body: dict[str, Any], query: dict[str, str]) -> str | None:
        """The 400s of E13 that need no database; the versioned shape to store (None: manual path)."""
        if not isinstance(body.get("baseModel"), str) or not body["baseModel"]:
            raise InvalidArgument("baseModel is required")
        shape, accel = body.get("deploymentShape"), body.get("acceleratorType")
        if shape and accel:
            raise InvalidArgument("acceleratorType must not be set together with deploymentShape")
        if shape and query.get("acceptShapelessRisk") == "true":
            raise InvalidArgument("acceptShapelessRisk cannot be combined with a deploymentShape")
        if not shape and (not accel or accel in ("UNSPECIFIED", "ACCELERATOR_TYPE_UNSPECIFIED")):
            raise InvalidArgument("accelerator_type must be specified for non-embeddings engines")
        if body.get("hotLoadBucketUrl") and body.get("hotLoadTrainerJob"):
            raise InvalidArgument(
                f"hot_load_bucket_url {json.dumps(body['hotLoadBucketUrl'])} conflicts with hot_load_trainer_job "
                f"{body['hotLoadTrainerJob']}; set exactly one"
            )
        _check_transition(body)
        return _versioned_shape(shape) if shape else None

    def _fill_hot_load(self, conn: sqlite3.Connection, stored: dict[str, Any], deployment_id: str) -> None:
        """Check the linked trainer and set ``hotLoadBucketUrl`` (PER_TRAINER: the trainer's; else the deployment's)."""
        if not stored.get("enableHotLoad"):
            return
        stored.setdefault("hotLoadTransitionType", "ASYNC")  # the control plane's pick when unset (§10.2)
        trainer = stored.get("hotLoadTrainerJob")
        if trainer:
            stored["hotLoadBucketUrl"] = self._trainer_bucket(conn, trainer, deployment_id)
        elif not stored.get("hotLoadBucketUrl"):
            stored["hotLoadBucketUrl"] = f"{BUCKET_ROOT}/{self.store.account_id}/{deployment_id}/"

    def _trainer_bucket(self, conn: sqlite3.Connection, trainer: Any, deployment_id: str) -> str:
        """The bucket of the named trainer (any state but a tombstone; not PER_DEPLOYMENT-keyed)."""
        match = _TRAINER_RE.match(trainer) if isinstance(trainer, str) else None
        if match is None or match["account"] != self.store.account_id:
            raise InvalidArgument(f'hotLoadTrainerJob must be "accounts/{self.store.account_id}/rlorTrainerJobs/ID"')
        row = conn.execute("SELECT state, echo FROM jobs WHERE job_id = ?", (match["job"],)).fetchone()
        if row is None or row["state"] in ("JOB_STATE_DELETED", "JOB_STATE_ARCHIVED", "JOB_STATE_DELETING"):
            raise InvalidArgument(f"hotLoadTrainerJob {trainer} not found (or deleted)")
        keyed = json.loads(row["echo"]).get("hotLoadDeploymentId")
        if keyed:
            raise InvalidArgument(
                f"hotload flow mismatch: trainer {trainer} is deployment-first-keyed for deployment {keyed}, "
                f"but you're trying to use it as the source for deployment {deployment_id}"
            )
        return trainer_bucket_url(self.store.account_id, match["job"])

    def check_deployment_first(self, conn: sqlite3.Connection, deployment_id: str, now: float) -> None:
        """E2 with ``hotLoadDeploymentId``: refuse a deployment that is trainer-first (PER_TRAINER, §10.8).

        An unknown deployment is let through: existing configs create PER_DEPLOYMENT
        trainers before their deployment exists, and that requirement is only inferred.
        """
        row = conn.execute("SELECT * FROM deployments WHERE deployment_id = ?", (deployment_id,)).fetchone()
        if row is None or self._effective(row, now)[0] == DeploymentState.PURGED:
            return
        trainer = json.loads(row["stored"]).get("hotLoadTrainerJob")
        if trainer:
            raise InvalidArgument(
                f"hotload flow mismatch: trainer wants deployment-first (hot_load_deployment_id={deployment_id}) "
                f"but deployment {deployment_id} is trainer-first (hot_load_trainer_job={trainer})"
            )

    # -- E14 get, E15 list -----------------------------------------------------------

    def get(self, deployment_id: str) -> dict[str, Any]:
        """E14: the row, tombstones included (NotFound for an unknown ID)."""
        with self.store._read() as (conn, now):  # noqa: SLF001
            return self._render(self._row(conn, deployment_id, now), now)

    def list_page(
        self, *, page_size: int, after: str | None, show_deleted: bool
    ) -> tuple[list[dict[str, Any]], str | None]:
        """E15: rows by ``createTime`` (then ID); ``DELETED`` only with ``show_deleted``. Keyset by ID."""
        with self.store._read() as (conn, now):  # noqa: SLF001
            rows = conn.execute("SELECT * FROM deployments ORDER BY create_time, deployment_id").fetchall()
            hidden = {DeploymentState.PURGED} if show_deleted else {DeploymentState.PURGED, DeploymentState.DELETED}
            shown = [r for r in rows if self._effective(r, now)[0] not in hidden]
            if after is not None:
                ids = [r["deployment_id"] for r in shown]
                shown = shown[ids.index(after) + 1 :] if after in ids else []
            page = shown[:page_size]
            more = len(shown) > page_size
            return [self._render(r, now) for r in page], (page[-1]["deployment_id"] if more else None)

    # -- E16 patch ------------------------------------------------------------------------

    def update(self, deployment_id: str, body: Any, mask: str | None, *, superuser: bool) -> dict[str, Any]:
        """E16: change the masked fields (no mask: the fields present); a serving restart -> UPDATING."""
        if not isinstance(body, dict):
            raise InvalidArgument("the request body must be a JSON object (a deployment)")
        fields = [snake_to_camel(p) for p in mask.split(",") if p.strip()] if mask else list(body)
        changes = {f: body.get(f) for f in fields}
        if "preemptible" in changes:
            raise InvalidArgument("preemptible cannot be changed after a deployment is created")
        if changes.get("hotLoadBucketUrl") and changes.get("hotLoadTrainerJob"):
            raise InvalidArgument(
                f"hot_load_bucket_url {json.dumps(changes['hotLoadBucketUrl'])} conflicts with hot_load_trainer_job "
                f"{changes['hotLoadTrainerJob']}; update hot_load_trainer_job instead, or clear it first"
            )
        _check_superuser(changes, superuser)
        _check_transition(changes)
        with self.store._write() as (conn, now):  # noqa: SLF001
            row = self._settle(conn, self._row(conn, deployment_id, now), now)
            if row["state"] in (DeploymentState.DELETING, DeploymentState.DELETED):
                raise FailedPrecondition(f"cannot update deployment in state {row['state']}")
            stored: dict[str, Any] = json.loads(row["stored"])
            restart = any(stored.get(f) != v for f, v in changes.items() if f in RESTARTING_FIELDS)
            stored.update(changes)
            if changes.get("hotLoadTrainerJob"):
                stored["hotLoadBucketUrl"] = self._trainer_bucket(conn, changes["hotLoadTrainerJob"], deployment_id)
            columns: dict[str, Any] = {"stored": json.dumps(stored), "update_time": now}
            if restart and row["state"] != DeploymentState.FAILED:
                columns.update(state=DeploymentState.UPDATING.value, ready_at=now + self.store.settle_seconds)
            self._set(conn, deployment_id, columns)
            return self._render(self._row(conn, deployment_id, now), now)

    # -- E17 delete, faults, hot-load ----------------------------------------------------

    def delete(self, deployment_id: str, *, hard: bool = False) -> dict[str, Any]:
        """E17: DELETING now; after ``settle_seconds`` the DELETED tombstone, or gone when ``hard``."""
        with self.store._write() as (conn, now):  # noqa: SLF001
            row = self._settle(conn, self._row(conn, deployment_id, now), now)
            if row["state"] not in (DeploymentState.DELETING, DeploymentState.DELETED):
                columns = {
                    "state": DeploymentState.DELETING.value,
                    "gone_at": now + self.store.settle_seconds,
                    "hard": int(hard),
                    "ready_at": None,
                    "delete_time": now,
                    "update_time": now,
                    "loaded_snapshot": None,
                }
                self._set(conn, deployment_id, columns)
            return self._render(self._row(conn, deployment_id, now), now)

    def fail(self, deployment_id: str, message: str | None = None) -> dict[str, Any]:
        """The ``fail-deployment`` fault: FAILED (status INTERNAL) unless already being deleted."""
        with self.store._write() as (conn, now):  # noqa: SLF001
            row = self._settle(conn, self._row(conn, deployment_id, now), now)
            if row["state"] in (DeploymentState.DELETING, DeploymentState.DELETED):
                raise FailedPrecondition(f"cannot fail deployment in state {row['state']}")
            columns = {
                "state": DeploymentState.FAILED.value,
                "ready_at": None,
                "update_time": now,
                "status_message": message or DEFAULT_FAIL_MESSAGE,
                "loaded_snapshot": None,
            }
            self._set(conn, deployment_id, columns)
            return self._render(self._row(conn, deployment_id, now), now)

    def is_ready(self, deployment_id: str) -> bool:
        """Whether the deployment serves now (READY)."""
        try:
            return bool(self.get(deployment_id)["state"] == DeploymentState.READY)
        except NotFound:
            return False

    def hot_load(self, deployment_id: str, identity: str) -> None:
        """E21: the snapshot ``identity`` is loaded (at once; 400 FAILED_PRECONDITION unless READY)."""
        with self.store._write() as (conn, now):  # noqa: SLF001
            row = self._settle(conn, self._row(conn, deployment_id, now), now)
            if row["state"] != DeploymentState.READY:
                raise FailedPrecondition(f"deployment {self.name(deployment_id)} is not serving (state {row['state']})")
            self._set(conn, deployment_id, {"loaded_snapshot": identity})

    def hot_load_status(self, deployment_id: str) -> dict[str, Any]:
        """E22: one replica while READY (its loaded snapshot), ``{"replicas": []}`` otherwise."""
        with self.store._read() as (conn, now):  # noqa: SLF001
            row = self._row(conn, deployment_id, now)
            if self._effective(row, now)[0] != DeploymentState.READY:
                return {"replicas": []}
            loaded = row["loaded_snapshot"]
        replica = {
            "current_snapshot_identity": loaded,
            "readiness": True,
            "loading_state": {"stage": "done", "target_snapshot_identity": loaded},
            "loaded_adapters": [],
            "supports_rdma_weight_sync": False,
            "rdma_weight_sync_enabled": False,
        }
        return {"replicas": [replica]}

    @staticmethod
    def _set(conn: sqlite3.Connection, deployment_id: str, columns: dict[str, Any]) -> None:
        assignments = ", ".join(f"{name} = ?" for name in columns)
        conn.execute(
            f"UPDATE deployments SET {assignments} WHERE deployment_id = ?", (*columns.values(), deployment_id)
        )


def trainer_bucket_url(account_id: str, job_id: str) -> str:
    """The PER_TRAINER hot-load bucket of a trainer (§10.6), shared by every deployment linked to it."""
    return f"{BUCKET_ROOT}/{account_id}/trainer-{job_id}/"


def _check_superuser(body: dict[str, Any], superuser: bool) -> None:
    gated = [f for f in SUPERUSER_FIELDS if body.get(f) not in (None, False, [], {})]
    if gated and not superuser:
        raise InvalidArgument(f"{gated[0]} requires a superuser API key; this is a customer key")


def _check_transition(body: dict[str, Any]) -> None:
    value = body.get("hotLoadTransitionType")
    if value is not None and value not in TRANSITION_TYPES:
        raise InvalidArgument(f'hotLoadTransitionType must be ASYNC or SYNC, got "{str(value)[:40]}"')


def _versioned_shape(shape: Any) -> str:
    """The deployment-shape version to store: an unversioned name or version ``default`` picks the latest validated."""
    match = _DEP_SHAPE_RE.match(shape) if isinstance(shape, str) else None
    if match is None:
        raise InvalidArgument(f'invalid deploymentShape "{str(shape)[:120]}"')
    if match["v"] and match["v"] != "default":
        return str(shape)
    found = shapes.versions(f"ts-{match['shape']}")
    version = next((v.version_id for v in reversed(found) if v.latest_validated), None) if found else None
    return f"accounts/{match['owner']}/deploymentShapes/{match['shape']}/versions/{version or '1'}"


def _rfc(ts: float) -> str:
    from rlorinfra.controlplane.store import rfc3339

    return rfc3339(ts)
