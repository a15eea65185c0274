"""Job states and the sets the planner, apply and refresh reason with (PROTOCOL.md §3.2)."""

from __future__ import annotations

JOB_STATE_PREFIX = "JOB_STATE_"

# State sets, named as the official SDK names them (PROTOCOL.md §3.2).
TOMBSTONE_STATES = frozenset({"JOB_STATE_DELETED", "JOB_STATE_ARCHIVED"})
RESUMABLE_STATES = frozenset({"JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_PAUSED", "JOB_STATE_COMPLETED"})
# Serving: the only state the SDK can find ready (RUNNING plus a healthy probe).
# IDLE is not among them: the SDK never treats an IDLE trainer as ready.
SERVING_STATES = frozenset({"JOB_STATE_RUNNING"})
# States that settle by themselves; apply waits them out.
TRANSITIONAL_STATES = frozenset(
    {
        "JOB_STATE_UNSPECIFIED",
        "JOB_STATE_CREATING",
        "JOB_STATE_PENDING",
        "JOB_STATE_CANCELLING",
        "JOB_STATE_DELETING",
        "JOB_STATE_DELETING_CLEANING_UP",
        "JOB_STATE_WRITING_RESULTS",
        "JOB_STATE_VALIDATING",
        "JOB_STATE_RE_QUEUEING",
        "JOB_STATE_CREATING_INPUT_DATASET",
        # Transitional to the SDK too: no healthy trainer to connect to, so not ready.
        "JOB_STATE_IDLE",
    }
)
# Terminal and not resumable: the job must be replaced to serve again.
DEAD_STATES = frozenset({"JOB_STATE_EARLY_STOPPED", "JOB_STATE_EXPIRED"})

# On their way to a tombstone: for planning, already gone (the ID cannot be reused,
# and the job will never serve again).
DELETING_STATES = frozenset({"JOB_STATE_DELETING", "JOB_STATE_DELETING_CLEANING_UP"})
GONE_STATES = TOMBSTONE_STATES | DELETING_STATES
# Declared-stopped jobs in these states are already stopped: nothing to do.
ALREADY_STOPPED_STATES = RESUMABLE_STATES | DEAD_STATES | {"JOB_STATE_CANCELLING"}
# A job in one of these states holds no accelerators: stopped, dead, or being torn down.
RELEASED_STATES = ALREADY_STOPPED_STATES | GONE_STATES
UNKNOWN_STATE = "JOB_STATE_UNSPECIFIED"
# Up or on its way up: a cancel that left a job here did not happen.
ACTIVE_STATES = frozenset({"JOB_STATE_CREATING", "JOB_STATE_PENDING", "JOB_STATE_RUNNING", "JOB_STATE_IDLE"})
# Where a cancel (or the control plane) leaves a job that is not running.
STOPPED_STATES = frozenset({"JOB_STATE_CANCELLED", "JOB_STATE_COMPLETED", "JOB_STATE_PAUSED", "JOB_STATE_FAILED"})
