"""Security: the API key never leaks (files, output, errors, debug traces), files
are 0600, the key never travels over plain http to a non-loopback host, TLS
verification stays on, and the emulator binds loopback and compares keys safely.

No test here sends a byte to a non-loopback address: requests to such URLs are
answered in-process by the emulator through a patched httpx transport.
"""

from __future__ import annotations

import hmac
import inspect
import socket
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import run_cli
from tests.e2e.conftest import jobs_toml
from tests.reliability.helpers import finish, record_figures, spawn, subprocess_env

KEY = "sk-rlor-SECRET-7c1e94b2d05f4a8e9b3d"
KEY_ENV = "RLOR_SECURITY_KEY"
WRONG = "sk-rlor-WRONG-00000000000000000000"


def _leaks(text: str | bytes) -> bool:
    data = text if isinstance(text, bytes) else text.encode("utf-8", "replace")
    return any(form.encode() in data for form in (KEY, KEY[8:], KEY.replace("-", "%2D")))


@pytest.fixture
def secure_world(tmp_path):
    from rlorinfra.controlplane.app import make_app
    from rlorinfra.controlplane.server import serve_in_thread
    from rlorinfra.controlplane.store import Store

    store = Store(tmp_path / "cp.sqlite3", provision_seconds=0.2)
    server = serve_in_thread(make_app(store, api_key=KEY))
    ws = tmp_path / "ws"
    ws.mkdir()
    yield server, store, ws
    server.stop()


class Session:
    """Runs CLI commands in one workspace and keeps every stdout/stderr for the grep."""

    def __init__(self, ws: Path) -> None:
        self.ws = ws
        self.outputs: list[tuple[str, str]] = []

    def run(self, *args: str, key: str = KEY, expect: int | tuple = 0, debug: bool = False):
        split = 2 if args[0] == "state" else 1  # `state` subcommands take -f after the subcommand
        argv = (["--debug"] if debug else []) + [
            "--no-color",
            *args[:split],
            "-f",
            str(self.ws / "rlorinfra.toml"),
            *args[split:],
        ]
        result = run_cli(argv, env={KEY_ENV: key, "NO_COLOR": "1"}, cwd=self.ws)
        self.outputs.append((" ".join(args), result.output))
        codes = expect if isinstance(expect, tuple) else (expect,)
        assert result.exit_code in codes, f"{args}: {result.output}"
        return result


def test_a_full_session_never_leaks_the_key(secure_world):
    server, store, ws = secure_world
    s = Session(ws)
    s.run("init")
    (ws / "rlorinfra.toml").write_text(
        f'[control_plane]\nurl = "{server.url}"\napi_key_env = "{KEY_ENV}"\n'
        + textwrap.dedent(jobs_toml("sec-a", "sec-b"))
    )
    s.run("validate")
    s.run("plan", "--out", "release.plan")
    s.run("show", "release.plan", "--json")
    s.run("apply", "release.plan")
    s.run("plan", "--json")
    s.run("plan", "--detailed-exitcode")
    s.run("apply", "--json", "--auto-approve")
    s.run("output", "--json")
    s.run("show", "--json")
    s.run("state", "show", "sec-a", "--json")
    s.run("state", "list")
    store.create_job(
        {"displayName": "adopted", "trainingConfig": {"baseModel": "accounts/fireworks/models/qwen3-8b"}},
        {"rlorTrainerJobId": "adopted-0001"},
    )
    s.run("import", "adopted", "adopted-0001", "--generate-config")
    s.run("plan", "--detailed-exitcode", debug=True, expect=2)  # "adopted" is not declared: a deletion is planned
    s.run("apply", "--auto-approve", debug=True)
    s.run("plan", key=WRONG, expect=1)  # 401
    s.run("apply", "--auto-approve", key=WRONG, expect=1, debug=True)
    s.run("state", "rm", "sec-b")
    s.run("import", "sec-b", store_job_id(ws, store, "sec-b"))
    s.run("plan", "--out", "destroy-stale.plan")

    lock_info = capture_lock_info(ws)  # a live run's <state>.lock.info
    s.run("destroy", "--auto-approve")
    s.run("destroy", "--auto-approve", debug=True)

    files = [p for p in ws.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"rlorinfra.state.json", "rlorinfra.state.json.backup", "release.plan"} <= names
    leaked = [str(p) for p in files if _leaks(p.read_bytes())] + [cmd for cmd, out in s.outputs if _leaks(out)]
    assert not leaked and not _leaks(lock_info)
    assert any("[http]" in out for _, out in s.outputs), "--debug traced no request"
    assert any("401" in out or "rejected" in out for _, out in s.outputs)
    for path in (
        ws / "rlorinfra.state.json",
        ws / "rlorinfra.state.json.backup",
        ws / "release.plan",
        ws / "destroy-stale.plan",
    ):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    record_figures(
        "security_session",
        {
            "commands_run": len(s.outputs) + 1,
            "files_grepped": len(files) + 1,
            "outputs_grepped": len(s.outputs) + 1,
            "key_found": 0,
        },
    )


def store_job_id(ws: Path, store, name: str) -> str:
    """The live ID of display name ``name`` (read from the emulator, not from state)."""
    jobs, _ = store.list_jobs(page_size=200)
    return next(j["name"].rsplit("/", 1)[-1] for j in jobs if j["displayName"] == name)


def capture_lock_info(ws: Path) -> bytes:
    """Start an apply that pauses while holding the lock; return its lock info bytes (mode checked)."""
    release = ws.parent / "release-lock"
    cfg = ws / "rlorinfra.toml"
    cfg.write_text(cfg.read_text() + textwrap.dedent(jobs_toml("sec-c")))
    proc = spawn(
        ["apply", "-f", str(cfg), "--auto-approve"],
        mode="hold",
        n=1,
        env=subprocess_env(**{KEY_ENV: KEY, "RLOR_TEST_RELEASE": str(release)}),
    )
    info = ws / "rlorinfra.state.json.lock.info"
    deadline = time.monotonic() + 60
    while not info.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.005)
    data = info.read_bytes()
    assert stat.S_IMODE(info.stat().st_mode) == 0o600
    release.touch()
    code, out, err = finish(proc)
    assert code == 0 and not _leaks(out + err), out + err
    return data


# -- transport security --------------------------------------------------------------


class NoNetwork:
    """Fails the test on any attempt to resolve or connect; answers httpx requests in-process."""

    def __init__(self, monkeypatch, app=None) -> None:
        self.requests: list[httpx.Request] = []
        self.app = app

        def forbidden(*args, **kwargs):
            raise AssertionError(f"network access attempted: {args!r}")

        monkeypatch.setattr(socket, "getaddrinfo", forbidden)
        monkeypatch.setattr(socket, "create_connection", forbidden)
        monkeypatch.setattr(socket.socket, "connect", forbidden)
        # A bound method set on the class is called without the transport: just (request).
        monkeypatch.setattr(httpx.HTTPTransport, "handle_request", self._handle)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.app is None:
            raise AssertionError(f"request attempted: {request.method} {request.url}")
        return httpx.WSGITransport(app=self.app).handle_request(request)


def _config(tmp_path: Path, url: str, extra: str = "") -> Path:
    cfg = tmp_path / "rlorinfra.toml"
    cfg.write_text(
        f'[control_plane]\nurl = "{url}"\napi_key_env = "{KEY_ENV}"\n{extra}' + textwrap.dedent(jobs_toml("remote"))
    )
    return cfg


@pytest.mark.parametrize("url", ["http://fireworks.internal:1", "http://10.1.2.3:8080", "http://[2001:db8::1]:80"])
def test_plain_http_to_a_remote_host_is_refused_before_any_request(tmp_path, monkeypatch, url):
    net = NoNetwork(monkeypatch)
    cfg = _config(tmp_path, url)
    for command in (["plan"], ["apply", "--auto-approve"], ["import", "x", "x-1"], ["destroy", "--auto-approve"]):
        result = run_cli(["--no-color", command[0], "-f", str(cfg), *command[1:]], env={KEY_ENV: KEY})
        assert result.exit_code == 1, result.output
        assert "--insecure" in result.stderr and "Refusing to send the API key" in result.stderr
        assert not _leaks(result.output)
    assert net.requests == []
    assert not (tmp_path / "rlorinfra.state.json").exists()


@pytest.mark.parametrize("how", ["--insecure", "allow_insecure"])
def test_insecure_opt_in_sends_to_the_remote_host(tmp_path, monkeypatch, how):
    from rlorinfra.controlplane.app import make_app
    from rlorinfra.controlplane.store import Store

    net = NoNetwork(monkeypatch, app=make_app(Store(tmp_path / "cp.sqlite3", provision_seconds=0), api_key=KEY))
    cfg = _config(tmp_path, "http://fireworks.internal:1", "allow_insecure = true\n" if how != "--insecure" else "")
    flags = ["--insecure"] if how == "--insecure" else []
    result = run_cli(["--no-color", "plan", "-f", str(cfg), *flags], env={KEY_ENV: KEY})
    assert result.exit_code == 0, result.output
    assert net.requests and {r.url.host for r in net.requests} == {"fireworks.internal"}
    assert all(r.headers["X-Api-Key"] == KEY for r in net.requests)


def test_https_keeps_tls_verification_on(tmp_path, monkeypatch):
    from rlorinfra.controlplane.app import make_app
    from rlorinfra.controlplane.store import Store

    net = NoNetwork(monkeypatch, app=make_app(Store(tmp_path / "cp.sqlite3", provision_seconds=0), api_key=KEY))
    verify_seen = []
    original = httpx.Client.__init__

    def spy(self, *args, **kwargs):
        verify_seen.append(kwargs.get("verify", True))
        original(self, *args, **kwargs)

    monkeypatch.setattr(httpx.Client, "__init__", spy)
    cfg = _config(tmp_path, "https://api.fireworks.example")
    for flags in ([], ["--insecure"]):  # --insecure allows plain http; it never turns TLS checks off
        result = run_cli(["--no-color", "plan", "-f", str(cfg), *flags], env={KEY_ENV: KEY})
        assert result.exit_code == 0, result.output
    assert verify_seen and all(v is True for v in verify_seen)
    assert {r.url.scheme for r in net.requests} == {"https"}


# -- the emulator ------------------------------------------------------------------------


def test_the_emulator_binds_loopback_by_default(tmp_path):
    from rlorinfra.cli.controlplane_cmds import serve_cmd
    from rlorinfra.controlplane.app import make_app
    from rlorinfra.controlplane.server import make_server, serve_in_thread
    from rlorinfra.controlplane.store import Store

    host_option = next(p for p in serve_cmd.params if p.name == "host")
    assert host_option.default == "127.0.0.1"
    assert inspect.signature(serve_in_thread).parameters["host"].default == "127.0.0.1"
    assert inspect.signature(make_server).parameters["host"].default == "127.0.0.1"
    served = serve_in_thread(make_app(Store(tmp_path / "cp.sqlite3"), api_key=KEY))
    try:
        assert served.server.server_address[0] == "127.0.0.1"
        assert served.url.startswith("http://127.0.0.1:")
    finally:
        served.stop()


def test_control_plane_serve_binds_loopback_by_default(tmp_path):
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rlorinfra",
            "control-plane",
            "serve",
            "--port",
            "0",
            "--db",
            str(tmp_path / "cp.sqlite3"),
            "--api-key",
            KEY,
        ],
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = ""
        deadline = time.monotonic() + 60
        while "http://" not in line and time.monotonic() < deadline:
            line = proc.stdout.readline() or line
            if proc.poll() is not None:
                break
        assert "http://127.0.0.1:" in line, line + (proc.stderr.read() if proc.poll() is not None else "")
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    assert not _leaks(line + out + err)


def test_keys_are_compared_in_constant_time(tmp_path, monkeypatch):
    from rlorinfra.controlplane import app as app_module
    from rlorinfra.controlplane.app import make_app
    from rlorinfra.controlplane.store import Store

    calls = []
    original = hmac.compare_digest

    def spy(a, b):
        calls.append((type(a), type(b)))
        return original(a, b)

    monkeypatch.setattr(app_module.hmac, "compare_digest", spy)
    transport = httpx.WSGITransport(app=make_app(Store(tmp_path / "cp.sqlite3"), api_key=KEY))
    with httpx.Client(transport=transport, base_url="http://emulator") as http:
        assert http.get("/v1/accounts", headers={"X-Api-Key": WRONG}).status_code == 401
        assert http.get("/v1/accounts", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
        assert http.get("/v1/accounts", headers={"X-Api-Key": KEY[:-1]}).status_code == 401
    assert len(calls) == 3 and all(t == (bytes, bytes) for t in calls)
    assert "==" not in inspect.getsource(app_module.EmulatorApp._authenticate).split("compare_digest")[1][:40]


@pytest.fixture(scope="module")
def socket_emulator(tmp_path_factory):
    from rlorinfra.controlplane.app import make_app
    from rlorinfra.controlplane.server import serve_in_thread
    from rlorinfra.controlplane.store import Store

    store = Store(tmp_path_factory.mktemp("sockfuzz") / "cp.sqlite3", provision_seconds=0)
    served = serve_in_thread(make_app(store, api_key=KEY, max_body_bytes=256))
    with httpx.Client(base_url=served.url, timeout=30) as http:
        yield http
    served.stop()


FUZZ = {"requests": 0, "statuses": set()}
HEADER_TEXT = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40
)  # legal header values


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    method=st.sampled_from(["GET", "POST", "DELETE", "PUT"]),
    path=st.sampled_from(
        [
            "/v1/accounts",
            "/v1/accounts/local/rlorTrainerJobs",
            "/v1/accounts/local/rlorTrainerJobs/x1",
            "/v1/accounts/local/rlorTrainerJobs/x1:resume",
            "/_emulator/faults",
            "/training/v1/rlorTrainerJobs/local/x1/api/v1/healthz",
            "/nope",
        ]
    ),
    key=st.one_of(st.just(KEY), st.just(KEY + "x"), HEADER_TEXT, st.just(KEY.upper())),
    bearer=st.booleans(),
    body=st.one_of(st.binary(max_size=400), st.just(b"{}" * 200), st.just(b'{"trainingConfig": {}}')),
)
def test_socket_fuzz_never_gets_a_500_and_only_the_key_opens_the_door(socket_emulator, method, path, key, bearer, body):
    headers = {"Authorization": f"Bearer {key}"} if bearer else {"X-Api-Key": key}
    response = socket_emulator.request(method, path, headers=headers, content=body)
    assert response.status_code < 500, response.text
    if key != KEY:
        assert response.status_code == 401
    elif len(body) > 256:
        assert response.status_code == 413
    assert not _leaks(response.content)  # no error message ever echoes a key
    FUZZ["requests"] += 1
    FUZZ["statuses"].add(response.status_code)
    record_figures(
        "emulator_socket_fuzz", {"requests": FUZZ["requests"], "statuses": sorted(FUZZ["statuses"]), "responses_5xx": 0}
    )
