"""The flows behind the commands: plan, apply, destroy, import and the state edits.

lock → read → refresh → plan → confirm → apply → write. Nothing here prints,
prompts or exits: each flow takes a :class:`~rlorinfra.operations.ui.UI` that
the CLI (or a test, or ``watch``) implements.
"""

from rlorinfra.operations.applying import ApplyCancelled, ApplyRun, execute, raise_for_result, run_apply, run_destroy
from rlorinfra.operations.importing import (
    DeploymentImportResult,
    ImportResult,
    generated_deployment_block,
    generated_job_block,
    import_job,
    run_import,
    run_import_deployment,
)
from rlorinfra.operations.planning import (
    PlanOutcome,
    PlanRequest,
    build_plan,
    has_pending_changes,
    load_saved_plan,
    run_plan,
    save_plan,
)
from rlorinfra.operations.state_edits import (
    force_unlock,
    listed_addresses,
    record_of,
    resource_of,
    state_mv,
    state_rm,
    state_unprotect,
)
from rlorinfra.operations.state_moves import (
    MigrateOutcome,
    MigrateResult,
    PushResult,
    state_migrate,
    state_pull,
    state_push,
)
from rlorinfra.operations.ui import UI, Operation, Question
from rlorinfra.operations.workspace import Workspace, open_client

__all__ = [
    "UI",
    "ApplyCancelled",
    "ApplyRun",
    "DeploymentImportResult",
    "ImportResult",
    "MigrateOutcome",
    "MigrateResult",
    "PushResult",
    "Operation",
    "PlanOutcome",
    "PlanRequest",
    "Question",
    "Workspace",
    "build_plan",
    "execute",
    "force_unlock",
    "generated_deployment_block",
    "generated_job_block",
    "has_pending_changes",
    "import_job",
    "load_saved_plan",
    "open_client",
    "raise_for_result",
    "listed_addresses",
    "record_of",
    "resource_of",
    "run_apply",
    "run_destroy",
    "run_import",
    "run_import_deployment",
    "run_plan",
    "save_plan",
    "state_migrate",
    "state_mv",
    "state_pull",
    "state_push",
    "state_rm",
    "state_unprotect",
]
