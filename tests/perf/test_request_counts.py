"""Request budgets of refresh (DESIGN.md §4): O(jobs / 200) requests, not O(jobs).

Counted where it cannot be fooled: by a WSGI middleware in front of the emulator
(and cross-checked with the client's own ``request_count``). No timing asserts;
``benchmarks/`` measures time.
"""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import httpx
import pytest

from rlorinfra.api.client import ControlPlaneClient
from rlorinfra.api.wire import create_request
from rlorinfra.config.load import load_config_text
from rlorinfra.controlplane.app import make_app
from rlorinfra.controlplane.server import EmulatorServer, ServedEmulator
from rlorinfra.controlplane.store import Store
from rlorinfra.model.address import Kind
from rlorinfra.model.jobs import job_name, trainer_endpoint
from rlorinfra.plan.planner import make_plan
from rlorinfra.plan.refresh import refresh
from rlorinfra.state.model import PHASE_READY, JobRecord, State

KEY = "perf-key"
URL = "http://127.0.0.1:9"  # only recorded in state; requests go through the transport


class Counting:
    """WSGI middleware counting requests by ``METHOD path-kind``."""

    def __init__(self, app) -> None:
        self.app = app
        self.kinds: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, environ, start_response):
        path = environ["PATH_INFO"]
        kind = "list" if path.endswith("/rlorTrainerJobs") else "job" if "/rlorTrainerJobs/" in path else path
        if path.startswith("/training/"):
            kind = "health"  # the trainer gateway, not the control plane
        with self._lock:
            self.kinds[f"{environ['REQUEST_METHOD']} {kind}"] += 1
        return self.app(environ, start_response)

    @property
    def total(self) -> int:
        """Control-plane requests (health checks go to the trainer gateway and are not counted)."""
        return sum(n for kind, n in self.kinds.items() if not kind.endswith(" health"))


def tracked_world(tmp_path: Path, n: int, *, untracked: int = 0):
    """N RUNNING jobs seeded straight into the store, a config declaring them, a state tracking them."""
    names = [f"job-{i:05d}" for i in range(n)]
    text = (
        '[control_plane]\nurl = "http://127.0.0.1:9"\naccount_id = "local"\n'
        '[defaults]\nbase_model = "accounts/fireworks/models/qwen3-8b"\ntraining_shape = "ts-qwen3-8b-policy"\n'
        + "".join(f"[jobs.{name}]\n" for name in names)
    )
    config = load_config_text(text, tmp_path / "rlorinfra.toml", {"FIREWORKS_API_KEY": KEY})
    store = Store(tmp_path / "cp.sqlite3", provision_seconds=0, capacity=10**6, settle_seconds=0)
    records = {}
    for name, spec in config.jobs.items():
        job_id = f"{name}-000000"
        params, body = create_request(name, spec.spec())
        store.create_job(body, dict(params) | {"rlorTrainerJobId": job_id})
        records[name] = JobRecord(
            job_id=job_id,
            job_name=job_name("local", job_id),
            spec=spec.spec(),
            endpoint=trainer_endpoint(URL, "local", job_id),
            phase=PHASE_READY,
            observed_state="JOB_STATE_RUNNING",
        )
    for i in range(untracked):  # someone else's jobs on the same account: listed, not fetched
        params, body = create_request(f"other-{i}", config.jobs[names[0]].spec())
        store.create_job(body, dict(params) | {"rlorTrainerJobId": f"other-{i:05d}"})
    return config, store, State(control_plane={"url": URL, "account_id": "local"}, resources={Kind.JOB: records})


@pytest.fixture(scope="module")
def thousand(tmp_path_factory):
    return tracked_world(tmp_path_factory.mktemp("perf"), 1000, untracked=50)


def test_refresh_of_1000_tracked_jobs_uses_at_most_10_requests(thousand):
    config, store, state = thousand
    counting = Counting(make_app(store, api_key=KEY))
    with ControlPlaneClient(URL, KEY, account_id="local", transport=httpx.WSGITransport(app=counting)) as client:
        live = refresh(client, config.jobs, state)
        assert client.request_count == counting.total
        assert client.health_check_count == counting.kinds["GET health"] == 1000  # every tracked RUNNING job
    assert counting.total <= 10, counting.kinds
    assert counting.kinds["GET list"] == 6  # 1050 jobs / pageSize 200
    assert counting.kinds["GET job"] == 0  # every tracked job came from the list
    assert len(live.jobs) == 1050 and not live.missing
    plan = make_plan(config.jobs, state, live)
    assert not plan.has_changes and not plan.drift


def test_deleted_tracked_jobs_cost_one_get_each_and_nothing_else(tmp_path):
    config, store, state = tracked_world(tmp_path, 250)
    for job_id in ("job-00007-000000", "job-00200-000000"):
        store.delete_job(job_id)  # tombstones: hidden from lists, still readable by ID
    counting = Counting(make_app(store, api_key=KEY))
    with ControlPlaneClient(URL, KEY, account_id="local", transport=httpx.WSGITransport(app=counting)) as client:
        refresh(client, config.jobs, state)
    assert counting.kinds["GET list"] == 2 and counting.kinds["GET job"] == 2
    assert counting.total <= 5, counting.kinds


class _ConnectionCountingServer(EmulatorServer):
    connections = 0

    def process_request(self, request, client_address):
        type(self).connections += 1
        super().process_request(request, client_address)


def test_refresh_over_http_reuses_keep_alive_connections(tmp_path):
    config, store, state = tracked_world(tmp_path, 450)
    server = _ConnectionCountingServer(("127.0.0.1", 0), make_app(store, api_key=KEY))
    with ServedEmulator(server) as served:
        with ControlPlaneClient(served.url, KEY, account_id="local") as client:
            live = refresh(client, config.jobs, state, health_check=False)
            assert client.request_count == 4  # 3 pages + 1 shape
    assert len(live.jobs) == 450
    # The pages share one keep-alive connection; the shape lookup runs alongside them on a second.
    assert _ConnectionCountingServer.connections <= 2


# -- a small config in a big shared account: per-job GETs, not 26 LIST pages ----------------


@pytest.fixture(scope="module")
def three_in_5000(tmp_path_factory):
    return tracked_world(tmp_path_factory.mktemp("big-account"), 3, untracked=5000)


def test_three_tracked_jobs_among_5000_cost_at_most_4_requests_once_the_account_was_listed(three_in_5000):
    from dataclasses import replace

    config, store, state = three_in_5000
    counting = Counting(make_app(store, api_key=KEY))
    with ControlPlaneClient(URL, KEY, account_id="local", transport=httpx.WSGITransport(app=counting)) as client:
        first = refresh(client, config.jobs, state)  # nothing known about the account yet: list it
        assert counting.kinds["GET list"] == 26 and first.listed_jobs == 5003
        counting.kinds.clear()
        live = refresh(client, config.jobs, replace(state, listed_jobs=first.listed_jobs))
    assert counting.total <= 4, counting.kinds  # 3 GETs + 1 shape
    assert counting.kinds["GET job"] == 3 and counting.kinds["GET list"] == 0
    assert counting.kinds["GET health"] == 3  # health checks go to the trainer gateway, not counted
    plan = make_plan(config.jobs, state, live)
    assert not plan.has_changes and not plan.drift


def test_a_declared_job_not_in_state_is_found_by_a_display_name_list_in_a_big_account(three_in_5000):
    from dataclasses import replace

    config, store, state = three_in_5000
    lost = replace(state.without_job("job-00001"), listed_jobs=5003)
    counting = Counting(make_app(store, api_key=KEY))
    with ControlPlaneClient(URL, KEY, account_id="local", transport=httpx.WSGITransport(app=counting)) as client:
        live = refresh(client, config.jobs, lost, health_check=False)
    assert counting.kinds["GET job"] == 2 and counting.kinds["GET list"] == 1, counting.kinds
    with pytest.raises(Exception, match="rlorinfra import job-00001"):
        make_plan(config.jobs, lost, live)  # never a second job with the same name


def test_a_poll_round_for_three_awaited_jobs_in_a_big_account_costs_three_gets():
    from rlorinfra.apply import ApplyOptions, Executor, StateWriter

    plane = _InstantPlane()
    plane.gets = 0
    get = plane.get_job

    def counted_get(job_id):
        plane.gets += 1
        plane.jobs[job_id] = "JOB_STATE_RUNNING"
        return get(job_id)

    plane.get_job = counted_get
    writer = StateWriter(State(), lambda s: s)
    executor = Executor(plane, writer, options=ApplyOptions(poll_min_s=0.01, poll_max_s=0.01), list_pages=26)
    result = executor.run(_creates(3))
    assert all(o.ok for o in result.outcomes)
    assert plane.lists == 0 and plane.gets % 3 == 0 and plane.gets >= 3  # 3 per round, never a LIST


# -- apply: state writes are grouped, not one O(jobs) write per job event ---------------------


class _InstantPlane:
    """A control plane where every created job is RUNNING and healthy at the next list."""

    def __init__(self) -> None:
        self.jobs: dict[str, str] = {}
        self.lists = 0
        self._lock = threading.Lock()

    def job_name(self, job_id):
        return f"accounts/acct/rlorTrainerJobs/{job_id}"

    def endpoint(self, job_id):
        return f"http://gw/training/v1/rlorTrainerJobs/acct/{job_id}"

    def _live(self, job_id):
        from rlorinfra.model.jobs import LiveJob

        return LiveJob(job_id=job_id, name=self.job_name(job_id), display_name="", state=self.jobs[job_id])

    def create_job(self, job_id, display_name, spec):
        with self._lock:
            self.jobs[job_id] = "JOB_STATE_CREATING"
        return self._live(job_id)

    def list_jobs(self):
        with self._lock:
            self.lists += 1
            self.jobs = dict.fromkeys(self.jobs, "JOB_STATE_RUNNING")
            return [self._live(j) for j in self.jobs]

    def get_job(self, job_id):
        return self._live(job_id) if job_id in self.jobs else None

    def healthy(self, job_id):
        return True


def _creates(n: int):
    from rlorinfra.plan.model import Action, Change, Plan

    spec = {"base_model": "accounts/fireworks/models/qwen3-8b", "training_shape": "ts-qwen3-8b-policy"}
    return Plan(changes=tuple(Change(name=f"job-{i:04d}", action=Action.CREATE, after=spec) for i in range(n)))


def test_apply_of_200_creates_writes_state_a_bounded_number_of_times():
    from rlorinfra.apply import ApplyOptions, Executor, StateWriter

    writes = []
    writer = StateWriter(State(), lambda s: writes.append(s) or s)
    plane = _InstantPlane()
    result = Executor(plane, writer, options=ApplyOptions(poll_min_s=0.01, poll_max_s=0.01)).run(_creates(200))
    assert all(o.ok for o in result.outcomes) and len(result.outcomes) == 200
    assert {r.phase for r in result.state.jobs.values()} == {"ready"}
    # Every new ID is on disk (phase "creating") before the first POST, in one write ...
    assert len(writes[0].jobs) == 200 and {r.phase for r in writes[0].jobs.values()} == {"creating"}
    # ... then a few grouped writes per poll round, never one per job event (that was 400+).
    assert len(writes) <= 2 + 2 * plane.lists, (len(writes), plane.lists)
    assert writes[-1] == result.state


def test_interrupted_apply_leaves_no_record_for_creates_that_never_started():
    from rlorinfra.apply import ApplyOptions, Executor, StateWriter

    def interrupt(_seconds):
        raise KeyboardInterrupt

    writer = StateWriter(State(), lambda s: s)
    plane = _InstantPlane()
    executor = Executor(plane, writer, options=ApplyOptions(parallelism=1), sleep=interrupt)
    result = executor.run(_creates(20))
    assert result.interrupted
    started = {o.name for o in result.outcomes if o.job_id}
    assert set(result.state.jobs) == started  # only creates that reached their POST are recorded
    assert len(plane.jobs) == len(started) < 20
