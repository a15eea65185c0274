"""Sample plans for the renderer tests (golden files and the JSON schema).

Built directly from plan values, so a planner change does not silently move
the golden files; one sample goes through the real planner end to end.
"""

from __future__ import annotations

from rlorinfra.config.model import JobSpec
from rlorinfra.model.address import Kind
from rlorinfra.model.jobs import LiveJob, ShapeVersion
from rlorinfra.plan.model import Action, Change, Drift, LiveWorld, Plan
from rlorinfra.plan.planner import make_plan
from rlorinfra.state.model import JobRecord, State

CONTROL_PLANE = {"url": "local", "account_id": "acme"}
MODEL = "accounts/fireworks/models/qwen3-8b"
SHAPE = "accounts/fireworks/trainingShapes/ts-qwen3-8b-policy"
REF_SHAPE = "accounts/fireworks/trainingShapes/ts-qwen3-8b-reference"
H100, A100 = "NVIDIA_H100_80GB", "NVIDIA_A100_80GB"

POLICY = {"base_model": MODEL, "training_shape": SHAPE}
REFERENCE = {"base_model": MODEL, "forward_only": True, "training_shape": REF_SHAPE}
MANUAL = {
    "accelerator_count": 8,
    "accelerator_type": A100,
    "base_model": MODEL,
    "max_context_length": 8192,
    "node_count": 1,
}

EMPTY = Plan()

CREATES = Plan(
    changes=(
        Change("grpo-policy-trainer", Action.CREATE, after=POLICY, accelerators={H100: 8}),
        Change("grpo-reference", Action.CREATE, after=REFERENCE, accelerators={H100: 8}),
    )
)

PREEMPTED = Drift(
    "rollout-trainer",
    "rollout-trainer-1a2b3c",
    "preempted",
    "JOB_STATE_RUNNING",
    "JOB_STATE_FAILED",
    "was preempted: JOB_STATE_RUNNING -> JOB_STATE_FAILED (pod preempted)",
)
DELETED = Drift(
    "eval-trainer",
    "eval-trainer-9f8e7d",
    "deleted",
    "JOB_STATE_RUNNING",
    None,
    "was deleted outside rlorinfra (not found)",
)

MIXED = Plan(
    changes=(
        Change("eval-trainer", Action.CREATE, reason="deleted outside rlorinfra", after=POLICY, accelerators={H100: 8}),
        Change(
            "grpo-policy-trainer",
            Action.NOOP,
            reason="job is JOB_STATE_RUNNING",
            job_id="grpo-policy-trainer-aa11",
            live_state="JOB_STATE_RUNNING",
        ),
        Change(
            "legacy-sft",
            Action.DELETE,
            reason="not in configuration",
            job_id="legacy-sft-77aa",
            live_state="JOB_STATE_RUNNING",
            before=MANUAL,
            accelerators={A100: -8},
        ),
        Change(
            "lora-trainer",
            Action.REPLACE,
            job_id="lora-trainer-5c5c",
            live_state="JOB_STATE_RUNNING",
            before=POLICY,
            after={**POLICY, "lora_rank": 16},
            changed_fields=("lora_rank",),
        ),
        Change(
            "rollout-trainer",
            Action.RESUME,
            reason="JOB_STATE_FAILED: pod preempted",
            job_id="rollout-trainer-1a2b3c",
            live_state="JOB_STATE_FAILED",
            accelerators={H100: 8},
        ),
        Change(
            "staging-trainer",
            Action.STOP,
            reason="declared stopped; job is JOB_STATE_RUNNING",
            job_id="staging-trainer-0d0d",
            live_state="JOB_STATE_RUNNING",
            accelerators={H100: -8},
        ),
        Change(
            "warmup-trainer",
            Action.WAIT,
            reason="job is JOB_STATE_PENDING",
            job_id="warmup-trainer-3e3e",
            live_state="JOB_STATE_PENDING",
        ),
    ),
    drift=(DELETED, PREEMPTED),
)

REPLACES = Plan(
    changes=(
        Change(
            "dead-trainer",
            Action.REPLACE,
            reason="job is JOB_STATE_EARLY_STOPPED and cannot be resumed",
            job_id="dead-trainer-1",
            live_state="JOB_STATE_EARLY_STOPPED",
            before=POLICY,
            after=POLICY,
            accelerators={H100: 8},
        ),
        Change(
            "manual-trainer",
            Action.REPLACE,
            job_id="manual-trainer-2",
            live_state="JOB_STATE_RUNNING",
            before=MANUAL,
            after={
                "base_model": MODEL,
                "extra_args": ["--flash-attn", "--seed=7"],
                "learning_rate": 2e-05,
                "training_shape": SHAPE,
            },
            changed_fields=(
                "accelerator_count",
                "accelerator_type",
                "extra_args",
                "learning_rate",
                "max_context_length",
                "node_count",
                "training_shape",
            ),
            accelerators={A100: -8, H100: 8},
            create_before_destroy=True,
        ),
        Change(
            "policy-trainer",
            Action.REPLACE,
            reason="requested with --replace",
            job_id="policy-trainer-3",
            live_state="JOB_STATE_RUNNING",
            before=POLICY,
            after=POLICY,
        ),
        Change(
            "rank-trainer",
            Action.REPLACE,
            job_id="rank-trainer-4",
            live_state="JOB_STATE_IDLE",
            before={**POLICY, "lora_rank": 8, "region": "US_IOWA_1"},
            after={**POLICY, "lora_rank": 16},
            changed_fields=("lora_rank", "region"),
        ),
    )
)

DESTROY = Plan(
    changes=(
        Change(
            "eval-trainer",
            Action.DELETE,
            reason="already deleted outside rlorinfra; forget it",
            job_id="eval-trainer-9f8e7d",
            before=POLICY,
        ),
        Change(
            "grpo-policy-trainer",
            Action.DELETE,
            job_id="grpo-policy-trainer-aa11",
            live_state="JOB_STATE_RUNNING",
            before=POLICY,
            accelerators={H100: -8},
        ),
        Change(
            "legacy-sft",
            Action.DELETE,
            job_id="legacy-sft-77aa",
            live_state="JOB_STATE_RUNNING",
            before=MANUAL,
            accelerators={A100: -8},
        ),
    ),
    drift=(DELETED,),
    destroy=True,
)

NO_CHANGES_WITH_DRIFT = Plan(
    changes=(
        Change(
            "idle-trainer",
            Action.NOOP,
            reason="job is JOB_STATE_IDLE",
            job_id="idle-trainer-1",
            live_state="JOB_STATE_IDLE",
        ),
        Change(
            "parked-trainer",
            Action.NOOP,
            reason='declared stopped; the replacement these changes force waits until desired_state = "running"',
            job_id="parked-trainer-2",
            live_state="JOB_STATE_CANCELLED",
            changed_fields=("lora_rank",),
        ),
    ),
    drift=(
        Drift(
            "idle-trainer",
            "idle-trainer-1",
            "idle",
            "JOB_STATE_RUNNING",
            "JOB_STATE_IDLE",
            "became idle: JOB_STATE_RUNNING -> JOB_STATE_IDLE",
        ),
        Drift(
            "idle-trainer",
            "idle-trainer-1",
            "changed",
            "JOB_STATE_RUNNING",
            "JOB_STATE_IDLE",
            'changed outside rlorinfra: base_model ("a" -> "b")',
            ("base_model",),
        ),
    ),
)

REFRESH_ONLY = Plan(drift=(DELETED, PREEMPTED), refresh_only=True)
REFRESH_ONLY_CLEAN = Plan(refresh_only=True)


def planned() -> Plan:
    """A plan from the real planner: one create, one resume after preemption, one delete."""
    desired = {
        "policy": JobSpec("policy", base_model=MODEL, training_shape=SHAPE),
        "rollout": JobSpec("rollout", base_model=MODEL, training_shape=SHAPE),
    }

    def rec(job_id, spec):
        return JobRecord(
            job_id,
            f"accounts/acme/rlorTrainerJobs/{job_id}",
            "https://gw",
            spec,
            phase="ready",
            observed_state="JOB_STATE_RUNNING",
        )

    state = State(
        serial=3, lineage="l", resources={Kind.JOB: {"rollout": rec("rollout-1", POLICY), "old": rec("old-1", MANUAL)}}
    )
    live = LiveWorld(
        "acme",
        jobs={
            "rollout-1": LiveJob("rollout-1", "n", "rollout", "JOB_STATE_FAILED", "UNAVAILABLE", "pod preempted"),
            "old-1": LiveJob("old-1", "n", "old", "JOB_STATE_RUNNING"),
        },
        shapes={SHAPE: ShapeVersion(f"{SHAPE}/versions/2", H100, 8, 2)},
    )
    return make_plan(desired, state, live)


SAMPLES = {
    "empty": EMPTY,
    "creates": CREATES,
    "mixed_with_drift": MIXED,
    "replaces": REPLACES,
    "destroy": DESTROY,
    "no_changes_with_drift": NO_CHANGES_WITH_DRIFT,
    "refresh_only": REFRESH_ONLY,
    "refresh_only_clean": REFRESH_ONLY_CLEAN,
}
