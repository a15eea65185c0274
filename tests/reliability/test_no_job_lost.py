"""No GPU job lost, duplicated or misattributed (commits 418bf4c, 79abfeb, fa26f33).

Every scenario runs the CLI against the emulator served on loopback (behind a
RequestLog that records every request), as real subprocesses where a SIGKILL is
needed, and then checks the invariants (helpers.check_invariants):

(a) at most one live, non-tombstoned, not-DELETING job per display name;
(b) every live job rlorinfra made (IDs seen in state over the run, or POSTed)
    is tracked in state as a record's ``job_id`` or in its ``deposed_job_ids``;
(c) ``plan --detailed-exitcode`` is 0 after the recovery apply.
"""

from __future__ import annotations

import http.server
import json
import random
import signal
import socket
import threading
import time

import pytest

from tests.conftest import run_cli
from tests.e2e.conftest import API_KEY, KEY_ENV, jobs_toml
from tests.reliability.helpers import (
    StateWatcher,
    check_invariants,
    job_id_of,
    popen_rlorinfra,
    record_figures,
    run_rlorinfra,
    serve_logged,
    subprocess_env,
)

CBD = "create_before_destroy = true"
SHORT_BUDGET = 'retry_budget = "2s"'


@pytest.fixture
def logged(tmp_path):
    world, log = serve_logged(tmp_path, provision_seconds=0.2)
    yield world, log
    world.server.stop()


def cbd_config(world, lr: str, *names: str, header: str = "") -> None:
    names = names or ("alpha",)
    world.write_config(jobs_toml(*names, extra={n: f"{CBD}\nlearning_rate = {lr}" for n in names}), extra=header)


def apply_ok(world, *extra: str) -> None:
    result = world.cli("apply", "--auto-approve", *extra)
    assert result.exit_code == 0, result.output


def record(world, name: str = "alpha") -> dict:
    return world.state()["resources"]["job"][name]


def live_states(world) -> dict[str, str]:
    return {job_id_of(j): j["state"] for j in world.live_jobs()}


def leave_deposed(world, name: str = "alpha") -> tuple[str, str]:
    """A create_before_destroy replace whose new job does not get ready in time: the old one stays deposed."""
    cbd_config(world, "1e-5", name)
    apply_ok(world)
    old = record(world, name)["job_id"]
    world.store.provision_seconds = 3.0
    cbd_config(world, "2e-5", name)
    timed_out = world.cli("apply", "--auto-approve", "--timeout", "1")
    assert timed_out.exit_code == 1, timed_out.output
    rec = record(world, name)
    assert rec["deposed_job_ids"] == [old], rec
    return old, rec["job_id"]


def gone(world, job_id: str) -> bool:
    return live_states(world).get(job_id, "JOB_STATE_DELETING") == "JOB_STATE_DELETING"


# --- 1. the reported bug: a kill while a second replace deposes one more job --------------


def test_kill_when_deposed_ids_change_then_recovery_deletes_every_deposed_job(logged):
    world, log = logged
    first, second = leave_deposed(world)
    watcher = StateWatcher(world.state_path)
    try:
        cbd_config(world, "3e-5")
        proc = popen_rlorinfra("apply", "-f", str(world.config), "--auto-approve", "--parallelism", "1")
        at_kill: list = []
        fired = watcher.kill_when(
            proc,
            lambda doc: (
                doc["resources"]["job"]["alpha"].get("deposed_job_ids") != [first]
                and not at_kill.append(doc["resources"]["job"]["alpha"])
            ),
        )
        proc.communicate(timeout=60)
        assert fired.is_set() and proc.returncode == -signal.SIGKILL, "the apply was not killed at its moment"
        # The moment of the reported bug: the second replace's record; both old jobs still tracked.
        tracked = {at_kill[0]["job_id"], *at_kill[0].get("deposed_job_ids", [])}
        assert second in tracked and (first in tracked or gone(world, first)), at_kill[0]
        world.store.provision_seconds = 0.5
        apply_ok(world)
    finally:
        seen = watcher.stop()
    rec = record(world)
    assert rec.get("deposed_job_ids", []) == [], rec
    assert gone(world, first) and gone(world, second), live_states(world)
    check_invariants(world, seen | log.created_ids())


# --- 2. deposed jobs survive every way out ---------------------------------------------------


def test_destroy_deletes_the_deposed_job_too(logged):
    world, log = logged
    first, second = leave_deposed(world)
    code, out, err = run_rlorinfra("destroy", "-f", str(world.config), "--auto-approve")
    assert code == 0, out + err
    assert gone(world, first) and gone(world, second), live_states(world)
    assert world.state()["resources"]["job"] == {}
    check_invariants(world, {first, second} | log.created_ids(), settled=False)


def test_removing_the_block_deletes_the_deposed_job_too(logged):
    world, log = logged
    first, second = leave_deposed(world)
    world.store.provision_seconds = 0.2
    world.write_config("")
    apply_ok(world)
    assert gone(world, first) and gone(world, second), live_states(world)
    assert world.state()["resources"]["job"] == {}
    check_invariants(world, {first, second} | log.created_ids())


def test_a_second_replace_before_the_first_finished_keeps_every_old_job_tracked(logged):
    world, log = logged
    watcher = StateWatcher(world.state_path)
    try:
        first, second = leave_deposed(world)
        # The delete of the first deposed job fails too: both old jobs must stay tracked.
        log.hooks.append(
            lambda m, p, q, when: (
                ("503 Service Unavailable", []) if when == "before" and m == "DELETE" and p.endswith(first) else None
            )
        )
        cbd_config(world, "3e-5", header=SHORT_BUDGET)
        again = world.cli("apply", "--auto-approve", "--timeout", "1")
        assert again.exit_code == 1, again.output
        rec = record(world)
        assert {first, second} <= set(rec["deposed_job_ids"]), rec
        watcher.observe()
        check_invariants(world, watcher.seen, settled=False)
        log.hooks.clear()
        world.store.provision_seconds = 0.2
        apply_ok(world)
    finally:
        seen = watcher.stop()
    assert record(world).get("deposed_job_ids", []) == []
    assert gone(world, first) and gone(world, second), live_states(world)
    check_invariants(world, seen | log.created_ids())


def test_state_rm_is_refused_while_deposed_jobs_remain(logged):
    world, _ = logged
    first, _second = leave_deposed(world)
    refused = run_cli(
        ["--no-color", "state", "rm", "-f", str(world.config), "alpha"], env={KEY_ENV: API_KEY, "NO_COLOR": "1"}
    )
    assert refused.exit_code == 1, refused.output
    assert first in refused.output, refused.output
    assert record(world)["deposed_job_ids"] == [first]


def test_a_delete_refused_with_503s_keeps_the_deposed_job_until_a_later_apply_deletes_it(logged):
    world, log = logged
    first, second = leave_deposed(world)
    world.store.provision_seconds = 0.2
    refusals = []

    def refuse(method, path, query, when):
        if when == "before" and method == "DELETE" and path.endswith("/" + first):
            refusals.append(path)
            return "503 Service Unavailable", [("Retry-After", "0")]
        return None

    log.hooks.append(refuse)
    cbd_config(world, "2e-5", header=SHORT_BUDGET)  # the same spec: only the deposed delete is left
    failed = world.cli("apply", "--auto-approve")
    assert failed.exit_code == 1 and refusals, failed.output
    assert "503" in failed.output, failed.output
    assert first in record(world)["deposed_job_ids"]
    assert live_states(world)[first] == "JOB_STATE_RUNNING"
    check_invariants(world, {first, second} | log.created_ids(), settled=False)
    log.hooks.clear()
    apply_ok(world)
    assert gone(world, first) and record(world).get("deposed_job_ids", []) == []
    check_invariants(world, {first, second} | log.created_ids())


def test_dropped_delete_answers_of_a_deposed_job_are_retried_and_converge(logged):
    world, log = logged
    first, second = leave_deposed(world)
    world.store.provision_seconds = 0.2
    world.store.arm_drop("delete", count=3)
    apply_ok(world)
    assert world.store.armed_drops().get("delete", 0) == 0
    assert gone(world, first) and record(world).get("deposed_job_ids", []) == []
    check_invariants(world, {first, second} | log.created_ids())


@pytest.mark.parametrize("when", ["before", "after"], ids=["delete-sent", "delete-answered"])
def test_sigkill_during_a_deposed_delete(logged, when):
    world, log = logged
    first, second = leave_deposed(world)
    world.store.provision_seconds = 0.2
    box: dict = {}

    def kill(method, path, query, moment):
        if moment == when and method == "DELETE" and path.endswith("/" + first) and "proc" in box:
            box["proc"].kill()
            box["killed"] = True

    log.hooks.append(kill)
    watcher = StateWatcher(world.state_path)
    try:
        box["proc"] = popen_rlorinfra("apply", "-f", str(world.config), "--auto-approve")
        box["proc"].communicate(timeout=60)
        assert box.get("killed") and box["proc"].returncode == -signal.SIGKILL
        log.hooks.clear()
        apply_ok(world)
    finally:
        seen = watcher.stop()
    assert gone(world, first) and record(world).get("deposed_job_ids", []) == []
    check_invariants(world, seen | log.created_ids())


# --- 3. a 409 never adopts the wrong job ---------------------------------------------------

INTRUDER = {
    "displayName": "intruder",
    "serviceMode": True,
    "trainingConfig": {"baseModel": "accounts/fireworks/models/qwen3-8b", "learningRate": 1e-5},
}
SHAPE = "accounts/fireworks/trainingShapes/ts-qwen3-8b-policy"


def test_a_creating_record_whose_id_another_job_holds_is_not_adopted(logged):
    """A killed apply left alpha "creating" under an ID that, by now, another job holds."""
    world, log = logged
    world.write_config(jobs_toml("beta"))
    apply_ok(world)
    doc = world.state()
    taken = "alpha-0a1b2c"
    beta = doc["resources"]["job"]["beta"]
    doc["resources"]["job"]["alpha"] = {
        **beta,
        "job_id": taken,
        "phase": "creating",
        "observed_state": None,
        "job_name": beta["job_name"].replace(beta["job_id"], taken),
        "endpoint": beta["endpoint"].replace(beta["job_id"], taken),
    }
    world.state_path.write_text(json.dumps(doc))  # as an apply killed before its POST leaves it
    world.store.create_job(INTRUDER, {"rlorTrainerJobId": taken, "trainingShape": SHAPE})
    world.store.get_job(taken)  # exists before the plan
    world.write_config(jobs_toml("alpha", "beta"))
    plan = world.cli("plan")
    assert "is not ours" in plan.stdout and "creating under a new ID" in plan.stdout, plan.output
    apply_ok(world)  # the plan already knows: a new ID, and the other job is left alone
    assert world.state()["resources"]["job"]["alpha"]["job_id"] != taken
    after = world.store.get_job(taken)
    assert after["displayName"] == "intruder" and after["state"] not in ("JOB_STATE_DELETING", "JOB_STATE_ARCHIVED")
    assert world.store.get_job(taken)["displayName"] == "intruder"
    check_invariants(world, log.created_ids() - {taken}, foreign={taken})


def test_a_409_from_a_job_that_took_the_id_between_plan_and_post_is_not_adopted(logged):
    world, log = logged
    intruders: list[str] = []

    def race(method, path, query, when):  # another client takes the ID just before our POST lands
        from urllib.parse import parse_qs

        if when == "before" and method == "POST" and path == JOBS and not intruders:
            [taken] = parse_qs(query)["rlorTrainerJobId"]
            world.store.create_job(INTRUDER, {"rlorTrainerJobId": taken, "trainingShape": SHAPE})
            intruders.append(taken)

    log.hooks.append(race)
    world.write_config(jobs_toml("alpha"))
    refused = world.cli("apply", "--auto-approve")
    assert refused.exit_code == 1, refused.output
    assert "already belongs to another job" in refused.output, refused.output
    [taken] = intruders
    assert world.state()["resources"]["job"].get("alpha", {}).get("job_id") != taken
    assert world.store.get_job(taken)["displayName"] == "intruder"
    log.hooks.clear()
    apply_ok(world)
    assert world.state()["resources"]["job"]["alpha"]["job_id"] != taken
    assert world.store.get_job(taken)["state"] not in ("JOB_STATE_DELETING", "JOB_STATE_ARCHIVED")
    check_invariants(world, log.created_ids() - {taken}, foreign={taken})


# --- 4. non-ASCII names ------------------------------------------------------------------------


NON_ASCII = """
[jobs."训练"]
base_model = "accounts/fireworks/models/qwen3-8b"
training_shape = "ts-qwen3-8b-policy"

[jobs."🚀"]
base_model = "accounts/fireworks/models/qwen3-8b"
training_shape = "ts-qwen3-8b-policy"
"""


def test_two_non_ascii_names_apply_into_two_jobs_each_under_its_own_name(logged):
    world, log = logged
    world.write_config(NON_ASCII)
    apply_ok(world)
    jobs = world.state()["resources"]["job"]
    assert set(jobs) == {"训练", "🚀"}
    assert jobs["训练"]["job_id"] != jobs["🚀"]["job_id"]
    by_id = {job_id_of(j): j["displayName"] for j in world.live_jobs()}
    assert by_id == {jobs["训练"]["job_id"]: "训练", jobs["🚀"]["job_id"]: "🚀"}
    check_invariants(world, log.created_ids())


def test_new_job_id_slugs_differ_for_non_ascii_names_and_never_reuse_a_taken_id():
    from rlorinfra.apply import new_job_id

    assert new_job_id("训练", random.Random(1)) != new_job_id("🚀", random.Random(1))
    for name in ("训练", "🚀", "alpha"):
        first = new_job_id(name, random.Random(1))
        for seed in range(50):
            assert new_job_id(name, random.Random(1), taken={first}) != first
            assert new_job_id(name, random.Random(seed), taken={first}) != first


# --- 5. only 2xx is success: redirects are errors, never followed ----------------------------


class Trap:
    """An http.server on loopback that records every request (the host a redirect points to)."""

    def __init__(self) -> None:
        seen = self.seen = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def _any(self):
                seen.append((self.command, self.path, dict(self.headers)))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            do_GET = do_POST = do_DELETE = do_PATCH = _any

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://localhost:{self.server.server_address[1]}"  # another host name
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _redirect(log, trap, status: str, match):
    def hook(method, path, query, when):
        if when == "before" and match(method, path, query):
            return status, [("Location", trap.url + path)]
        return None

    log.hooks.append(hook)


JOBS = "/v1/accounts/local/rlorTrainerJobs"


@pytest.mark.parametrize(
    "op,status",
    [
        ("list", "302 Found"),
        ("get", "307 Temporary Redirect"),
        ("delete", "302 Found"),
        ("create", "307 Temporary Redirect"),
        ("resume", "302 Found"),
    ],
)
def test_a_redirect_is_an_error_and_the_key_never_goes_to_its_host(logged, op, status):
    world, log = logged
    trap = Trap()
    try:
        world.write_config(jobs_toml("alpha"))
        if op in ("get", "delete", "resume"):
            apply_ok(world)
        job_id = record(world)["job_id"] if op in ("get", "delete", "resume") else None
        live_before = live_states(world)
        matches = {
            "list": lambda m, p, q: m == "GET" and p == JOBS,
            "get": lambda m, p, q: m == "GET" and p.startswith(JOBS + "/"),
            "delete": lambda m, p, q: m == "DELETE",
            "create": lambda m, p, q: m == "POST" and p == JOBS,
            "resume": lambda m, p, q: m == "POST" and p.endswith(":resume"),
        }
        _redirect(log, trap, status, matches[op])
        if op == "resume":
            world.store.preempt(job_id)
        if op == "get":  # deleted outside rlorinfra: lists hide the tombstone, so refresh GETs it
            world.store.delete_job(job_id)
            time.sleep(0.4)
            live_before = {}
        if op == "delete":
            world.write_config("")
        code = status.split()[0]
        if op in ("list", "get"):
            plan = world.cli("plan", "--json")
            assert plan.exit_code == 1, plan.output
            assert code in plan.stderr, plan.output
            assert '"action": "create"' not in plan.stdout  # an unreadable list is never an empty one
        applied = world.cli("apply", "--auto-approve")
        assert applied.exit_code == 1, applied.output
        assert code in applied.output, applied.output
        assert API_KEY not in applied.output
        assert trap.seen == [], f"a request reached the redirect's host: {trap.seen}"
        if op == "create":
            assert live_states(world) == {}
        elif op != "resume":
            assert live_states(world) == live_before  # nothing deleted, nothing created
        log.hooks.clear()
        apply_ok(world)
        check_invariants(world, log.created_ids())
    finally:
        trap.stop()


# --- 6. lost responses ---------------------------------------------------------------------


@pytest.mark.parametrize("operation", ["resume", "cancel", "create", "delete"])
def test_one_apply_converges_after_a_dropped_answer(logged, operation):
    world, log = logged
    world.write_config(jobs_toml("alpha"))
    if operation != "create":
        apply_ok(world)
    if operation == "resume":
        world.store.preempt(record(world)["job_id"])
    elif operation == "cancel":
        world.write_config(jobs_toml("alpha", extra={"alpha": 'desired_state = "stopped"'}))
    elif operation == "delete":
        world.write_config("")
    world.store.arm_drop(operation)
    watcher = StateWatcher(world.state_path)
    try:
        code, out, err = run_rlorinfra("apply", "-f", str(world.config), "--auto-approve")
    finally:
        seen = watcher.stop()
    assert code == 0, out + err
    assert world.store.armed_drops().get(operation, 0) == 0  # the server acted and its answer was lost
    check_invariants(world, seen | log.created_ids())
    active = [s for s in live_states(world).values() if s != "JOB_STATE_DELETING"]
    assert len(active) == (0 if operation == "delete" else 1), active


class LossyProxy:
    """A loopback TCP proxy in front of the emulator: the first request whose request line
    starts with ``method`` and contains ``marker`` (default: ``POST ...:resume``) is
    forwarded, answered by the emulator, and then the client's connection is closed
    without that answer."""

    def __init__(self, upstream_port: int, method: bytes = b"POST", marker: bytes = b":resume") -> None:
        self.upstream_port, self.method, self.marker = upstream_port, method, marker
        self.dropped = 0
        self._lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        doomed = threading.Event()

        def down() -> None:  # emulator -> client
            try:
                while data := upstream.recv(65536):
                    if doomed.is_set():  # the :resume was acted on; its answer is lost
                        client.shutdown(socket.SHUT_RDWR)
                        client.close()
                        return
                    client.sendall(data)
            except OSError:
                pass
            finally:
                for s in (client, upstream):
                    try:
                        s.close()
                    except OSError:
                        pass

        threading.Thread(target=down, daemon=True).start()
        try:
            while data := client.recv(65536):
                if self.marker in data.split(b"\r\n", 1)[0] and data.startswith(self.method + b" "):
                    with self._lock:
                        if self.dropped == 0:
                            self.dropped = 1
                            doomed.set()
                upstream.sendall(data)
        except OSError:
            pass

    def stop(self) -> None:
        self.listener.close()


DROPPED_CONNECTIONS = {
    "resume": (b"POST", b":resume"),
    "create": (b"POST", b"rlorTrainerJobId="),
    "delete": (b"DELETE", b"/rlorTrainerJobs/"),
}


def _behind_lossy_proxy(world, operation: str) -> tuple[LossyProxy, str | None]:
    """A world whose next ``operation`` loses its answer with its connection; returns (proxy, job ID)."""
    proxy = LossyProxy(world.server.port, *DROPPED_CONNECTIONS[operation])
    world.write_config(jobs_toml("alpha"))
    job_id = None
    if operation != "create":
        apply_ok(world)
        job_id = record(world)["job_id"]
    world.url = f"http://127.0.0.1:{proxy.port}"
    world.write_config("" if operation == "delete" else jobs_toml("alpha"))
    if operation == "resume":
        world.store.preempt(job_id)
    return proxy, job_id


@pytest.mark.parametrize("operation", ["resume", "create", "delete"])
def test_an_answer_lost_with_its_connection_converges_within_two_applies_without_a_duplicate(logged, operation):
    world, log = logged
    proxy, job_id = _behind_lossy_proxy(world, operation)
    try:
        applies = []
        for _ in range(2):
            code, out, err = run_rlorinfra("apply", "-f", str(world.config), "--auto-approve")
            applies.append(code)
            if code == 0:
                break
        assert proxy.dropped == 1, "the answer was never dropped"
        assert applies[-1] == 0, f"no convergence in two applies: {applies}\n{out}{err}"
        record_figures(f"lossy_proxy_{operation}", {"applies": len(applies), "exits": applies})
        active = {i: s for i, s in live_states(world).items() if s != "JOB_STATE_DELETING"}
        if operation == "resume":
            assert record(world)["job_id"] == job_id  # resumed in place, not replaced
            assert active == {job_id: "JOB_STATE_RUNNING"}
        else:
            assert len(active) == (1 if operation == "create" else 0), active
        check_invariants(world, log.created_ids())
    finally:
        proxy.stop()


@pytest.mark.parametrize("operation", ["create", "delete"])
def test_an_idempotent_call_whose_connection_drops_after_the_server_acted_is_retried_in_the_same_apply(
    logged, operation
):
    """Create and DELETE are idempotent (docs/reliability.md, Lost answers): a lost answer is retried,
    so one apply converges, as with a dropped 503 answer."""
    world, log = logged
    proxy, _ = _behind_lossy_proxy(world, operation)
    try:
        code, out, err = run_rlorinfra("apply", "-f", str(world.config), "--auto-approve")
        assert proxy.dropped == 1
        assert code == 0, out + err
        check_invariants(world, log.created_ids())
    finally:
        proxy.stop()


# --- 7. the API key is never printed ------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["\n", " ", "\x07"], ids=["newline", "space", "control-char"])
def test_a_malformed_key_is_refused_and_never_printed(logged, suffix):
    world, _ = logged
    world.write_config(jobs_toml("alpha"))
    env = subprocess_env(**{KEY_ENV: API_KEY + suffix})
    for args in (
        ["plan"],
        ["apply", "--auto-approve"],
        ["destroy", "--auto-approve"],
        ["import", "alpha", "alpha-123456"],
    ):
        code, out, err = run_rlorinfra(args[0], "-f", str(world.config), *args[1:], env=env)
        assert code == 1, (args, out, err)
        assert API_KEY not in out + err and "secret-key" not in out + err, (args, out, err)
        assert KEY_ENV in err
    assert world.live_jobs() == []


def test_an_evil_localhost_url_over_plain_http_is_refused(logged):
    world, _ = logged
    trap = Trap()
    try:
        world.url = f"http://evil.localhost:{trap.server.server_address[1]}"
        world.write_config(jobs_toml("alpha"))
        code, out, err = run_rlorinfra("plan", "-f", str(world.config))
        assert code == 1, out + err
        assert "plain HTTP" in err, err
        assert API_KEY not in out + err
        time.sleep(0.1)
        assert trap.seen == []
    finally:
        trap.stop()
