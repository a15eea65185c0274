"""Edits of state that touch no live resource: ``state rm``, ``state mv``, ``state unprotect``, ``force-unlock``.

``state rm``, ``state mv`` and ``state unprotect`` hold the state lock for their read-modify-write;
``force-unlock`` removes a lock and so takes none.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from rlorinfra.errors import StateError
from rlorinfra.model.address import Address, Kind
from rlorinfra.operations.ui import FORCE_UNLOCK_EXPLANATION, FORCE_UNLOCK_QUESTION, UI, Operation, Question
from rlorinfra.operations.workspace import Workspace
from rlorinfra.state.model import JobRecord, Record, State


def address_in_state(state: State, text: str) -> Address:
    """``job.NAME`` / ``deployment.NAME``, or a bare NAME resolved against the addresses state tracks.

    An ambiguous bare name (a job and a deployment both called NAME) is a StateError.
    """
    try:
        return Address.parse(text, known=state.addresses())
    except ValueError as exc:
        raise StateError(f"{exc}", "Write the full address, e.g. `job.NAME` or `deployment.NAME`.") from None


def resource_of(state: State, text: str, where: str) -> tuple[Address, Record]:
    """The address ``text`` names and its record, or an error that points at ``state list``."""
    address = address_in_state(state, text)
    record = state.record(address)
    if record is None:
        known = ", ".join(_listed(state)) or "none"
        what = "job named" if address.kind is Kind.JOB else "deployment"
        raise StateError(
            f"No {what} {address.name!r} in state",
            f"The state in {where} has no {address} (resources in state: {known}). "
            "Run `rlorinfra state list` to see the names it tracks.",
        )
    return address, record


def listed_addresses(state: State) -> list[Address]:
    """Every tracked resource in listing order: the jobs first (as before deployments existed), then the rest."""
    return sorted(state.addresses(), key=lambda a: (a.kind is not Kind.JOB, a.kind.value, a.name))


def _listed(state: State) -> list[str]:
    """Every tracked resource as ``state list`` prints it: jobs by name, other kinds by address."""
    return [address.name if address.kind is Kind.JOB else str(address) for address in listed_addresses(state)]


def record_of(state: State, name: str, where: str) -> JobRecord:
    """The record of job ``name``, or an error that points at ``state list``."""
    record = state.jobs.get(name)
    if record is None:
        known = ", ".join(sorted(state.jobs)) or "none"
        raise StateError(
            f"No job named {name!r} in state",
            f"The state in {where} has no job {name!r} (jobs in state: {known}). "
            "Run `rlorinfra state list` to see the names it tracks.",
        )
    return record


def state_rm(ws: Workspace, names: tuple[str, ...], *, lock_timeout: float = 0) -> dict[str, Record]:
    """Forget resources ``names`` (the live ones keep running); the removed records by the text given.

    A name is ``job.NAME``, ``deployment.NAME`` or a bare name (see ``address_in_state``).
    """
    store = ws.store
    with ws.lock(Operation.STATE_RM, lock_timeout):
        state = store.read()
        where = store.backend.describe()
        found = {name: resource_of(state, name, where) for name in dict.fromkeys(names)}
        _refuse_deposed({name: record for name, (_, record) in found.items() if isinstance(record, JobRecord)})
        for address, _ in found.values():
            state = state.without_record(address)
        store.write(state)
    return {name: record for name, (_, record) in found.items()}


def state_unquarantine(ws: Workspace, text: str, *, lock_timeout: float = 0) -> tuple[Address, bool]:
    """Let ``watch`` act on ``text`` again: clear its quarantine and resume history.

    Returns the address and whether it was quarantined (clearing a resource that
    was not is no error: the wanted outcome holds).
    """
    from rlorinfra.operations.watching import clear_quarantine

    store = ws.store
    with ws.lock(Operation.STATE_UNQUARANTINE, lock_timeout):
        state = store.read()
        address, record = resource_of(state, text, store.backend.describe())
        if record.watch.quarantined:
            store.write(clear_quarantine(state, [address]))
    return address, record.watch.quarantined


def _refuse_deposed(removed: Mapping[str, JobRecord]) -> None:
    """Never drop a deposed job silently: forgetting its record would leave it running untracked."""
    holding = {name: record.deposed_job_ids for name, record in removed.items() if record.deposed_job_ids}
    if not holding:
        return
    listing = "; ".join(f'"{name}" still tracks {", ".join(ids)}' for name, ids in holding.items())
    raise StateError(
        "Cannot remove a job that still tracks deposed jobs",
        f"{listing} (replaced, their deletion not yet confirmed). Removing the record would leave them "
        "running untracked. Run `rlorinfra apply` first: it deletes the deposed jobs and then `state rm` "
        "works. Nothing was changed.",
    )


def state_mv(ws: Workspace, old: str, new: str, *, lock_timeout: float = 0) -> JobRecord:
    """Rename job ``old`` to ``new`` in state (the live job is not touched); the moved record.

    Only jobs move: a deployment's name is its deployment ID (the config key is
    the ID), so a renamed record would name a deployment that does not exist.
    ``job.NAME`` is accepted for either side.
    """
    from rlorinfra.config.fields import display_name_problem

    _refuse_moving_other_kinds(old, new)
    old, new = _job_name(old), _job_name(new)
    problem = display_name_problem(new)
    if problem:
        raise StateError(f"Invalid job name {new!r}", f"A job display name {problem}. Choose another NEW name.")
    store = ws.store
    with ws.lock(Operation.STATE_MV, lock_timeout):
        state = store.read()
        record = record_of(state, old, store.backend.describe())
        if new in state.jobs:
            raise StateError(
                f"Job {new!r} already exists in state",
                f"The state in {store.backend.describe()} already tracks {new!r} (job {state.jobs[new].job_id}). "
                f"Remove it first with `rlorinfra state rm {new}` or choose another name.",
            )
        store.write(state.without_job(old).with_job(new, record))
    return record


def state_unprotect(ws: Workspace, text: str, *, lock_timeout: float = 0) -> tuple[Address, Record, bool]:
    """Clear ``protected`` on the record at ``text`` (``job.NAME``, ``deployment.ID`` or a bare name).

    Under the state lock; a real change is written, which bumps the serial (so a
    plan saved before it is stale). Returns the address, the record as it is now,
    and whether it was protected. The live resource is not touched.
    """
    store = ws.store
    with ws.lock(Operation.STATE_UNPROTECT, lock_timeout):
        state = store.read()
        address, record = resource_of(state, text, store.backend.describe())
        if not record.protected:
            return address, record, False
        unprotected = replace(record, protected=False)
        store.write(state.with_record(address, unprotected))
    return address, unprotected, True


def _job_name(text: str) -> str:
    """``job.NAME`` as NAME; anything else as written (a display name may hold dots)."""
    return text.removeprefix(f"{Kind.JOB.value}.")


def _refuse_moving_other_kinds(old: str, new: str) -> None:
    """``state mv`` of a deployment, or across kinds, is refused before any lock is taken."""
    kinds = {side: Address.parse(side).kind for side in (old, new)}
    if set(kinds.values()) == {Kind.JOB}:
        return
    if kinds[old] is not kinds[new]:
        raise StateError(
            f"Cannot move {old} to {new}: they are different kinds of resource",
            "`state mv` renames a record within its kind; a job record cannot become a deployment's "
            "or the other way round. Nothing was changed.",
        )
    deployment = Address.parse(old).name
    raise StateError(
        f"Cannot rename {old}: a deployment's name is its deployment ID",
        f"The key of [deployments.NAME] is the ID of the live deployment, so a record under another name "
        f"would name a deployment that does not exist. To manage {deployment} under another ID, create a new "
        f"deployment with that ID (rename the table; the next apply replaces it), or `rlorinfra state rm {old}` "
        "to stop managing it. Nothing was changed.",
    )


def force_unlock(ws: Workspace, lock_id: str, ui: UI, *, ask: bool = True) -> None:
    """Remove the state lock ``lock_id`` left by a run that is gone, after asking (unless not ``ask``).

    A wrong or missing lock is refused before anyone is asked.
    """
    backend = ws.state_backend()
    holder = backend.lock_info()
    if holder is None or holder.id != lock_id:
        backend.force_unlock(lock_id)  # refuses (no lock, unreadable, wrong ID) and changes nothing
    question = Question(Operation.FORCE_UNLOCK, FORCE_UNLOCK_QUESTION, FORCE_UNLOCK_EXPLANATION, subject=lock_id)
    if ask and not ui.confirm(question):
        raise StateError("force-unlock cancelled.", "The lock was not removed. Nothing was changed.")
    backend.force_unlock(lock_id)
