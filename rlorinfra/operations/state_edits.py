"""Edits of state that touch no job: ``state rm``, ``state mv``, ``state unprotect``, ``force-unlock``.

``state rm``, ``state mv`` and ``state unprotect`` hold the state lock for their read-modify-write;
``force-unlock`` removes a lock and so takes none.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from rlorinfra.errors import StateError
from rlorinfra.model.address import Address
from rlorinfra.operations.ui import FORCE_UNLOCK_EXPLANATION, FORCE_UNLOCK_QUESTION, UI, Operation, Question
from rlorinfra.operations.workspace import Workspace
from rlorinfra.state.model import JobRecord, Record, State


def record_of(state: State, name: str, where: str) -> JobRecord:
    """The record of ``name``, or an error that points at ``state list``."""
    record = state.jobs.get(name)
    if record is None:
        known = ", ".join(sorted(state.jobs)) or "none"
        raise StateError(
            f"No job named {name!r} in state",
            f"The state in {where} has no job {name!r} (jobs in state: {known}). "
            "Run `rlorinfra state list` to see the names it tracks.",
        )
    return record


def state_rm(ws: Workspace, names: tuple[str, ...], *, lock_timeout: float = 0) -> dict[str, JobRecord]:
    """Forget jobs ``names`` (the live jobs keep running); the removed records by name."""
    store = ws.store
    with ws.lock(Operation.STATE_RM, lock_timeout):
        state = store.read()
        removed = {name: record_of(state, name, store.backend.describe()) for name in dict.fromkeys(names)}
        _refuse_deposed(removed)
        for name in removed:
            state = state.without_job(name)
        store.write(state)
    return removed


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
    """Rename job ``old`` to ``new`` in state (the live job is not touched); the moved record."""
    from rlorinfra.config.fields import display_name_problem

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
        address = _address_in(state, text, store.backend.describe())
        record = state.record(address)
        assert record is not None  # _address_in found it
        if not record.protected:
            return address, record, False
        unprotected = replace(record, protected=False)
        store.write(state.with_record(address, unprotected))
    return address, unprotected, True


def _address_in(state: State, text: str, where: str) -> Address:
    """The managed address ``text`` names, or an error listing what state tracks."""
    try:
        address = Address.parse(text, known=state.addresses())
    except ValueError as exc:
        raise StateError(f"Address {text!r} is ambiguous", f"{exc}.") from None
    if state.record(address) is None:
        known = ", ".join(str(a) for a in state.addresses()) or "none"
        raise StateError(
            f"No resource {text!r} in state",
            f"The state in {where} has no {address} (resources in state: {known}). "
            "Run `rlorinfra state list` to see what it tracks.",
        )
    return address


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
