"""Refresh of deployments (DESIGN.md §5): LIST pages or GETs by ID, whichever costs fewer requests.

Requests are counted where they cannot be fooled: by a WSGI middleware in front
of the emulator. Worlds are built fast: emulator rows written straight into its
store, state records written directly.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from rlorinfra.api.client import ControlPlaneClient
from rlorinfra.api.wire import create_request, deployment_create_request
from rlorinfra.config.load import load_config_text
from rlorinfra.config.model import Config
from rlorinfra.controlplane.app import make_app
from rlorinfra.controlplane.store import Store
from rlorinfra.errors import PlanError
from rlorinfra.model.address import Address, Kind
from rlorinfra.model.deployments import DeploymentState, deployment_name, trainer_link
from rlorinfra.model.jobs import job_name, trainer_endpoint
from rlorinfra.operations.applying import with_listing
from rlorinfra.plan.model import LiveWorld
from rlorinfra.plan.refresh import offline_world, read_deployments, refresh
from rlorinfra.state.codec import decode_state, encode_state
from rlorinfra.state.model import PHASE_READY, DeploymentRecord, JobRecord, State

KEY = "perf-key"
URL = "http://127.0.0.1:9"  # only recorded in state; requests go through the transport
SHAPE = "ts-qwen3-8b-policy"
DEPLOYMENT_SHAPE = "accounts/fireworks/deploymentShapes/qwen3-8b-policy"


class Counting:
    """WSGI middleware counting control-plane requests by ``METHOD what``."""

    def __init__(self, app) -> None:
        self.app = app
        self.kinds: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, environ, start_response):
        path = environ["PATH_INFO"]
        if path.endswith("/rlorTrainerJobs"):
            kind = "job list"
        elif "/rlorTrainerJobs/" in path:
            kind = "job"
        elif path.endswith("/deployments"):
            kind = "deployment list"
        elif "/deployments/" in path:
            kind = "deployment"
        elif "/trainingShapes/" in path:
            kind = "shape"
        else:
            kind = path
        with self._lock:
            self.kinds[f"{environ['REQUEST_METHOD']} {kind}"] += 1
        return self.app(environ, start_response)

    @property
    def total(self) -> int:
        """Every request seen."""
        return sum(self.kinds.values())


def world(tmp_path: Path, n: int, *, others: int = 0, shaped: bool = True) -> tuple[Config, Store, State]:
    """N RUNNING trainers and N READY deployments hot-loading them (one each), declared and tracked.

    ``others``: deployments of someone else on the same account (listed, never tracked).
    ``shaped``: the deployments take their shape from their trainer (else a declared shape).
    """
    shape_line = "" if shaped else f'deployment_shape = "{DEPLOYMENT_SHAPE}"\n'
    text = (
        f'[control_plane]\nurl = "{URL}"\naccount_id = "local"\n'
        f'[defaults]\nbase_model = "accounts/fireworks/models/qwen3-8b"\ntraining_shape = "{SHAPE}"\n'
        + "".join(f"[jobs.job-{i:05d}]\n" for i in range(n))
        + "".join(
            f'[deployments.dep-{i:05d}]\nbase_model = "accounts/fireworks/models/qwen3-8b"\n'
            f'hot_load_trainer = "job-{i:05d}"\n{shape_line}'
            for i in range(n)
        )
    )
    config = load_config_text(text, tmp_path / "rlorinfra.toml", {"FIREWORKS_API_KEY": KEY})
    store = Store(tmp_path / "cp.sqlite3", provision_seconds=0, capacity=10**6, settle_seconds=0)
    jobs: dict[str, JobRecord] = {}
    for name, spec in config.jobs.items():
        job_id = f"{name}-000000"
        params, body = create_request(name, spec.spec())
        store.create_job(body, dict(params) | {"rlorTrainerJobId": job_id})
        jobs[name] = JobRecord(
            job_id=job_id,
            job_name=job_name("local", job_id),
            spec=spec.spec(),
            endpoint=trainer_endpoint(URL, "local", job_id),
            phase=PHASE_READY,
            observed_state="JOB_STATE_RUNNING",
        )
    deployments = {d: _deployment(store, spec.spec(), jobs[str(spec.hot_load_trainer)].job_id, d) for d, spec in
                   config.deployments.items()}  # fmt: skip
    for i in range(others):
        _deployment(store, {"base_model": "accounts/fireworks/models/qwen3-8b"}, jobs["job-00000"].job_id, f"o-{i}")
    state = State(
        control_plane={"url": URL, "account_id": "local"}, resources={Kind.JOB: jobs, Kind.DEPLOYMENT: deployments}
    )
    return config, store, state


def _deployment(store: Store, declared: dict, trainer_job_id: str, deployment_id: str) -> DeploymentRecord:
    """One emulator row created as apply would send it, and the record apply would write."""
    link = trainer_link("local", trainer_job_id)
    spec = {k: v for k, v in declared.items() if k not in ("hot_load_trainer", "deployment_shape_from")}
    params, body = deployment_create_request(
        {**spec, "hot_load_trainer_job": link, "deployment_shape": spec.get("deployment_shape", DEPLOYMENT_SHAPE)}
    )
    row = store.deployments.create(body, dict(params) | {"deploymentId": deployment_id}, superuser=False)
    trainer = (Address.job(declared["hot_load_trainer"]),) if declared.get("hot_load_trainer") else ()
    return DeploymentRecord(
        deployment_id=deployment_id,
        deployment_name=deployment_name("local", deployment_id),
        spec=declared,
        phase=PHASE_READY,
        observed_state="READY",
        hot_load_trainer_job=link,
        hot_load_bucket_url=row.get("hotLoadBucketUrl"),
        deployment_shape_version=row.get("deploymentShape"),
        depends_on=trainer,
    )


def _refresh(store: Store, config: Config, state: State) -> tuple[LiveWorld, Counting]:
    counting = Counting(make_app(store, api_key=KEY))
    with ControlPlaneClient(URL, KEY, account_id="local", transport=httpx.WSGITransport(app=counting)) as client:
        live = refresh(client, config.jobs, state, health_check=False, deployments=config.deployments)
        assert client.request_count == counting.total
    return live, counting


@pytest.fixture(scope="module")
def five_hundred(tmp_path_factory):
    return world(tmp_path_factory.mktemp("refresh-deployments"), 500, others=30)


def test_500_jobs_and_500_deployments_cost_pages_not_resources(five_hundred):
    config, store, state = five_hundred
    live, counting = _refresh(store, config, state)
    assert counting.kinds["GET job list"] == 3  # 500 jobs / pageSize 200
    assert counting.kinds["GET deployment list"] == 3  # 530 deployments / pageSize 200
    assert counting.kinds["GET deployment"] == 0 and counting.kinds["GET job"] == 0
    assert counting.kinds["GET shape"] == 1  # one distinct training shape, for the jobs and the deployments
    assert counting.total <= 3 + 3 + 1 + 2, counting.kinds
    assert len(live.deployments) == 530 and not live.missing_deployments
    assert live.listed_deployments == 530
    assert live.deployments["dep-00042"].trainer_job_id == "job-00042-000000"
    assert live.deployments["dep-00042"].is_ready


def test_listing_is_remembered_in_state_and_its_file(five_hundred, tmp_path):
    config, store, state = five_hundred
    live, _ = _refresh(store, config, state)
    remembered = with_listing(state, live)
    assert (remembered.listed_jobs, remembered.listed_deployments) == (500, 530)
    back = decode_state(encode_state(remembered), tmp_path / "s.json")
    assert back.listed_deployments == 530
    assert b"listed_deployments" not in encode_state(state)  # written only when known


def test_a_small_config_in_a_big_account_gets_by_id(five_hundred):
    config, store, state = five_hundred
    declared = {d: config.deployments[d] for d in ("dep-00001", "dep-00002")}
    small = State(
        control_plane=state.control_plane,
        resources={Kind.DEPLOYMENT: {"dep-00001": state.deployments["dep-00001"]}},
        listed_deployments=530,
    )
    counting = Counting(make_app(store, api_key=KEY))
    with ControlPlaneClient(URL, KEY, account_id="local", transport=httpx.WSGITransport(app=counting)) as client:
        reading = read_deployments(client, declared, small)
    # One tracked, one declared but untracked: one GET each (the config key is the ID), no LIST.
    assert counting.kinds == Counter({"GET deployment": 2}), counting.kinds
    assert set(reading.found) == {"dep-00001", "dep-00002"}
    assert not reading.missing and reading.listed == 530  # a GET round learns no account size


def test_a_tracked_deployment_a_full_list_does_not_show_is_missing_without_a_get(tmp_path):
    config, store, state = world(tmp_path, 3, shaped=False)
    store.deployments.delete("dep-00001")  # settle 0: DELETED at once, which lists hide
    live, counting = _refresh(store, config, state)
    assert counting.kinds["GET deployment"] == 0 and counting.kinds["GET deployment list"] == 1
    assert live.missing_deployments == {"dep-00001"}
    assert set(live.deployments) == {"dep-00000", "dep-00002"}


def test_gets_tell_deleted_from_gone_and_ignore_undeclared_404s(tmp_path):
    config, store, state = world(tmp_path, 3, shaped=False)
    store.deployments.delete("dep-00001")  # a tombstone: GET still answers, DELETED
    state = State(control_plane=state.control_plane, resources=state.resources, listed_deployments=10_000)
    tracked = {**state.deployments, "dep-gone": state.deployments["dep-00000"]}
    state = state.with_record(Address(Kind.DEPLOYMENT, "dep-gone"), tracked["dep-gone"])
    declared = {**config.deployments, "dep-new": config.deployments["dep-00000"]}
    counting = Counting(make_app(store, api_key=KEY))
    with ControlPlaneClient(URL, KEY, account_id="local", transport=httpx.WSGITransport(app=counting)) as client:
        reading = read_deployments(client, declared, state)
    assert counting.kinds == Counter({"GET deployment": 5}), counting.kinds
    assert reading.found["dep-00001"].state is DeploymentState.DELETED
    assert reading.missing == {"dep-gone"}  # tracked and 404; the untracked dep-new's 404 is no news


def test_no_deployment_declared_or_tracked_costs_nothing(tmp_path):
    config, store, state = world(tmp_path, 2)
    jobs_only = State(control_plane=state.control_plane, resources={Kind.JOB: state.jobs})
    counting = Counting(make_app(store, api_key=KEY))
    with ControlPlaneClient(URL, KEY, account_id="local", transport=httpx.WSGITransport(app=counting)) as client:
        live = refresh(client, config.jobs, jobs_only, health_check=False)
    assert not any("deployment" in kind for kind in counting.kinds), counting.kinds
    assert live.deployments == {} and live.listed_deployments is None


def test_a_trainer_known_only_from_state_has_its_shape_resolved(tmp_path):
    config, store, state = world(tmp_path, 1)
    live, counting = _refresh(store, _without_jobs(config), state)
    shape = config.jobs["job-00000"].training_shape  # keyed as the job kind looks it up
    assert shape in live.shapes and live.shapes[shape].deployment_shape_version
    assert counting.kinds["GET shape"] == 1


def test_an_unknown_trainer_shape_is_a_plan_error_naming_the_deployment(tmp_path):
    config, store, state = world(tmp_path, 1)
    record = state.jobs["job-00000"]
    state = state.with_job("job-00000", replace(record, spec={**record.spec, "training_shape": "ts-nope"}))
    with pytest.raises(PlanError) as caught:
        _refresh(store, _without_jobs(config), state)
    assert 'deployment "dep-00000" (its trainer "job-00000")' in caught.value.detail


def _without_jobs(config: Config) -> Config:
    """The config with its trainers gone (their records stay in state)."""
    return replace(config, jobs={})


def test_no_refresh_reads_deployments_from_state(tmp_path):
    config, store, state = world(tmp_path, 2, shaped=False)
    state = State(control_plane=state.control_plane, resources=state.resources, listed_deployments=7)
    live = offline_world(state, "local")
    assert not live.refreshed and live.listed_deployments == 7
    seen = live.deployments["dep-00001"]
    record = state.deployments["dep-00001"]
    assert seen.state is DeploymentState.READY and seen.name == record.deployment_name
    assert seen.hot_load_trainer_job == record.hot_load_trainer_job and seen.trainer_job_id == "job-00001-000000"
    assert seen.hot_load_bucket_url == record.hot_load_bucket_url != ""
    assert seen.deployment_shape == record.deployment_shape_version
    assert seen.base_model == "accounts/fireworks/models/qwen3-8b"


def test_a_whole_refresh_of_a_small_config_in_a_big_account_costs_a_few_gets(five_hundred):
    config, store, state = five_hundred
    names = ("job-00003", "job-00004")
    small_config = replace(
        config,
        jobs={n: config.jobs[n] for n in names},
        deployments={d: config.deployments[d] for d in ("dep-00003", "dep-00004")},
    )
    small = State(
        control_plane=state.control_plane,
        resources={
            Kind.JOB: {n: state.jobs[n] for n in names},
            Kind.DEPLOYMENT: {d: state.deployments[d] for d in ("dep-00003", "dep-00004")},
        },
        listed_jobs=530,
        listed_deployments=530,
    )
    live, counting = _refresh(store, small_config, small)
    assert counting.kinds == Counter({"GET job": 2, "GET deployment": 2, "GET shape": 1}), counting.kinds
    assert set(live.deployments) == {"dep-00003", "dep-00004"} and live.listed_deployments == 530
