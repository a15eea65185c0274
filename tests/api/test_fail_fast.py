"""Retries that announce themselves, errors that come at once, and a key that stays secret.

Every test drives the client through ``httpx.MockTransport`` with an injected
``sleep`` and ``clock`` (a fake timeline), so nothing here waits for real.
"""

from __future__ import annotations

import random
import ssl
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from rlorinfra.api.client import ControlPlaneClient, RetryPolicy, check_api_key, format_budget
from rlorinfra.config.load import load_config_text
from rlorinfra.errors import ApiError, AuthError, ConfigError, NotFoundError
from rlorinfra.model.control_plane import ControlPlaneSettings
from rlorinfra.operations.workspace import open_client

KEY = "Zq9xW7vK3mP2rT8yLb4N"
JOB = {"name": "accounts/acme/rlorTrainerJobs/j1", "displayName": "n", "state": "JOB_STATE_RUNNING",
       "trainingConfig": {"baseModel": "m"}}  # fmt: skip


class Timeline:
    """A fake clock that only moves when the client sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def refused(request: httpx.Request) -> httpx.Response:
    """What httpx raises when nothing listens: ConnectError from ConnectionRefusedError."""
    try:
        raise ConnectionRefusedError(111, "Connection refused")
    except ConnectionRefusedError as exc:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request) from exc


def tls_mismatch(request: httpx.Request) -> httpx.Response:
    """What httpx raises for https:// against a plain-http server."""
    try:
        raise ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)")
    except ssl.SSLError as exc:
        raise httpx.ConnectError(str(exc), request=request) from exc


def make(handler, url="https://api.example.test", *, budget=120.0, timeline=None, **kw):
    """A client on ``handler`` with a fake timeline; returns (client, timeline, lines, notes)."""
    timeline = timeline or Timeline()
    lines: list[str] = []
    notes: list[str] = []
    client = ControlPlaneClient(url, KEY, account_id="acme", transport=httpx.MockTransport(handler),
                                retry=RetryPolicy(budget_s=budget), sleep=timeline.sleep, clock=timeline.clock,
                                rng=random.Random(1), trace=lines.append, notify=notes.append, **kw)  # fmt: skip
    return client, timeline, lines, notes


def answers(*statuses, headers=None):
    """A handler answering with ``statuses`` in order, then 200 with a job forever."""
    queue = list(statuses)
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if queue:
            return httpx.Response(queue.pop(0), json={"error": {"message": "busy"}}, headers=headers or {})
        return httpx.Response(200, json=JOB)

    handler.seen = seen  # type: ignore[attr-defined]
    return handler


# --------------------------------------------------------------------------- announcing retries


def test_first_retry_is_announced_once_per_client_not_per_request():
    client, timeline, lines, notes = make(answers(503, 503, 503))
    client.get_job("j1")
    assert notes == ["control plane answered HTTP 503, retrying for up to 2m..."]
    handler = answers(502)
    client2, _, _, notes2 = make(handler)
    client2.get_job("j1")
    client2._http._transport = httpx.MockTransport(answers(504, 429))  # the same client, more trouble later
    client2.get_job("j1")
    assert notes2 == ["control plane answered HTTP 502, retrying for up to 2m..."]


def test_connection_refused_is_announced_with_its_cause_and_budget():
    calls = []

    def handler(request):
        calls.append(request)
        if len(calls) < 3:
            return refused(request)
        return httpx.Response(200, json=JOB)

    client, _, _, notes = make(handler, budget=90)
    assert client.get_job("j1").job_id == "j1"
    assert notes == ["control plane unreachable (connection refused), retrying for up to 1m30s..."]


def test_timeouts_are_retried_and_described():
    calls = []

    def handler(request):
        calls.append(request)
        if len(calls) == 1:
            raise httpx.ReadTimeout("timed out", request=request)
        return httpx.Response(200, json=JOB)

    client, _, _, notes = make(handler)
    client.get_job("j1")
    assert notes == ["control plane unreachable (timed out), retrying for up to 2m..."]


def test_parallel_requests_still_announce_once():
    client, _, _, notes = make(answers(*[503] * 8))
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: client.get_job("j1"), range(8)))
    assert len(notes) == 1


def test_trace_gets_every_attempt_and_every_delay():
    calls = []

    def handler(request):
        calls.append(request)
        if len(calls) == 1:
            return refused(request)
        if len(calls) == 2:
            return httpx.Response(503, json={})
        return httpx.Response(200, json=JOB)

    client, timeline, lines, _ = make(handler)
    client.get_job("j1")
    attempts = [line for line in lines if line.startswith("GET ")]
    delays = [line for line in lines if line.startswith("retry ")]
    assert len(attempts) == 3 and "connection refused" in attempts[0] and "-> 503" in attempts[1]
    assert "-> 200" in attempts[2]
    assert len(delays) == 2 == len(timeline.sleeps)
    assert f"{timeline.sleeps[0]:.2f} s" in delays[0]


def test_no_notify_without_a_retry():
    client, _, _, notes = make(answers())
    client.get_job("j1")
    assert notes == []


def test_retry_after_is_honoured_and_a_longer_one_than_the_budget_gives_up():
    client, timeline, _, _ = make(answers(429, headers={"Retry-After": "7"}))
    client.get_job("j1")
    assert timeline.sleeps[0] >= 7
    client, timeline, _, _ = make(answers(429, headers={"Retry-After": "600"}), budget=60)
    with pytest.raises(ApiError) as info:
        client.get_job("j1")
    assert info.value.status_code == 429 and timeline.sleeps == []


def test_spent_budget_ends_with_the_last_error_and_never_passes_the_budget():
    client, timeline, _, _ = make(answers(*[503] * 100), budget=30)
    with pytest.raises(ApiError) as info:
        client.get_job("j1")
    assert info.value.status_code == 503
    assert 0 < sum(timeline.sleeps) <= 30


@pytest.mark.parametrize("status", [501, 505, 400, 404, 409, 422])
def test_statuses_outside_the_retry_list_fail_at_once(status):
    client, timeline, _, notes = make(answers(status))
    with pytest.raises(ApiError):
        client.create_job("j1", "n", {"base_model": "m"})
    assert timeline.sleeps == [] and notes == []


# --------------------------------------------------------------------------- failing fast


@pytest.mark.parametrize("url", ["http://127.0.0.1:9", "http://localhost:9", "http://[::1]:9", "http://127.0.0.2:9"])
def test_refused_loopback_gives_up_within_ten_seconds(url):
    client, timeline, lines, notes = make(refused, url, budget=120)
    with pytest.raises(ApiError) as info:
        client.get_job("j1")
    assert 0 < sum(timeline.sleeps) <= 10
    assert timeline.now <= 10
    assert notes == ["control plane unreachable (connection refused), retrying for up to 10s..."]
    assert "connection refused" in info.value.summary
    assert "control-plane serve" in info.value.detail
    assert any(line.startswith("giving up") for line in lines)


def test_refused_remote_host_uses_the_whole_budget():
    client, timeline, _, notes = make(refused, "https://api.example.test", budget=120)
    client._retry = RetryPolicy(budget_s=120, max_attempts=100)
    with pytest.raises(ApiError):
        client.get_job("j1")
    assert 10 < sum(timeline.sleeps) <= 120
    assert notes == ["control plane unreachable (connection refused), retrying for up to 2m..."]


def test_tls_error_is_not_retried_and_says_tls():
    calls = []

    def handler(request):
        calls.append(request)
        return tls_mismatch(request)

    client, timeline, lines, notes = make(handler, "https://127.0.0.1:8765")
    with pytest.raises(ApiError) as info:
        client.get_job("j1")
    assert len(calls) == 1 and timeline.sleeps == [] and notes == []
    assert "TLS" in info.value.summary and "http://" in info.value.detail
    assert len([line for line in lines if line.startswith("GET ")]) == 1


@pytest.mark.parametrize("exc", [httpx.ReadError, httpx.RemoteProtocolError, httpx.WriteError])
def test_a_lost_connection_is_retried_for_an_idempotent_call(exc):
    calls = []

    def handler(request):
        calls.append(request)
        if len(calls) == 1:
            raise exc("gone", request=request)
        return httpx.Response(200, json={"name": "accounts/a/rlorTrainerJobs/j1", "state": "JOB_STATE_RUNNING"})

    client, timeline, _, _ = make(handler)
    assert client.get_job("j1").state == "JOB_STATE_RUNNING"
    assert len(calls) == 2 and len(timeline.sleeps) == 1


@pytest.mark.parametrize("exc", [httpx.ReadError, httpx.RemoteProtocolError, httpx.WriteError])
def test_a_lost_connection_on_resume_is_an_unknown_outcome_not_a_retry(exc):
    from rlorinfra.errors import OutcomeUnknownError

    calls = []

    def handler(request):
        calls.append(request)
        raise exc("gone", request=request)

    client, timeline, _, _ = make(handler)
    with pytest.raises(OutcomeUnknownError):
        client.resume_job("j1")
    assert len(calls) == 1 and timeline.sleeps == []


@pytest.mark.parametrize("status", [401, 403])
def test_auth_errors_fail_at_once_and_401_names_the_configured_variable(status):
    client, timeline, _, notes = make(answers(status), key_source="RLOR_PROD_KEY")
    with pytest.raises(AuthError) as info:
        client.get_job("j1")
    assert timeline.sleeps == [] and notes == []
    if status == 401:
        assert "RLOR_PROD_KEY" in info.value.detail and "FIREWORKS_API_KEY" not in info.value.detail


# --------------------------------------------------------------------------- only 2xx, no redirects

VERBS = {
    "account": lambda c: c._resolve_account(),
    "get": lambda c: c.get_job("j1"),
    "list": lambda c: c.list_jobs(),
    "create": lambda c: c.create_job("j1", "n", {"base_model": "m"}),
    "delete": lambda c: c.delete_job("j1"),
    "resume": lambda c: c.resume_job("j1"),
    "cancel": lambda c: c.cancel_job("j1"),
    "shape": lambda c: c.resolve_shape("accounts/fireworks/trainingShapes/s"),
}


@pytest.mark.parametrize("status", [301, 302, 303, 304, 307, 308])
@pytest.mark.parametrize("verb", sorted(VERBS))
def test_every_3xx_on_every_verb_is_an_error_and_is_not_followed(verb, status):
    seen = []

    def handler(request):
        seen.append(request)
        return httpx.Response(status, headers={"Location": "https://evil.example/steal"})

    client, timeline, _, notes = make(handler)
    with pytest.raises(ApiError) as info:
        VERBS[verb](client)
    assert type(info.value) is ApiError and info.value.status_code == status
    assert f"HTTP {status}" in info.value.summary and "evil.example" in info.value.detail
    assert [r.url.host for r in seen] == ["api.example.test"]  # one request, never to the Location
    assert timeline.sleeps == [] and notes == []


def test_the_http_client_never_follows_redirects():
    client, *_ = make(answers())
    assert client._http.follow_redirects is False


def test_a_list_page_answered_with_a_redirect_raises_instead_of_ending_the_list():
    pages = [httpx.Response(200, json={"rlorTrainerJobs": [JOB], "nextPageToken": "t1"}),
             httpx.Response(302, headers={"Location": "/login"})]  # fmt: skip
    client, *_ = make(lambda request: pages.pop(0))
    with pytest.raises(ApiError) as info:
        client.list_jobs()
    assert info.value.status_code == 302


@pytest.mark.parametrize("body", [b"<html>login</html>", b"[]", b""])
def test_a_2xx_that_is_not_a_json_object_is_an_error_not_an_empty_page(body):
    client, *_ = make(lambda request: httpx.Response(200, content=body))
    with pytest.raises(ApiError) as info:
        client.list_jobs()
    assert "unreadable answer" in info.value.summary


def test_other_2xx_answers_are_success():
    client, *_ = make(lambda request: httpx.Response(204 if request.method == "DELETE" else 201, json=JOB))
    assert client.delete_job("j1") is True
    assert client.create_job("j1", "n", {"base_model": "m"}).job_id == "j1"


def test_health_counts_only_200_and_follows_no_redirect():
    seen = []

    def handler(request):
        seen.append(request)
        return httpx.Response(302 if len(seen) == 1 else 204, headers={"Location": "https://evil.example/"})

    client, *_ = make(handler)
    assert client.healthy("j1") is False
    assert client.healthy("j1") is False
    assert [r.url.host for r in seen] == ["api.example.test", "api.example.test"]


# --------------------------------------------------------------------------- the API key

BAD_KEYS = [KEY + "\n", KEY + "\r\n", KEY[:8] + " " + KEY[8:], KEY[:5] + "\t" + KEY[5:], KEY + "\x00",
            "\x7f" + KEY, KEY[:3] + "\u200b" + KEY[3:], KEY + "é", " " + KEY]  # fmt: skip


@pytest.mark.parametrize("bad", BAD_KEYS, ids=lambda k: repr(k[-3:]))
def test_a_key_with_whitespace_or_control_characters_is_rejected_without_echoing_it(bad):
    with pytest.raises(AuthError) as info:
        ControlPlaneClient("https://api.example.test", bad, key_source="RLOR_PROD_KEY")
    text = str(info.value)
    assert "RLOR_PROD_KEY" in info.value.summary
    for i in range(len(KEY) - 3):
        assert KEY[i : i + 4] not in text, "part of the key leaked into the error"


def test_a_trailing_newline_is_named_as_such():
    with pytest.raises(AuthError) as info:
        check_api_key(KEY + "\n", "MY_KEY")
    assert info.value.summary == "The API key in the environment variable MY_KEY ends with a newline"
    with pytest.raises(AuthError) as info:
        check_api_key(KEY + "\n")
    assert info.value.summary == "The API key ends with a newline"


def test_the_key_is_in_no_trace_notify_or_error_line_even_when_the_server_echoes_it():
    def handler(request):
        if request.url.path.endswith("/j2"):
            return httpx.Response(401, json={"error": {"message": f"bad key {KEY}", "status": "UNAUTHENTICATED"}})
        return httpx.Response(503, json={"error": {"message": f"key {KEY} throttled"}})

    client, _, lines, notes = make(handler, budget=5)
    errors = []
    for job_id in ("j1", "j2"):
        with pytest.raises(ApiError) as info:
            client.get_job(job_id)
        errors.append(str(info.value) + info.value.message)
    blob = "\n".join(lines + notes + errors)
    assert lines and notes and KEY not in blob
    assert "[redacted]" in blob


def test_a_valid_key_still_goes_in_the_headers():
    seen = []
    client, *_ = make(lambda r: seen.append(r) or httpx.Response(200, json=JOB))
    client.get_job("j1")
    assert seen[0].headers["X-Api-Key"] == KEY


def test_plain_http_to_dot_localhost_is_refused_but_127_0_0_2_is_fine():
    for url in ("http://evil.localhost", "http://x.localhost:8765"):
        with pytest.raises(ApiError) as info:
            ControlPlaneClient(url, KEY)
        assert "Refusing to send the API key over plain HTTP" in info.value.summary
    ControlPlaneClient("http://x.localhost:8765", KEY, allow_insecure=True).close()
    ControlPlaneClient("http://127.0.0.2:8765", KEY).close()


# --------------------------------------------------------------------------- configuration


def _settings(extra: str) -> ControlPlaneSettings:
    text = f'[control_plane]\nurl = "https://api.example.test"\n{extra}\n'
    return load_config_text(text, Path("/nonexistent/rlorinfra.toml"), {}).control_plane


@pytest.mark.parametrize("value,seconds", [('"2m"', 120), ('"90s"', 90), ('"1h"', 3600), ("45", 45),
                                           ('"1m30s"', 90)])  # fmt: skip
def test_retry_budget_is_read_from_the_config(value, seconds):
    assert _settings(f"retry_budget = {value}").retry_budget_s == seconds


def test_retry_budget_defaults_to_two_minutes():
    assert _settings("").retry_budget_s == 120.0


@pytest.mark.parametrize("value", ['"0s"', "0", "-5", '"2h"', "3601", "1.5", "inf", "nan", '"soon"', "true", '""'])
def test_bad_retry_budgets_are_refused(value):
    with pytest.raises(ConfigError) as info:
        _settings(f"retry_budget = {value}")
    assert any("control_plane.retry_budget" in p for p in info.value.problems)


def test_open_client_uses_the_budget_the_notify_and_the_key_variable(tmp_path):
    settings = ControlPlaneSettings(url="https://api.example.test", api_key_env="RLOR_PROD_KEY", retry_budget_s=42.0)
    notes: list[str] = []
    with open_client(settings, api_key=KEY, emulator_db=tmp_path / "cp.sqlite3", notify=notes.append) as client:
        assert client._retry.budget_s == 42.0 and client._notify == notes.append
    with pytest.raises(AuthError) as info:
        open_client(settings, api_key=KEY + "\n", emulator_db=tmp_path / "cp.sqlite3")
    assert "RLOR_PROD_KEY" in info.value.summary
    assert format_budget(42.0) == "42s" and format_budget(120) == "2m" and format_budget(0.5) == "0.5s"


def test_embedded_emulator_always_gets_its_own_key(tmp_path):
    # A real key in the environment must never be sent to the embedded emulator,
    # and one with a stray newline must not stop it either.
    for env_key in (KEY, KEY + "\n", None):
        with open_client(ControlPlaneSettings(), api_key=env_key, emulator_db=tmp_path / "cp.sqlite3") as client:
            assert client._http.headers["X-Api-Key"] == "local"
            assert client.account_id == "local"  # the emulator accepted the key
            assert client.get_job("nothing-here") is None


def test_workspace_forwards_notify(tmp_path):
    from rlorinfra.operations import Workspace

    text = '[control_plane]\nurl = "https://api.example.test"\napi_key_env = "RLOR_PROD_KEY"\nretry_budget = "30s"\n'
    config = load_config_text(text, tmp_path / "rlorinfra.toml", {})
    notes: list[str] = []
    ws = Workspace(config=config, api_key=KEY, notify=notes.append)
    try:
        client = ws.client()
        assert client._notify == notes.append and client._retry.budget_s == 30
        assert client._key_source == "RLOR_PROD_KEY"
    finally:
        ws.close()


def test_not_found_still_means_none_for_get():
    client, *_ = make(answers(404))
    assert client.get_job("j1") is None
    client, *_ = make(answers(404))
    with pytest.raises(NotFoundError):
        client.resume_job("j1")
