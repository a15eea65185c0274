"""Team faults end to end (issue 15 item 6): two "hosts" share a postgres or S3 state and one served emulator.

Every command is a real ``python -m rlorinfra`` subprocess run from its host's
own folder. Each fault runs on both team backends:

1. both hosts apply at once: one proceeds, the other names the holder;
2. the holder is SIGKILLed mid-apply: postgres frees the lock with the session,
   S3 once its lease runs out unrenewed; either way a run waiting 2 s gets in and
   the next apply converges without a duplicate;
3. the holder is SIGSTOPped, another operator applies (postgres: after
   force-unlock; S3: without, once the paused holder's lease ran out); the
   first, resumed, is fenced off ("State changed underneath this run");
4. the state server goes silent mid-apply (a blackholing proxy): the run fails
   within a bounded time and the next apply, once it is back, converges.
"""

from __future__ import annotations

import re
import signal
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from rlorinfra.state.backends.s3 import LEASE
from tests.e2e.conftest import jobs_toml
from tests.reliability.helpers import live_by_name, serve_logged
from tests.reliability.team import Blackhole, Host, finish, make_host, wait_for
from tests.state.conftest import moto_s3, pg_server  # noqa: F401 - the session's servers (conftest first: no cycle)
from tests.state.pg_server import PgServer, unique_name
from tests.state.s3_server import REGION

PROVISION = 1.5  # seconds a job takes to become ready: long enough to be caught mid-apply
JOBS = ["team-a", "team-b"]
APPLY = ("apply", "--auto-approve", "--no-health-check")
STATE_TIMEOUT = "2"  # RLORINFRA_STATE_TIMEOUT for the outage runs: a silent server fails them fast


@dataclass
class Team:
    """Two hosts on one shared state and one served emulator."""

    kind: str
    world: object
    log: object
    a: Host
    b: Host
    state_toml: str
    backend_args: dict

    def configure(self, host: Host, names: list[str]) -> None:
        host.write_config(self.world.url, self.state_toml, jobs_toml(*names))

    def backend(self):
        """A backend on the shared state, in this test process (reads it back as the team left it)."""
        if self.kind == "postgres":
            from rlorinfra.state.backends.postgres import PostgresBackend

            return PostgresBackend(self.backend_args["conn"], name=self.backend_args["name"])
        from rlorinfra.state.backends.s3 import S3Backend

        return S3Backend(**self.backend_args)

    def read_state(self):
        backend = self.backend()
        try:
            return backend.read()[0]
        finally:
            backend.close()

    def lock_info(self):
        backend = self.backend()
        try:
            return backend.lock_info()
        finally:
            backend.close()


def _state_toml(kind: str, request, name: str, proxy: Blackhole | None) -> tuple[str, dict, dict[str, str]]:
    """The ``[state]`` table, direct-backend arguments and host environment for ``kind``."""
    if kind == "postgres":
        server: PgServer = request.getfixturevalue("pg_server")
        port = proxy.port if proxy else None
        toml = f'[state]\nbackend = "postgres"\nname = "{name}"\n'
        return toml, {"conn": server.conninfo(), "name": name}, {"PG_CONN_STR": server.conninfo(port=port)}
    moto = request.getfixturevalue("moto_s3")
    bucket = moto.new_bucket()
    endpoint = f"http://127.0.0.1:{proxy.port}" if proxy else moto.endpoint_url
    toml = f'[state]\nbackend = "s3"\nbucket = "{bucket}"\nkey = "team/{name}.json"\nregion = "{REGION}"\n'
    toml += f'endpoint_url = "{endpoint}"\n'
    args = {"bucket": bucket, "key": f"team/{name}.json", "region": REGION, "endpoint_url": moto.endpoint_url}
    return toml, args, {}


def _upstream(kind: str, request) -> tuple[str, int]:
    if kind == "postgres":
        return ("127.0.0.1", request.getfixturevalue("pg_server").port)
    url = request.getfixturevalue("moto_s3").endpoint_url
    return ("127.0.0.1", int(url.rsplit(":", 1)[1]))


def _make_team(kind: str, request, tmp_path, proxy: Blackhole | None = None) -> Iterator[Team]:
    from rlorinfra.controlplane.store import Store

    world, log = serve_logged(tmp_path, store=Store(tmp_path / "cp.sqlite3", provision_seconds=PROVISION))
    name = unique_name("team").replace("-", "_")
    toml, args, env = _state_toml(kind, request, name, proxy)
    if proxy:
        env["RLORINFRA_STATE_TIMEOUT"] = STATE_TIMEOUT
    a, b = make_host(tmp_path / "host-a", **env), make_host(tmp_path / "host-b", **env)
    team = Team(kind, world, log, a, b, toml, args)
    for host in (team.a, team.b):
        team.configure(host, JOBS)
    try:
        yield team
    finally:
        world.server.stop()


@pytest.fixture(params=["postgres", "s3"])
def team(request, tmp_path) -> Iterator[Team]:
    """Two hosts sharing a fresh postgres state name or S3 bucket."""
    yield from _make_team(request.param, request, tmp_path)


@pytest.fixture(params=["postgres", "s3"])
def cut_team(request, tmp_path) -> Iterator[tuple[Team, Blackhole]]:
    """Two hosts that reach the shared state through a proxy the test can blackhole."""
    proxy = Blackhole(_upstream(request.param, request))
    try:
        for team in _make_team(request.param, request, tmp_path, proxy):
            yield team, proxy
    finally:
        proxy.close()


def _provisioning(team: Team, n: int = len(JOBS)):
    """Wait until a run holds the lock and has POSTed ``n`` creates (the jobs are provisioning)."""
    wait_for(lambda: team.log.count("POST", "/rlorTrainerJobs") >= n, 30, f"{n} creates on the emulator")
    return wait_for(team.lock_info, 10, "the lock to be held")


def _assert_one_each(team: Team, names: list[str]) -> None:
    """The emulator has each job exactly once, every create was POSTed once, the state knows them all."""
    counts = live_by_name(team.world)
    assert dict(counts) == dict.fromkeys(names, 1), f"live jobs: {dict(counts)}"
    state = team.read_state()
    assert sorted(state.jobs) == sorted(names)
    assert {r.job_id for r in state.jobs.values()} == team.log.created_ids()
    assert team.log.count("POST", "/rlorTrainerJobs") == len(names), "a job was created twice"
    assert all(r.phase == "ready" for r in state.jobs.values())


def _lock_id_in(err: str) -> str:
    match = re.search(r"rlorinfra force-unlock (\S+)", err)
    assert match, f"no force-unlock command in:\n{err}"
    return match.group(1)


def _clean_failure(code: int, err: str) -> None:
    assert code not in (0, None), err
    assert "Traceback" not in err, err


# -- 1. two hosts apply at once ------------------------------------------------------------------


def test_two_hosts_apply_at_once_one_proceeds_the_other_names_the_holder(team):
    procs = [team.a.popen(*APPLY, "--lock-timeout", "0"), team.b.popen(*APPLY, "--lock-timeout", "0")]
    results = [finish(p) for p in procs]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 1], [r for r in results]
    winner, loser = (0, 1) if results[0][0] == 0 else (1, 0)
    err = results[loser][2]
    assert "Error acquiring the state lock" in err and "Traceback" not in err
    lock_id = _lock_id_in(err)
    assert f"rlorinfra force-unlock {lock_id} -f {(team.a, team.b)[loser].config}" in err, err
    assert re.search(rf"ID:\s+{re.escape(lock_id)}", err), err
    assert re.search(r"Operation:\s+apply", err), err
    assert re.search(rf"PID:\s+{procs[winner].pid}\b", err), err
    assert re.search(rf"Host:\s+{re.escape(socket.gethostname())}", err), err
    assert team.lock_info() is None, "the winner left its lock behind"
    _assert_one_each(team, JOBS)


# -- 2. the holder is SIGKILLed mid-apply ----------------------------------------------------------


def test_holder_killed_mid_apply_next_apply_converges_without_duplicates(team):
    holder = team.a.popen(*APPLY)
    info = _provisioning(team)
    assert info.pid == holder.pid
    holder.kill()
    holder.wait(10)
    killed_at = time.monotonic()
    # IDs are journaled before the POST: the state at its last commit already knows both jobs.
    assert {r.job_id for r in team.read_state().jobs.values()} == team.log.created_ids()
    # postgres: the session died with the process and the server let the lock go. S3: the
    # lock object stays, unrenewed; a run that watches it unchanged for a lease breaks it
    # (a run already waiting at the kill gets in within 2 s; this one starts after it, so
    # its own wait is 2 s plus a lease).
    code, out, err = team.b.run(*APPLY, "--lock-timeout", f"{2 + LEASE:g}s")
    assert code == 0, err
    assert time.monotonic() - killed_at < 2 + LEASE + PROVISION + 30
    _assert_one_each(team, JOBS)


# -- 3. the holder is paused, its lock broken, and it resumes ----------------------------------------


def test_paused_holder_loses_its_lock_and_is_fenced(team):
    holder = team.a.popen(*APPLY)
    info = _provisioning(team)
    holder.send_signal(signal.SIGSTOP)
    try:
        if team.kind == "postgres":  # the paused holder's session lives on: only force-unlock frees it
            code, _, err = team.b.run("force-unlock", "--force", info.id)
            assert code == 0, err
        # S3: no force-unlock; the paused holder stops renewing and B's wait outlasts its lease.
        team.configure(team.b, [*JOBS, "team-c"])  # the other operator's change: one more job
        code, _, err = team.b.run(*APPLY, "--lock-timeout", "5s")
        assert code == 0, err
        after_b = team.read_state()
    finally:
        holder.send_signal(signal.SIGCONT)
    code, _, err = finish(holder)
    _clean_failure(code, err)
    assert "State changed underneath this run" in err, err
    kept = team.read_state()
    assert (kept.serial, kept.lineage, sorted(kept.jobs)) == (after_b.serial, after_b.lineage, [*JOBS, "team-c"])
    assert team.lock_info() is None
    _assert_one_each(team, [*JOBS, "team-c"])


# -- 4. the state server goes silent mid-apply -------------------------------------------------------

OUTAGE_BOUND = 40  # seconds from the cut to the run's exit: a few RLORINFRA_STATE_TIMEOUT=2 waits and retries


def test_state_server_blackholed_mid_apply_fails_bounded_then_converges(cut_team):
    team, proxy = cut_team
    holder = team.a.popen(*APPLY)
    info = _provisioning(team)
    proxy.cut()
    cut_at = time.monotonic()
    code, out, err = finish(holder, timeout=OUTAGE_BOUND + 30)
    took = time.monotonic() - cut_at
    _clean_failure(code, err)
    assert "stopped answering" in err and ("postgres state" if team.kind == "postgres" else "S3 endpoint") in err
    assert "run `rlorinfra apply` again" in err and "team-a, team-b" in err, err
    assert took < OUTAGE_BOUND, f"the run took {took:.1f} s to give up on a silent server"
    proxy.mend()
    if team.kind == "s3":  # the silent store could not take the lock object away: the next run names it
        code, _, err = team.b.run(*APPLY, "--lock-timeout", "0")
        assert code == 1 and _lock_id_in(err) == info.id, err
        code, _, err = team.b.run("force-unlock", "--force", info.id)
        assert code == 0, err
    # postgres: the dead run's sessions ended when the proxy dropped them, and its lock with them.
    code, _, err = team.b.run(*APPLY, "--lock-timeout", "2s")
    assert code == 0, err
    _assert_one_each(team, JOBS)
