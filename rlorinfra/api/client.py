"""The one control-plane client (the only httpx user in rlorinfra).

It speaks the wire protocol of PROTOCOL.md to the real Fireworks API and to the
emulator alike; the transport is injectable (``httpx.WSGITransport`` runs the
embedded emulator in-process). Every verb retries connect errors, timeouts,
408, 429 and 5xx with exponential backoff and jitter, honouring ``Retry-After``,
within a total time budget (DESIGN.md §5). Errors come back typed.

The API key is only ever placed in request headers; it is never logged, traced
or included in an error message.
"""

from __future__ import annotations

import ipaddress
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit

import httpx

from rlorinfra.api.wire import (
    LiveJob,
    ShapeVersion,
    create_request,
    is_valid_job_id,
    job_name,
    trainer_endpoint,
)
from rlorinfra.errors import AlreadyExistsError, ApiError, AuthError, NotFoundError

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
READ_TIMEOUT_S = 30.0
WRITE_TIMEOUT_S = 60.0
HEALTH_TIMEOUT_S = 5.0
LIST_PAGE_SIZE = 200


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, capped, within a total budget."""

    budget_s: float = 120.0
    base_s: float = 0.5
    cap_s: float = 30.0
    max_attempts: int = 12

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based)."""
        backoff = min(self.cap_s, self.base_s * (2 ** (attempt - 1)))
        jittered = backoff / 2 + rng.uniform(0, backoff / 2)
        return max(jittered, retry_after or 0.0)


def is_loopback(url: str) -> bool:
    """True when ``url`` points at this machine (so plain http cannot leak the key)."""
    host = (urlsplit(url).hostname or "").lower()
    if host in ("localhost",) or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
            "The control plane URL uses http:// and is not a loopback address, so the API key "
            "would travel unencrypted. Use https://, or pass --insecure (or set "
            "`allow_insecure = true` under [control_plane]) if you really mean it.",
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


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class ControlPlaneClient:
    """Client for the RLOR control plane (real API or emulator).

    ``account_id`` is resolved lazily from the key (E1) unless given.
    ``gateway_url`` is the trainer gateway used for health checks and endpoints
    (defaults to ``base_url``, as the SDK does). ``trace`` receives one line per
    request for ``--debug`` (never containing the key).
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
        rng: random.Random | None = None,
        trace: Callable[[str], None] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        check_transport_security(self.base_url, allow_insecure=allow_insecure, in_process=transport is not None)
        self.gateway_url = (gateway_url or self.base_url).rstrip("/")
        # Health checks carry the key too: the gateway gets the same scrutiny.
        check_transport_security(self.gateway_url, allow_insecure=allow_insecure, in_process=transport is not None)
        self._account_id = account_id
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._trace = trace
        self._lock = threading.Lock()
        self.request_count = 0
        headers = {"X-Api-Key": api_key, "Content-Type": "application/json", "Accept": "application/json"}
        self._bearer = {"Authorization": f"Bearer {api_key}"}
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            transport=transport,
            timeout=httpx.Timeout(READ_TIMEOUT_S, connect=10.0),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
            # Only https needs a TLS context; building one (loading the CA bundle) costs
            # ~50 ms of every run against a plain-http emulator, so skip it there.
            verify=_needs_tls(self.base_url, self.gateway_url),
        )

    # -- plumbing ---------------------------------------------------------

    def close(self) -> None:
        """Close pooled connections."""
        self._http.close()

    def __enter__(self) -> "ControlPlaneClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _count(self) -> None:
        with self._lock:
            self.request_count += 1

    def _send_once(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        self._count()
        started = time.monotonic()
        response = self._http.request(method, url, **kwargs)
        if self._trace:
            self._trace(f"{method} {url} -> {response.status_code} ({(time.monotonic() - started) * 1000:.0f} ms)")
        return response

    def _request(self, method: str, url: str, *, what: str, **kwargs: Any) -> httpx.Response:
        """Send with retries; return a 2xx response or raise a typed ApiError."""
        deadline = time.monotonic() + self._retry.budget_s
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._send_once(method, url, **kwargs)
            except httpx.TransportError as exc:
                if not self._may_retry(attempt, deadline, None):
                    raise self._unreachable(what, exc) from None
                continue
            if response.status_code < 400:
                return response
            if response.status_code in RETRY_STATUSES and self._may_retry(attempt, deadline, _retry_after(response)):
                continue
            raise self._error(what, response)

    def _may_retry(self, attempt: int, deadline: float, retry_after: float | None) -> bool:
        if attempt >= self._retry.max_attempts:
            return False
        delay = self._retry.delay(attempt, retry_after, self._rng)
        if time.monotonic() + delay > deadline:
            return False
        self._sleep(delay)
        return True

    def _unreachable(self, what: str, exc: Exception) -> ApiError:
        return ApiError(
            f"Could not reach the control plane at {self.base_url} ({what})",
            f"{type(exc).__name__}: {exc}. Retries were exhausted. Check the URL "
            "(`[control_plane] url` or FIREWORKS_BASE_URL) and your network, then run the command again.",
        )

    def _error(self, what: str, response: httpx.Response) -> ApiError:
        code, message = _parse_error_body(response)
        status = response.status_code
        summary = f"Control plane refused to {what} (HTTP {status}{' ' + code if code else ''}): {message}"
        kinds: dict[int, type[ApiError]] = {401: AuthError, 403: AuthError, 404: NotFoundError, 409: AlreadyExistsError}
        cls = kinds.get(status, ApiError)
        return cls(summary, _error_hint(status), status_code=status, code=code, message=message)

    # -- accounts ---------------------------------------------------------

    @property
    def account_id(self) -> str:
        """The account the key belongs to (E1), resolved once."""
        if self._account_id is None:
            self._account_id = self._resolve_account()
        return self._account_id

    def _resolve_account(self) -> str:
        body = self._request("GET", "/v1/accounts", what="resolve the account", params={"pageSize": 2}).json()
        names = [str(a.get("name", "")) for a in body.get("accounts") or []]
        if len(names) != 1 or not names[0].removeprefix("accounts/"):
            raise ApiError(
                "Could not determine the Fireworks account for this API key",
                f"The key is associated with {len(names)} accounts. Set `account_id` under "
                "[control_plane] (or FIREWORKS_ACCOUNT_ID) to choose one.",
            )
        return names[0].removeprefix("accounts/")

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
        return LiveJob.from_resource(response.json())

    def get_job(self, job_id: str) -> LiveJob | None:
        """GET E3; ``None`` when the job does not exist (404)."""
        try:
            response = self._request("GET", self._jobs_path(job_id), what=f"get job {job_id}")
        except NotFoundError:
            return None
        return LiveJob.from_resource(response.json())

    def iter_job_pages(self, *, filter: str | None = None, page_size: int = LIST_PAGE_SIZE) -> Iterator[list[LiveJob]]:
        """LIST E4, one parsed page at a time (raw JSON is dropped page by page).

        The next page is requested as soon as its token is known, so parsing a
        page overlaps the round trip for the next one; at most two raw pages
        are held at once.
        """
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="list-pages") as prefetch:
            pending = prefetch.submit(self._list_page, filter, page_size, "")
            while pending is not None:
                body = pending.result()
                token = body.get("nextPageToken") or ""
                pending = prefetch.submit(self._list_page, filter, page_size, token) if token else None
                yield [LiveJob.from_resource(r) for r in body.get("rlorTrainerJobs") or []]

    def _list_page(self, filter: str | None, page_size: int, token: str) -> dict[str, Any]:
        params: dict[str, Any] = {"pageSize": page_size}
        if filter:
            params["filter"] = filter
        if token:
            params["pageToken"] = token
        return self._request("GET", self._jobs_path(), what="list jobs", params=params).json()

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
            "POST", f"{self._jobs_path(job_id)}:resume", what=f"resume job {job_id}", timeout=WRITE_TIMEOUT_S
        )
        return LiveJob.from_resource(response.json())

    def cancel_job(self, job_id: str) -> None:
        """POST E7 ``:cancel``."""
        self._request("POST", f"{self._jobs_path(job_id)}:cancel", what=f"cancel job {job_id}", json={})

    # -- shapes, health, endpoints ---------------------------------------

    def resolve_shape(self, shape: str) -> ShapeVersion:
        """A pinned version (E10) or the latest validated version of a shape (E9)."""
        if "/versions/" in shape:
            body = self._request("GET", f"/v1/{shape}", what=f"read training shape {shape}").json()
            return ShapeVersion.from_payload(body)
        body = self._request(
            "GET",
            f"/v1/{shape}/versions",
            what=f"resolve training shape {shape}",
            params={"filter": "latest_validated=true", "pageSize": 1},
        ).json()
        versions = body.get("trainingShapeVersions") or []
        if not versions:
            raise NotFoundError(
                f"Training shape {shape} has no validated version",
                "Pin a version (`training_shape = \".../versions/<v>\"`) or choose another shape.",
                status_code=404,
            )
        return ShapeVersion.from_payload(versions[0])

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
            response = self._send_once("GET", url, headers=self._bearer, timeout=HEALTH_TIMEOUT_S)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    def inject_fault(self, job_id: str, fault: str, message: str | None = None) -> dict[str, Any]:
        """Emulator only: preempt / fail / set-idle / mark-unhealthy / mark-healthy a job."""
        body: dict[str, Any] = {"jobId": job_id, "fault": fault}
        if message:
            body["message"] = message
        return self._request("POST", "/_emulator/faults", what=f"inject {fault} into {job_id}", json=body).json()


def _error_hint(status: int) -> str:
    hints = {
        400: "The control plane rejected the request as invalid; check the job's fields against "
        "docs/configuration.md (shape path vs manual path).",
        401: "The API key was rejected. Set the environment variable named by `api_key_env` "
        "(default FIREWORKS_API_KEY) to a training-scoped key.",
        403: "The API key is valid but lacks permission for this operation.",
        404: "It does not exist in this account (or is not visible to this key).",
        409: "It already exists or is in a transitional state.",
        429: "The control plane kept rate-limiting requests; wait and run the command again.",
    }
    return hints.get(status, "The control plane failed; run the command again later (rlorinfra --debug shows the requests).")
