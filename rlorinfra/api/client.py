"""The one control-plane client (the only httpx user in rlorinfra).

It speaks the wire protocol of PROTOCOL.md to the real Fireworks API and to the
emulator alike; the transport is injectable (``httpx.WSGITransport`` runs the
embedded emulator in-process). Every verb retries connect errors, timeouts,
408, 429, 500, 502, 503 and 504 with exponential backoff and jitter, honouring
``Retry-After``, within a total time budget (DESIGN.md §5, PROTOCOL.md §6.3).
Everything else fails at once: TLS errors, 401/403, other 4xx/5xx, and any
3xx (redirects are never followed, so the key never goes to another host).
Only a 2xx answer is a success. Errors come back typed.

The API key is only ever placed in request headers; it is never logged, traced,
announced or included in an error message.
"""

from __future__ import annotations

import math
import random
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from rlorinfra.api.wire import (
    create_request,
    deployment_create_request,
    deployment_from_resource,
    deployment_update_request,
    hot_load_replicas,
    live_job,
    shape_version,
)
from rlorinfra.errors import AlreadyExistsError, ApiError, AuthError, NotFoundError, OutcomeUnknownError
from rlorinfra.model.deployments import HotLoadReplica, LiveDeployment, deployment_name, is_valid_deployment_id
from rlorinfra.model.durations import format_duration
from rlorinfra.model.jobs import LiveJob, ShapeVersion, is_valid_job_id, job_name, trainer_endpoint
from rlorinfra.model.retry import RETRY_STATUSES
from rlorinfra.model.urls import is_loopback

EMULATOR_INSTANCE_HEADER = "X-Rlorinfra-Emulator-Instance"
READ_TIMEOUT_S = 30.0
WRITE_TIMEOUT_S = 60.0
CONNECT_TIMEOUT_S = 10.0
HEALTH_TIMEOUT_S = 5.0
LIST_PAGE_SIZE = 200
DEFAULT_KEY_SOURCE = "the API key"


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, capped, within a total budget per call.

    ``refused_loopback_budget_s`` replaces ``budget_s`` when a loopback host
    refuses the connection: a local emulator that is down is not coming back
    within minutes, so waiting that long only looks like a hang.
    """

    budget_s: float = 120.0
    base_s: float = 0.5
    cap_s: float = 30.0
    max_attempts: int = 12
    refused_loopback_budget_s: float = 10.0

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based)."""
        backoff = min(self.cap_s, self.base_s * 2.0 ** (attempt - 1))
        jittered = backoff / 2 + rng.uniform(0, backoff / 2)
        return max(jittered, retry_after or 0.0)


def check_transport_security(base_url: str, *, allow_insecure: bool, in_process: bool) -> None:
    """Refuse to send the API key over plain http to a non-loopback host."""
    scheme = urlsplit(base_url).scheme
    if scheme not in ("http", "https"):
        raise ApiError(
            f"Unsupported control-plane URL {base_url!r}",
            "The control-plane URL must start with https:// (or http:// for a local emulator).",
        )
    if scheme == "http" and not in_process and not allow_insecure and not is_loopback(base_url):
        raise ApiError(
            f"Refusing to send the API key over plain HTTP to {urlsplit(base_url).hostname}",
            "The control plane URL uses http:// and is not a loopback address (localhost, "
            "127.x.x.x or [::1]), so the API key would travel unencrypted. Use https://, or pass "
            "--insecure (or set `allow_insecure = true` under [control_plane]) if you really mean it.",
        )


def _is_env_var_name(text: str) -> bool:
    return bool(text) and (text[0].isalpha() or text[0] == "_") and text.replace("_", "a").isalnum() and text.isascii()


def _key_problem(api_key: str) -> str | None:
    """What is wrong with the key's characters, in words that reveal none of them."""
    if api_key.endswith(("\n", "\r")):
        return "ends with a newline"
    if any(ch.isspace() for ch in api_key):
        return "contains whitespace"
    if any(not ch.isprintable() for ch in api_key):
        return "contains a control character"
    if not api_key.isascii():
        return "contains a non-ASCII character"  # httpx could not even put it in a header
    return None


def check_api_key(api_key: str, key_source: str = DEFAULT_KEY_SOURCE) -> None:
    """Reject a key with whitespace, control or non-ASCII characters, never echoing it.

    Such a key is always a copy-paste accident (most often the trailing newline
    of ``$(cat keyfile)``); sending it would only earn a confusing 401, or put
    stray bytes into an HTTP header. ``key_source`` is the environment
    variable's name (or a description) and is what the error names.
    """
    problem = _key_problem(api_key)
    if problem is None:
        return
    if _is_env_var_name(key_source):
        summary = f"The API key in the environment variable {key_source} {problem}"
        example = f"`export {key_source}=\"$(tr -d '[:space:]' < key-file)\"`"
        fix = f"Set {key_source} again to the key alone, for example {example}."
    else:
        summary = f"{key_source[:1].upper()}{key_source[1:]} {problem}"
        fix = "Set it again to the key alone."
    raise AuthError(
        summary,
        f"API keys have no spaces, newlines or control characters. {fix} The key is not shown here.",
    )


def _needs_tls(*urls: str) -> bool:
    """True unless every URL is plain http (no redirects are followed, so none turns https)."""
    return any(urlsplit(url).scheme != "http" for url in urls)


def _parse_error_body(response: httpx.Response) -> tuple[str, str]:
    """(gRPC status name, message) from an error body, in the SDK's order (PROTOCOL.md §5)."""
    try:
        body = response.json()
    except ValueError:
        return "", response.text[:200]
    err = body.get("error", body) if isinstance(body, dict) else body
    if isinstance(err, dict):
        status = err.get("status") or ""
        return str(status), str(err.get("message") or err)
    return "", str(err)


def _never_sent(exc: httpx.TransportError) -> bool:
    """The request cannot have reached the server (so even a non-idempotent call may be retried)."""
    return isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))


def _retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds (the delta form; dates and junk are ignored)."""
    value = response.headers.get("Retry-After")
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and math.isfinite(seconds) and seconds >= 0 else None


def format_budget(seconds: float) -> str:
    """A budget as people say it: ``2m``, ``90s`` -> ``1m30s``, ``0.5s``."""
    if seconds == int(seconds):
        return format_duration(int(seconds))
    return f"{seconds:g}s"


# -- why an attempt failed ------------------------------------------------


@dataclass(frozen=True)
class Failure:
    """One failed attempt: a cause in words, whether to retry, and the budget it gets."""

    cause: str
    retryable: bool
    refused: bool = False
    tls: bool = False
    lost: bool = False  # the connection dropped after the request may have reached the server


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception it was raised from (httpx wraps httpcore wraps OSError)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def classify_transport_error(exc: httpx.TransportError) -> Failure:
    """Sort a transport error into retryable (connect errors, timeouts) or not (PROTOCOL.md §6.3).

    A TLS failure arrives as an ``httpx.ConnectError`` wrapping an
    ``ssl.SSLError``; retrying it cannot help (the server speaks plain http, or
    its certificate is not trusted), so it is never retried.
    """
    text = str(exc).lower()
    if any(isinstance(e, ssl.SSLError) for e in _chain(exc)) or "[ssl" in text or "certificate" in text:
        return Failure("TLS handshake failed", retryable=False, tls=True)
    if isinstance(exc, httpx.TimeoutException):
        return Failure("timed out", retryable=True)
    if isinstance(exc, httpx.ConnectError):
        if any(isinstance(e, ConnectionRefusedError) for e in _chain(exc)) or "refused" in text:
            return Failure("connection refused", retryable=True, refused=True)
        return Failure("connection failed", retryable=True)
    # The connection dropped mid-request: the server may have acted. The SDK does not
    # retry these; _request retries them only for idempotent calls (PROTOCOL.md §6.3).
    return Failure(f"connection lost ({type(exc).__name__})", retryable=False, lost=True)


class ControlPlaneClient:
    """Client for the RLOR control plane (real API or emulator).

    ``account_id`` is resolved lazily from the key (E1) unless given.
    ``gateway_url`` is the trainer gateway used for health checks and endpoints
    (defaults to ``base_url``, as the SDK does). ``trace`` receives one line per
    attempt and per retry delay for ``--debug``; ``notify`` receives one line
    the first time this client retries (so a wait never looks like a hang).
    ``key_source`` names where the key came from (the env var) in errors.
    ``sleep`` and ``clock`` are injectable so tests never wait. No line or
    error ever contains the key.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        account_id: str | None = None,
        gateway_url: str | None = None,
        transport: httpx.BaseTransport | None = None,
        allow_insecure: bool = False,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        trace: Callable[[str], None] | None = None,
        notify: Callable[[str], None] | None = None,
        key_source: str = DEFAULT_KEY_SOURCE,
    ) -> None:
        check_api_key(api_key, key_source)
        self.base_url = base_url.rstrip("/")
        check_transport_security(self.base_url, allow_insecure=allow_insecure, in_process=transport is not None)
        self.gateway_url = (gateway_url or self.base_url).rstrip("/")
        # Health checks carry the key too: the gateway gets the same scrutiny.
        check_transport_security(self.gateway_url, allow_insecure=allow_insecure, in_process=transport is not None)
        self._account_id = account_id
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()
        self._trace = trace
        self._notify = notify
        self._announced = False
        self._key_source = key_source
        self._loopback = is_loopback(self.base_url)
        self._secret = api_key
        self._lock = threading.Lock()
        self.request_count = 0  # control-plane requests (what the request budgets count)
        self.health_check_count = 0  # trainer-gateway health checks, counted apart
        # The emulator instance answering (its X-Rlorinfra-Emulator-Instance header);
        # "" once a control plane answered without one (the real API); None before any answer.
        self.emulator_instance: str | None = None
        headers = {"X-Api-Key": api_key, "Content-Type": "application/json", "Accept": "application/json"}
        self._bearer = {"Authorization": f"Bearer {api_key}"}
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            transport=transport,
            timeout=httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
            # A redirect would carry the key to whatever host it names, and a 3xx is
            # never a valid answer here: it is reported as an error instead.
            follow_redirects=False,
            # Only https needs a TLS context; building one (loading the CA bundle) costs
            # ~50 ms of every run against a plain-http emulator, so skip it there.
            verify=_needs_tls(self.base_url, self.gateway_url),
        )
        assert self._http.follow_redirects is False

    # -- plumbing ---------------------------------------------------------

    def close(self) -> None:
        """Close pooled connections."""
        self._http.close()

    def __enter__(self) -> ControlPlaneClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _count(self, health: bool = False) -> None:
        with self._lock:
            if health:
                self.health_check_count += 1
            else:
                self.request_count += 1

    def _note_instance(self, response: httpx.Response) -> None:
        """Remember which emulator world answered (state records it, DESIGN.md §4)."""
        instance = response.headers.get(EMULATOR_INSTANCE_HEADER, "")
        with self._lock:
            self.emulator_instance = instance

    def _scrub(self, text: str) -> str:
        """``text`` with the key blanked out (servers and exceptions may echo what they got)."""
        return text.replace(self._secret, "[redacted]") if self._secret else text

    def _say(self, line: str) -> None:
        if self._trace:
            self._trace(self._scrub(line))

    def _send_once(self, method: str, url: str, *, health: bool = False, **kwargs: Any) -> httpx.Response:
        """One attempt, traced whether it gets an answer or a transport error."""
        self._count(health)
        started = time.monotonic()
        try:
            response = self._http.request(method, url, follow_redirects=False, **kwargs)
        except httpx.TransportError as exc:
            cause, ms = classify_transport_error(exc).cause, (time.monotonic() - started) * 1000
            self._say(f"{method} {url} -> {cause}: {type(exc).__name__}: {exc} ({ms:.0f} ms)")
            raise
        self._say(f"{method} {url} -> {response.status_code} ({(time.monotonic() - started) * 1000:.0f} ms)")
        if not health:
            self._note_instance(response)
        return response

    def _request(self, method: str, url: str, *, what: str, idempotent: bool = True,
                 **kwargs: Any) -> httpx.Response:  # fmt: skip
        """Send with retries; return a 2xx response or raise a typed ApiError.

        A non-``idempotent`` call is retried only when the server cannot have
        acted (the connection was never made, or a 429): after a lost answer
        (timeout, 408, 5xx) it raises ``OutcomeUnknownError`` for the caller to
        re-read and decide (DESIGN.md §6).
        """
        started = self._clock()
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._send_once(method, url, **kwargs)
            except httpx.TransportError as exc:
                failure = classify_transport_error(exc)
                if failure.lost and idempotent:
                    failure = Failure(failure.cause, retryable=True)  # safe to send again: same effect
                if not idempotent and not _never_sent(exc) and (failure.retryable or failure.lost):
                    raise self._outcome_unknown(what, failure.cause) from None
                if not failure.retryable:
                    raise self._transport_error(what, exc, failure) from None
                if not self._wait_to_retry(attempt, started, failure, None):
                    raise self._unreachable(what, exc, failure, attempt) from None
                continue
            status = response.status_code
            if 200 <= status < 300:
                return response
            if status in RETRY_STATUSES:
                if not idempotent and status != 429:
                    raise self._outcome_unknown(what, f"HTTP {status}")
                failure = Failure(f"HTTP {status}", retryable=True)
                if self._wait_to_retry(attempt, started, failure, _retry_after(response)):
                    continue
            raise self._error(what, response)

    def _outcome_unknown(self, what: str, cause: str) -> OutcomeUnknownError:
        noun = "deployment" if "deployment" in what else "job"
        return OutcomeUnknownError(
            f"The control plane's answer to {what} was lost ({cause})",
            f"The request may or may not have been carried out; rlorinfra re-reads the {noun} instead of "
            "sending it again. Run `rlorinfra plan` to see where things stand.",
        )

    def _budget(self, failure: Failure) -> float:
        """The total time a call may spend retrying after ``failure``."""
        if failure.refused and self._loopback:
            return min(self._retry.budget_s, self._retry.refused_loopback_budget_s)
        return self._retry.budget_s

    def _wait_to_retry(self, attempt: int, started: float, failure: Failure, retry_after: float | None) -> bool:
        """Sleep before the next attempt and return True, or return False when out of budget."""
        budget = self._budget(failure)
        left = budget - (self._clock() - started)
        if attempt >= self._retry.max_attempts or left <= 0 or (retry_after or 0.0) > left:
            self._say(f"giving up after {attempt} attempt(s): {failure.cause} (retry budget {format_budget(budget)})")
            return False
        # Cut to the time left, as the SDK does: the last try lands on the deadline.
        delay = min(self._retry.delay(attempt, retry_after, self._rng), left)
        self._announce(failure, budget)
        self._say(
            f"retry {attempt} in {delay:.2f} s after {failure.cause} ({left:.1f} s of {format_budget(budget)} left)"
        )
        self._sleep(delay)
        return True

    def _announce(self, failure: Failure, budget: float) -> None:
        """Tell ``notify`` about the first retry of this client's lifetime, once."""
        with self._lock:
            if self._announced or self._notify is None:
                return
            self._announced = True
        if failure.cause.startswith("HTTP "):
            what = f"answered {failure.cause}"
        else:
            what = f"unreachable ({failure.cause})"
        self._notify(self._scrub(f"control plane {what}, retrying for up to {format_budget(budget)}..."))

    def _unreachable(self, what: str, exc: Exception, failure: Failure, attempts: int) -> ApiError:
        local = (
            " Nothing is listening there: if it is a local emulator, start it with "
            '`rlorinfra control-plane serve` (or use `url = "local"`).'
            if failure.refused and self._loopback
            else ""
        )
        return ApiError(
            f"Could not reach the control plane at {self.base_url} ({what}): {failure.cause}",
            self._scrub(
                f"{type(exc).__name__}: {exc}. Gave up after {attempts} attempt(s) within the "
                f"{format_budget(self._budget(failure))} retry budget.{local} Check the URL "
                "(`[control_plane] url` or FIREWORKS_BASE_URL) and your network, then run the command again."
            ),
        )

    def _transport_error(self, what: str, exc: Exception, failure: Failure) -> ApiError:
        """A transport error that retrying cannot fix (TLS), or must not retry (a lost answer)."""
        if failure.tls:
            return ApiError(
                f"TLS error talking to the control plane at {self.base_url} ({what})",
                self._scrub(
                    f"{exc}. This is not retried. If the server speaks plain HTTP (a local emulator, "
                    "say), use an http:// URL; otherwise check that its certificate is valid and "
                    "trusted. Certificate checks are never turned off, not even by --insecure."
                ),
            )
        return ApiError(
            f"Lost the connection to the control plane at {self.base_url} ({what})",
            self._scrub(
                f"{type(exc).__name__}: {exc}. This is not retried, since the request may have been "
                "processed. Run the command again: it picks up whatever did happen."
            ),
        )

    def _error(self, what: str, response: httpx.Response) -> ApiError:
        status = response.status_code
        if 300 <= status < 400:
            return self._redirect_error(what, response)
        code, message = _parse_error_body(response)
        message = self._scrub(message)
        summary = f"Control plane refused to {what} (HTTP {status}{' ' + code if code else ''}): {message}"
        kinds: dict[int, type[ApiError]] = {401: AuthError, 403: AuthError, 404: NotFoundError, 409: AlreadyExistsError}
        cls = kinds.get(status, ApiError)
        hint = _error_hint(status, self._key_source)
        return cls(summary, hint, status_code=status, code=code, message=message)

    def _redirect_error(self, what: str, response: httpx.Response) -> ApiError:
        """A 3xx is never followed: the key must not go to a host nobody configured."""
        status = response.status_code
        try:
            target = urlsplit(response.headers.get("Location", ""))
            where = f"{target.scheme}://{target.hostname}" if target.hostname else "another address"
        except ValueError:
            where = "another address"
        return ApiError(
            f"Control plane answered HTTP {status} (a redirect) when asked to {what}",
            self._scrub(
                f"It redirects to {where}. rlorinfra never follows redirects on control-plane calls, "
                "so the API key is only ever sent to the configured URL. Set `[control_plane] url` "
                "to the address the control plane really answers on (often https:// instead of http://)."
            ),
            status_code=status,
        )

    def _json(self, response: httpx.Response, what: str) -> dict[str, Any]:
        """The JSON object of a 2xx answer; anything else is an ApiError, never an empty result."""
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise ApiError(
                f"Control plane sent an unreadable answer when asked to {what} (HTTP {response.status_code})",
                "Expected a JSON object. Check that `[control_plane] url` points at the Fireworks API "
                "(or an emulator), not at a web page or a proxy.",
                status_code=response.status_code,
            )
        return body

    # -- accounts ---------------------------------------------------------

    @property
    def account_id(self) -> str:
        """The account the key belongs to (E1), resolved once."""
        if self._account_id is None:
            self._account_id = self._resolve_account()
        return self._account_id

    def _resolve_account(self) -> str:
        what = "resolve the account"
        body = self._json(self._request("GET", "/v1/accounts", what=what, params={"pageSize": 2}), what)
        names = [str(a.get("name", "")) for a in body.get("accounts") or []]
        if len(names) != 1 or not names[0].removeprefix("accounts/"):
            raise ApiError(
                "Could not determine the Fireworks account for this API key",
                f"The key is associated with {len(names)} accounts. Set `account_id` under "
                "[control_plane] (or FIREWORKS_ACCOUNT_ID) to choose one.",
            )
        return names[0].removeprefix("accounts/")

    def identify(self) -> str:
        """The emulator instance answering (``""`` for the real API), asking once if nothing answered yet."""
        if self.emulator_instance is None:
            self._request("GET", "/v1/accounts", what="identify the control plane", params={"pageSize": 1})
        return self.emulator_instance or ""

    def _jobs_path(self, job_id: str = "") -> str:
        if job_id and not is_valid_job_id(job_id):
            # Never let a typed ID (e.g. "..") escape its path segment.
            raise ApiError(
                f"Invalid job ID {job_id!r}",
                "Job IDs are 1-63 lowercase letters, digits and hyphens, as in the job name "
                "accounts/<account>/rlorTrainerJobs/<job id>.",
            )
        base = f"/v1/accounts/{self.account_id}/rlorTrainerJobs"
        return f"{base}/{job_id}" if job_id else base

    # -- jobs -------------------------------------------------------------

    def create_job(self, job_id: str, display_name: str, spec: dict[str, Any]) -> LiveJob:
        """POST E2 with a client-chosen ID. A 409 raises AlreadyExistsError (caller adopts)."""
        params, body = create_request(display_name, spec)
        params.append(("rlorTrainerJobId", job_id))
        response = self._request(
            "POST", self._jobs_path(), what=f"create job {job_id}", params=params, json=body, timeout=WRITE_TIMEOUT_S
        )
        return live_job(self._json(response, f"create job {job_id}"))

    def get_job(self, job_id: str) -> LiveJob | None:
        """GET E3; ``None`` when the job does not exist (404)."""
        try:
            response = self._request("GET", self._jobs_path(job_id), what=f"get job {job_id}")
        except NotFoundError:
            return None
        return live_job(self._json(response, f"get job {job_id}"))

    def iter_job_pages(self, *, filter: str | None = None, page_size: int = LIST_PAGE_SIZE) -> Iterator[list[LiveJob]]:
        """LIST E4, one parsed page at a time (raw JSON is dropped page by page).

        The next page is requested as soon as its token is known, so parsing a
        page overlaps the round trip for the next one; at most two raw pages
        are held at once.
        """
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="list-pages") as prefetch:
            pending: Future[dict[str, Any]] | None = prefetch.submit(self._list_page, filter, page_size, "")
            while pending is not None:
                body = pending.result()
                token = body.get("nextPageToken") or ""
                pending = prefetch.submit(self._list_page, filter, page_size, token) if token else None
                yield [live_job(r) for r in body.get("rlorTrainerJobs") or []]

    def _list_page(self, filter: str | None, page_size: int, token: str) -> dict[str, Any]:
        params: dict[str, Any] = {"pageSize": page_size}
        if filter:
            params["filter"] = filter
        if token:
            params["pageToken"] = token
        # A 3xx or any non-2xx raises in _request, and a non-object body raises here:
        # neither may ever read as an empty (last) page.
        return self._json(self._request("GET", self._jobs_path(), what="list jobs", params=params), "list jobs")

    def list_jobs(self, *, filter: str | None = None) -> list[LiveJob]:
        """Every job on every page (tombstones are hidden by the server)."""
        return [job for page in self.iter_job_pages(filter=filter) for job in page]

    def delete_job(self, job_id: str) -> bool:
        """DELETE E5. Returns False when the job was already gone (404)."""
        try:
            self._request("DELETE", self._jobs_path(job_id), what=f"delete job {job_id}")
        except NotFoundError:
            return False
        return True

    def resume_job(self, job_id: str) -> LiveJob:
        """POST E6 ``:resume`` with no body, as the SDK does."""
        response = self._request(
            "POST",
            f"{self._jobs_path(job_id)}:resume",
            what=f"resume job {job_id}",
            timeout=WRITE_TIMEOUT_S,
            idempotent=False,
        )
        return live_job(self._json(response, f"resume job {job_id}"))

    def cancel_job(self, job_id: str) -> None:
        """POST E7 ``:cancel``."""
        self._request(
            "POST", f"{self._jobs_path(job_id)}:cancel", what=f"cancel job {job_id}", json={}, idempotent=False
        )

    # -- deployments (PROTOCOL.md §10) ----------------------------------

    def _deployments_path(self, deployment_id: str = "") -> str:
        if deployment_id and not is_valid_deployment_id(deployment_id):
            # Never let a typed ID (e.g. "..") escape its path segment.
            raise ApiError(
                f"Invalid deployment ID {deployment_id!r}",
                "Deployment IDs are 1-63 lowercase letters, digits and hyphens, as in the name "
                "accounts/<account>/deployments/<deployment id>.",
            )
        base = f"/v1/accounts/{self.account_id}/deployments"
        return f"{base}/{deployment_id}" if deployment_id else base

    def deployment_name(self, deployment_id: str) -> str:
        """``accounts/{account}/deployments/{deployment_id}``."""
        return deployment_name(self.account_id, deployment_id)

    def create_deployment(self, deployment_id: str, spec: dict[str, Any]) -> LiveDeployment:
        """POST E13 with a client-chosen ID. A 409 raises AlreadyExistsError (caller adopts).

        Retried like job creation: a retry after a lost answer that had landed
        earns a 409, which the caller resolves by reading the deployment.
        """
        flags, body = deployment_create_request(spec)
        params = [("deploymentId", deployment_id), *flags]  # deploymentId first, as the SDK sends it
        what = f"create deployment {deployment_id}"
        response = self._request(
            "POST", self._deployments_path(), what=what, params=params, json=body, timeout=WRITE_TIMEOUT_S
        )
        return deployment_from_resource(self._json(response, what))

    def get_deployment(self, deployment_id: str) -> LiveDeployment | None:
        """GET E14; ``None`` when the deployment does not exist (404)."""
        what = f"get deployment {deployment_id}"
        try:
            response = self._request("GET", self._deployments_path(deployment_id), what=what)
        except NotFoundError:
            return None
        return deployment_from_resource(self._json(response, what))

    def iter_deployment_pages(
        self, *, filter: str | None = None, show_deleted: bool = False, page_size: int = LIST_PAGE_SIZE
    ) -> Iterator[list[LiveDeployment]]:
        """LIST E15, one parsed page at a time; an empty or missing token ends paging."""
        token = ""
        while True:
            body = self._deployment_page(filter, show_deleted, page_size, token)
            yield [deployment_from_resource(r) for r in body.get("deployments") or [] if isinstance(r, dict)]
            token = str(body.get("nextPageToken") or "")
            if not token:
                return

    def _deployment_page(self, filter: str | None, show_deleted: bool, page_size: int, token: str) -> dict[str, Any]:
        params: dict[str, Any] = {"pageSize": page_size}
        if filter:
            params["filter"] = filter
        if show_deleted:
            params["showDeleted"] = "true"
        if token:
            params["pageToken"] = token  # the other parameters must match the first page's
        what = "list deployments"
        return self._json(self._request("GET", self._deployments_path(), what=what, params=params), what)

    def list_deployments(self, *, filter: str | None = None, show_deleted: bool = False) -> list[LiveDeployment]:
        """Every deployment on every page (DELETED rows only with ``show_deleted``)."""
        pages = self.iter_deployment_pages(filter=filter, show_deleted=show_deleted)
        return [deployment for page in pages for deployment in page]

    def update_deployment(
        self, deployment_id: str, fields: dict[str, Any], update_mask: list[str] | tuple[str, ...] | None
    ) -> LiveDeployment:
        """PATCH E16: ``fields`` keyed by snake_case path, sent camelCase; ``updateMask`` comma-joined.

        ``update_mask=None`` sends no mask (the server then applies the body as
        a whole, as the SDK's ``scale_to_zero`` does). Never retried blindly:
        a re-attach restarts the serving pod, so a lost answer raises
        ``OutcomeUnknownError`` for the caller to re-read (as ``:resume``).
        """
        params, body = deployment_update_request(fields, update_mask)
        what = f"update deployment {deployment_id}"
        response = self._request(
            "PATCH",
            self._deployments_path(deployment_id),
            what=what,
            params=params,
            json=body,
            timeout=WRITE_TIMEOUT_S,
            idempotent=False,
        )
        return deployment_from_resource(self._json(response, what))

    def delete_deployment(self, deployment_id: str) -> bool:
        """DELETE E17 with ``ignoreChecks=true&hard=true``, as the SDK sends it.

        Returns False when the deployment was already gone (404).
        """
        try:
            self._request(
                "DELETE",
                self._deployments_path(deployment_id),
                what=f"delete deployment {deployment_id}",
                params=[("ignoreChecks", "true"), ("hard", "true")],
                timeout=WRITE_TIMEOUT_S,
            )
        except NotFoundError:
            return False
        return True

    def hot_load_status(self, deployment_id: str, base_model: str) -> list[HotLoadReplica]:
        """GET E22 on the control-plane host: the replicas' hot-load status (PROTOCOL.md §10.9).

        Data-plane headers on top of the usual ones: Bearer, ``fireworks-model``
        and ``fireworks-deployment``. A ``replicas`` that is not a list is an ApiError.
        """
        what = f"read the hot-load status of deployment {deployment_id}"
        self._deployments_path(deployment_id)  # validates the ID before it goes into a header
        headers = {
            **self._bearer,
            "fireworks-model": base_model,
            "fireworks-deployment": self.deployment_name(deployment_id),
        }
        response = self._request("GET", "/hot_load/v1/models/hot_load", what=what, headers=headers)
        try:
            return hot_load_replicas(self._json(response, what))
        except ValueError as exc:
            raise ApiError(f"Unreadable hot-load status for deployment {deployment_id}", str(exc)) from None

    # -- shapes, health, endpoints ---------------------------------------

    def resolve_shape(self, shape: str) -> ShapeVersion:
        """A pinned version (E10) or the latest validated version of a shape (E9)."""
        if "/versions/" in shape:
            what = f"read training shape {shape}"
            body = self._json(self._request("GET", f"/v1/{shape}", what=what), what)
            return shape_version(body)
        what = f"resolve training shape {shape}"
        response = self._request(
            "GET", f"/v1/{shape}/versions", what=what, params={"filter": "latest_validated=true", "pageSize": 1}
        )
        body = self._json(response, what)
        versions = body.get("trainingShapeVersions") or []
        if not versions:
            raise NotFoundError(
                f"Training shape {shape} has no validated version",
                'Pin a version (`training_shape = ".../versions/<v>"`) or choose another shape.',
                status_code=404,
            )
        return shape_version(versions[0])

    def endpoint(self, job_id: str) -> str:
        """The trainer base URL for a job (what the SDK returns as ``base_url``)."""
        return trainer_endpoint(self.gateway_url, self.account_id, job_id)

    def job_name(self, job_id: str) -> str:
        """``accounts/{account}/rlorTrainerJobs/{job_id}``."""
        return job_name(self.account_id, job_id)

    def healthy(self, job_id: str) -> bool:
        """E11: True only when the trainer health check answers exactly 200 (no retries)."""
        url = f"{self.endpoint(job_id)}/api/v1/healthz"
        try:
            response = self._send_once("GET", url, health=True, headers=self._bearer, timeout=HEALTH_TIMEOUT_S)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    def inject_fault(self, job_id: str, fault: str, message: str | None = None) -> dict[str, Any]:
        """Emulator only: preempt / fail / set-idle / mark-unhealthy / mark-healthy a job."""
        body: dict[str, Any] = {"jobId": job_id, "fault": fault}
        if message:
            body["message"] = message
        what = f"inject {fault} into {job_id}"
        return self._json(self._request("POST", "/_emulator/faults", what=what, json=body), what)


def _error_hint(status: int, key_source: str = DEFAULT_KEY_SOURCE) -> str:
    """What to do about an error answer; a 401 names the variable the key came from."""
    variable = key_source if _is_env_var_name(key_source) else "named by `api_key_env` (default FIREWORKS_API_KEY)"
    hints = {
        400: "The control plane rejected the request as invalid; check the job's fields against "
        "docs/configuration.md (shape path vs manual path).",
        401: f"The API key was rejected. Set the environment variable {variable} to a "
        "training-scoped key (`api_key_env` under [control_plane] names the variable).",
        403: "The API key is valid but lacks permission for this operation.",
        404: "It does not exist in this account (or is not visible to this key).",
        409: "It already exists or is in a transitional state.",
        429: "The control plane kept rate-limiting requests; wait and run the command again.",
    }
    return hints.get(
        status, "The control plane failed; run the command again later (rlorinfra --debug shows the requests)."
    )
