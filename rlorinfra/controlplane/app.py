"""The emulator's WSGI application: routing, auth, error bodies, injected faults.

Routes (PROTOCOL.md §2; ``{a}`` is an account, ``{id}`` a job ID):

* ``GET /v1/accounts`` (E1), ``GET /v1/accounts/{a}``
* ``POST|GET /v1/accounts/{a}/rlorTrainerJobs`` (E2 create, E4 list)
* ``GET|DELETE /v1/accounts/{a}/rlorTrainerJobs/{id}`` (E3, E5)
* ``POST /v1/accounts/{a}/rlorTrainerJobs/{id}:resume`` / ``:cancel`` (E6, E7)
* ``GET /v1/accounts/fireworks/trainingShapes[/{s}[/versions[/{v}]]]`` (E9, E10)
* ``GET /training/v1/rlorTrainerJobs/{a}/{id}/api/v1/healthz`` (E11)
* ``POST|GET /v1/accounts/{a}/deployments`` (E13 create, E15 list),
  ``GET|PATCH|DELETE /v1/accounts/{a}/deployments/{id}`` (E14, E16, E17)
* ``POST|GET /hot_load/v1/models/hot_load`` (E21, E22; ``//hot_load`` too) and
  ``POST /inference/v1/completions`` (E23): the data plane, keyed by the
  ``fireworks-deployment`` header / the ``model`` field
* ``POST /_emulator/faults`` (admin: ``{"jobId", "fault", "message"?, "period"?,
  "off"?}``, or ``{"fault": "drop-response", "operation", "count"?}``)

Every route needs a key (``X-Api-Key`` or ``Authorization: Bearer``; 401
otherwise): the customer key, or one of the superuser keys. Only a superuser
key may send the key-gated create parameters (PROTOCOL.md §6.4); a customer
key gets a 400 naming the field, as from the real API. Job responses carry
only the fields the real API is known to return (PROTOCOL.md §3.5) unless the
app echoes create fields. Errors are ``{"error": {"code": <gRPC number>,
"message", "status": <gRPC name>}}``. Deterministic errors are never 408, 429
or 5xx (the official SDK retries those for minutes): an unexpected exception
becomes a 400, only a database still busy after its timeout becomes a 503.
Injected latency, 503s and 429s (with ``Retry-After``) apply to every
control-plane route: not to the admin one, nor to the trainer gateway's health
check (another service on the real platform); an armed drop-response fault answers a successful
create, resume, cancel or delete with a 503 after the store has acted. Every
response, errors included, carries ``X-Rlorinfra-Emulator-Instance``: the
database's instance id, so a client can tell emulator worlds apart.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import random
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl
from wsgiref.types import StartResponse, WSGIEnvironment

from rlorinfra.controlplane import shapes
from rlorinfra.controlplane.errors import (
    EmulatorError,
    InvalidArgument,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from rlorinfra.controlplane.requests import JOB_ID_RE
from rlorinfra.controlplane.store import DEFAULT_FLAP_PERIOD_S, DROP_OPERATIONS, Store, rfc3339

log = logging.getLogger("rlorinfra.controlplane")

DEFAULT_PAGE_SIZE = 50
GATEWAY_PREFIX = "/training/"  # the trainer gateway's routes (E11), not the control plane
MAX_PAGE_SIZE = 200
JOB_FAULTS = (
    "preempt",
    "fail",
    "set-idle",
    "mark-unhealthy",
    "mark-healthy",
    "complete",
    "pause",
    "early-stop",
    "expire",
    "flap",
)
DEPLOYMENT_FAULTS = ("fail-deployment",)
FAULTS = (*JOB_FAULTS, *DEPLOYMENT_FAULTS, "drop-response")
DATA_PLANE_PREFIXES = ("/hot_load/", "/inference/")  # the serving pods: no injected control-plane faults
INSTANCE_HEADER = "X-Rlorinfra-Emulator-Instance"
DROPPED_MESSAGE = "response dropped after the request was processed (injected)"

_SEG = r"[^/:]+"
_CLAUSE_RE = re.compile(
    r'\s*(?P<field>[A-Za-z_]+)\s*(?P<op>!=|=)\s*(?:"(?P<quoted>(?:[^"\\]|\\.)*)"|(?P<bare>[A-Za-z0-9_.\-]+))\s*'
)
_AND_RE = re.compile(r"AND\s+")
_JOB_FILTER_FIELDS = {"display_name": "display_name", "displayName": "display_name", "state": "state"}
_VERSION_FILTER_FIELDS = {
    "latest_validated": "latest_validated",
    "latestValidated": "latest_validated",
    "validated": "validated",
}


@dataclass
class Request:
    """One parsed HTTP request as the handlers see it."""

    environ: dict[str, Any]
    method: str
    path: str
    query: dict[str, str]
    max_body_bytes: int
    superuser: bool = False  # set by authentication: the key may send key-gated parameters

    def header(self, name: str) -> str | None:
        """A request header by name (case-insensitive)."""
        key = name.upper().replace("-", "_")
        return self.environ.get(key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{key}")

    def content_length(self) -> int:
        """The declared body length (400 if garbled, 413 beyond the limit, 0 if absent)."""
        raw = (self.environ.get("CONTENT_LENGTH") or "").strip()
        if not raw:
            return 0
        if not raw.isdigit():
            raise InvalidArgument(f'invalid Content-Length header "{raw[:40]}"')
        length = int(raw)
        if length > self.max_body_bytes:
            raise PayloadTooLarge(f"request body of {length} bytes exceeds the {self.max_body_bytes}-byte limit")
        return length

    def body_bytes(self) -> bytes:
        """The raw body (an absent length is an empty body)."""
        length = self.content_length()
        return self.environ["wsgi.input"].read(length) if length else b""

    def json(self, *, allow_empty: bool = False) -> Any:
        """The body decoded as JSON (400 if malformed; None when empty and allowed)."""
        data = self.body_bytes()
        if not data.strip():
            if allow_empty:
                return None
            raise InvalidArgument("the request body is empty; send a JSON object")
        try:
            return json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise InvalidArgument(f"malformed JSON body: {str(exc)[:200]}") from None

    def base_url(self) -> str:
        """``scheme://host[:port]`` the client used (for absolute links)."""
        env = self.environ
        host = env.get("HTTP_HOST") or f"{env.get('SERVER_NAME', 'localhost')}:{env.get('SERVER_PORT', '80')}"
        return f"{env.get('wsgi.url_scheme', 'http')}://{host}{env.get('SCRIPT_NAME', '')}"


Response = tuple[int, Any]
Handler = Callable[..., Response]


def _page_size(query: dict[str, str]) -> int:
    raw = query.get("pageSize", "").strip()
    if not raw:
        return DEFAULT_PAGE_SIZE
    try:
        size = int(raw)
    except ValueError:
        raise InvalidArgument(f'pageSize must be an integer, got "{raw[:40]}"') from None
    if size < 0:
        raise InvalidArgument("pageSize must not be negative")
    return min(size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def encode_page_token(last_id: str) -> str:
    """An opaque page token for the page after ``last_id``."""
    return base64.urlsafe_b64encode(f"after:{last_id}".encode()).decode().rstrip("=")


def decode_page_token(token: str) -> str:
    """The last ID of the previous page (400 for a token we did not issue)."""
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (binascii.Error, ValueError):
        text = ""
    last = text.removeprefix("after:")
    if not text.startswith("after:") or not JOB_ID_RE.match(last):
        raise InvalidArgument(f'invalid pageToken "{token[:60]}"; pass the nextPageToken of the previous page')
    return last


def parse_filter(text: str, fields: dict[str, str]) -> list[tuple[str, str, str]]:
    """An AIP-160 subset: ``field = value`` clauses joined by ``AND``.

    Values are bare tokens or double-quoted strings (``\\"`` escapes); ops are
    ``=`` and ``!=``. Anything else is a 400 naming what is supported.
    """
    clauses: list[tuple[str, str, str]] = []
    pos = 0
    while text.strip():
        match = _CLAUSE_RE.match(text, pos)
        if match is None or match.group("field") not in fields:
            raise InvalidArgument(
                f'unsupported filter "{text[:120]}": use {" or ".join(sorted(fields))} with = or !=, '
                'joined by AND (e.g. state=JOB_STATE_RUNNING AND display_name="x")'
            )
        quoted = match.group("quoted")
        value = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else match.group("bare")
        clauses.append((fields[match.group("field")], match.group("op"), value))
        pos = match.end()
        if pos >= len(text):
            break
        joiner = _AND_RE.match(text, pos)
        if joiner is None:
            raise InvalidArgument(f'unsupported filter "{text[:120]}": join clauses with AND')
        pos = joiner.end()
    return clauses


class EmulatorApp:
    """The WSGI callable. Build it with ``make_app``."""

    def __init__(
        self,
        store: Store,
        *,
        api_key: str,
        superuser_keys: Iterable[str],
        latency_ms: float,
        error_rate: float,
        rate_limit_rate: float,
        retry_after_s: int,
        max_body_bytes: int,
        seed: int | None,
    ) -> None:
        self.store = store
        self._key = api_key.encode("utf-8")
        self._superuser_keys = tuple(key.encode("utf-8") for key in superuser_keys)
        self.latency_ms = float(latency_ms)
        self.error_rate = float(error_rate)
        self.rate_limit_rate = float(rate_limit_rate)
        self.retry_after_s = int(retry_after_s)
        self.max_body_bytes = int(max_body_bytes)
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        self._routes = self._build_routes()

    # -- WSGI entry --------------------------------------------------------------

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        extra_headers: list[tuple[str, str]] = []
        try:
            status, body = self._dispatch(environ, extra_headers)
        except EmulatorError as exc:
            status, body = exc.http_status, exc.body()
            if isinstance(exc, ResourceExhausted):
                extra_headers.append(("Retry-After", str(self.retry_after_s)))
        except sqlite3.OperationalError as exc:  # busy beyond the timeout: transient, retryable
            err: EmulatorError = Unavailable(f"the emulator database is busy, retry: {exc}")
            status, body = err.http_status, err.body()
        except Exception as exc:  # noqa: BLE001 - never a 500: deterministic errors must not be retried
            log.exception("unexpected error handling %s %s", environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"))
            err = InvalidArgument(f"the emulator could not process this request ({type(exc).__name__}: {exc})"[:500])
            status, body = err.http_status, err.body()
        payload = json.dumps(body).encode("utf-8")
        headers = [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(payload))),
            (INSTANCE_HEADER, self.store.instance_id),
            *extra_headers,
        ]
        start_response(f"{status} {_phrase(status)}", headers)
        return [payload]

    def _dispatch(self, environ: dict[str, Any], extra_headers: list[tuple[str, str]]) -> Response:
        request = Request(
            environ=environ,
            method=str(environ.get("REQUEST_METHOD", "GET")).upper(),
            path=str(environ.get("PATH_INFO", "") or "/"),
            query=dict(parse_qsl(str(environ.get("QUERY_STRING", "")), keep_blank_values=True, errors="replace")),
            max_body_bytes=self.max_body_bytes,
        )
        request.superuser = self._authenticate(request)
        request.content_length()  # 400/413 for every route, before anything is read
        handlers, params, admin = self._match(request.path)
        handler = handlers.get(request.method)
        if handler is None:
            extra_headers.append(("Allow", ", ".join(sorted(handlers))))
            raise MethodNotAllowed(
                f"method {request.method[:20]} is not allowed on {request.path[:200]}", http_status=405
            )
        data_plane = request.path.lstrip("/").startswith(tuple(p.lstrip("/") for p in DATA_PLANE_PREFIXES))
        if not admin and not data_plane and not request.path.startswith(GATEWAY_PREFIX):
            self._inject_faults()  # control-plane faults; the trainer gateway is another service
        return handler(request, **params)

    # -- auth and faults -----------------------------------------------------------

    def _authenticate(self, request: Request) -> bool:
        """Every supplied credential must be an accepted key; True when all are superuser keys."""
        supplied: list[str] = []
        api_key = request.header("X-Api-Key")
        if api_key is not None:
            supplied.append(api_key)
        auth = request.header("Authorization")
        if auth is not None:
            scheme, _, token = auth.strip().partition(" ")
            supplied.append(token.strip() if scheme.lower() == "bearer" else "")
        if not supplied:
            raise Unauthenticated("missing API key: send it in X-Api-Key or Authorization: Bearer")
        superuser_roles = []
        for key in supplied:
            raw = key.encode("latin-1", "replace")
            # Constant-time compares, every one of them made: timing tells nothing about which key matched.
            superuser = [hmac.compare_digest(raw, candidate) for candidate in self._superuser_keys]
            customer = hmac.compare_digest(raw, self._key)
            if not (customer or any(superuser)):
                raise Unauthenticated("invalid API key")
            superuser_roles.append(any(superuser))
        return all(superuser_roles)

    def _inject_faults(self) -> None:
        if self.latency_ms > 0:
            time.sleep(self.latency_ms / 1000.0)
        with self._rng_lock:
            limited = self._rng.random() < self.rate_limit_rate
            failed = self._rng.random() < self.error_rate
        if limited:
            raise ResourceExhausted("rate limit exceeded (injected); retry after the Retry-After delay")
        if failed:
            raise Unavailable("the service is temporarily unavailable (injected); retry")

    # -- routing ------------------------------------------------------------------------

    def _build_routes(self) -> list[tuple[re.Pattern[str], dict[str, Handler], bool]]:
        jobs = rf"/v1/accounts/(?P<account>{_SEG})/rlorTrainerJobs"
        shapes_prefix = rf"/v1/accounts/(?P<account>{_SEG})/trainingShapes"
        deployments = rf"/v1/accounts/(?P<account>{_SEG})/deployments"
        table: list[tuple[str, dict[str, Handler], bool]] = [
            (r"/v1/accounts/?", {"GET": self.list_accounts}, False),
            (rf"/v1/accounts/(?P<account>{_SEG})", {"GET": self.get_account}, False),
            (jobs, {"GET": self.list_jobs, "POST": self.create_job}, False),
            (rf"{jobs}/(?P<job_id>{_SEG})", {"GET": self.get_job, "DELETE": self.delete_job}, False),
            (rf"{jobs}/(?P<job_id>{_SEG}):resume", {"POST": self.resume_job}, False),
            (rf"{jobs}/(?P<job_id>{_SEG}):cancel", {"POST": self.cancel_job}, False),
            (shapes_prefix, {"GET": self.list_shapes}, False),
            (rf"{shapes_prefix}/(?P<shape_id>{_SEG})", {"GET": self.get_shape}, False),
            (rf"{shapes_prefix}/(?P<shape_id>{_SEG})/versions", {"GET": self.list_versions}, False),
            (
                rf"{shapes_prefix}/(?P<shape_id>{_SEG})/versions/(?P<version_id>{_SEG})",
                {"GET": self.get_version},
                False,
            ),
            (
                r"/training/v1/rlorTrainerJobs/(?P<account>[^/]+)/(?P<job_id>[^/]+)/api/v1/healthz",
                {"GET": self.healthz},
                False,
            ),
            (deployments, {"GET": self.list_deployments, "POST": self.create_deployment}, False),
            (
                rf"{deployments}/(?P<deployment_id>{_SEG})",
                {"GET": self.get_deployment, "PATCH": self.update_deployment, "DELETE": self.delete_deployment},
                False,
            ),
            (r"/+hot_load/v1/models/hot_load", {"GET": self.hot_load_status, "POST": self.hot_load}, False),
            (r"/+inference/v1/completions", {"POST": self.completions}, False),
            (r"/_emulator/faults", {"POST": self.inject_fault}, True),
        ]
        return [(re.compile(pattern + r"\Z"), handlers, admin) for pattern, handlers, admin in table]

    def _match(self, path: str) -> tuple[dict[str, Handler], dict[str, str], bool]:
        for pattern, handlers, admin in self._routes:
            match = pattern.match(path)
            if match:
                return handlers, match.groupdict(), admin
        raise NotFound(f"no such resource: {path[:200]}")

    def _own_account(self, account: str) -> None:
        if account != self.store.account_id:
            raise PermissionDenied(
                f"the API key has no access to account {account[:80]}; this emulator serves account "
                f"{self.store.account_id}"
            )

    def _known_job_id(self, job_id: str) -> str:
        if not JOB_ID_RE.match(job_id):
            raise NotFound(f"RLOR trainer job {self.store.job_name(job_id[:80])} not found")
        return job_id

    def _job(self, request: Request, resource: dict[str, Any]) -> dict[str, Any]:
        """Make the relative ``directRouteHandle`` absolute for this client."""
        handle = resource.get("directRouteHandle")
        if isinstance(handle, str) and handle.startswith("/"):
            resource["directRouteHandle"] = request.base_url() + handle
        return resource

    # -- accounts (E1) --------------------------------------------------------------------

    def _account(self) -> dict[str, Any]:
        created = self.store.settings().get("created", rfc3339(0))
        account_id = self.store.account_id
        return {
            "name": f"accounts/{account_id}",
            "displayName": f"{account_id} (rlorinfra emulator)",
            "email": f"{account_id}@emulator.local",
            "accountType": "ENTERPRISE",
            "state": "READY",
            "suspendState": "UNSUSPENDED",
            "status": {"code": "OK", "message": ""},
            "createTime": created,
            "updateTime": created,
        }

    def list_accounts(self, request: Request) -> Response:
        """E1: the key's one account."""
        _page_size(request.query)
        return 200, {"accounts": [self._account()], "nextPageToken": ""}

    def get_account(self, request: Request, account: str) -> Response:
        """The account resource."""
        self._own_account(account)
        return 200, self._account()

    # -- jobs (E2-E7) ---------------------------------------------------------------------

    def create_job(self, request: Request, account: str) -> Response:
        """E2 (key-gated parameters only with a superuser key)."""
        self._own_account(account)
        job = self.store.create_job(request.json(), request.query, superuser=request.superuser)
        return self._answer("create", 200, self._job(request, job))

    def get_job(self, request: Request, account: str, job_id: str) -> Response:
        """E3."""
        self._own_account(account)
        return 200, self._job(request, self.store.get_job(self._known_job_id(job_id)))

    def list_jobs(self, request: Request, account: str) -> Response:
        """E4: keyset pages by name, tombstones hidden."""
        self._own_account(account)
        query = request.query
        order = " ".join(query.get("orderBy", "").split())
        if order not in ("", "name", "name asc", "name desc"):
            raise InvalidArgument(f'unsupported orderBy "{order[:60]}": use "name" or "name desc"')
        filters = parse_filter(query.get("filter", ""), _JOB_FILTER_FIELDS)
        filters = [(c, op, _full_state(v) if c == "state" else v) for c, op, v in filters]
        token = query.get("pageToken", "")
        jobs, last = self.store.list_jobs(
            page_size=_page_size(query),
            after=decode_page_token(token) if token else None,
            filters=tuple(filters),
            descending=order == "name desc",
        )
        page = [self._job(request, job) for job in jobs]
        return 200, {"rlorTrainerJobs": page, "nextPageToken": encode_page_token(last) if last else ""}

    def delete_job(self, request: Request, account: str, job_id: str) -> Response:
        """E5: answers ``{}``; the job becomes a tombstone."""
        self._own_account(account)
        self.store.delete_job(self._known_job_id(job_id))
        return self._answer("delete", 200, {})

    def resume_job(self, request: Request, account: str, job_id: str) -> Response:
        """E6 (an empty body is fine)."""
        self._own_account(account)
        self._optional_object(request)
        return self._answer("resume", 200, self._job(request, self.store.resume_job(self._known_job_id(job_id))))

    def cancel_job(self, request: Request, account: str, job_id: str) -> Response:
        """E7 (an empty body is fine)."""
        self._own_account(account)
        self._optional_object(request)
        return self._answer("cancel", 200, self._job(request, self.store.cancel_job(self._known_job_id(job_id))))

    def _answer(self, operation: str, status: int, body: Any) -> Response:
        """The response of a done operation, unless a drop-response fault eats it (503 after acting)."""
        if self.store.take_drop(operation):
            raise Unavailable(DROPPED_MESSAGE)
        return status, body

    @staticmethod
    def _optional_object(request: Request) -> None:
        body = request.json(allow_empty=True)
        if body is not None and not isinstance(body, dict):
            raise InvalidArgument("the request body must be a JSON object (or empty)")

    # -- training shapes (E9, E10) ---------------------------------------------------------

    @staticmethod
    def _shape_versions(account: str, shape_id: str) -> tuple[shapes.ShapeVersion, ...]:
        found = shapes.versions(shape_id) if account == shapes.SHAPE_OWNER else ()
        if not found:
            raise NotFound(f"training shape accounts/{account[:80]}/trainingShapes/{shape_id[:80]} not found")
        return found

    def list_shapes(self, request: Request, account: str) -> Response:
        """The catalogue (only account ``fireworks`` owns shapes)."""
        _page_size(request.query)
        owned = list(shapes.CATALOGUE) if account == shapes.SHAPE_OWNER else []
        return 200, {"trainingShapes": [shapes.shape_payload(s) for s in owned], "nextPageToken": ""}

    def get_shape(self, request: Request, account: str, shape_id: str) -> Response:
        """One shape."""
        self._shape_versions(account, shape_id)
        return 200, shapes.shape_payload(shape_id)

    def list_versions(self, request: Request, account: str, shape_id: str) -> Response:
        """E9: versions, newest first, optionally ``filter=latest_validated=true``."""
        found = self._shape_versions(account, shape_id)
        size = _page_size(request.query)
        selected = list(reversed(found))
        for column, op, value in parse_filter(request.query.get("filter", ""), _VERSION_FILTER_FIELDS):
            if value.lower() not in ("true", "false"):
                raise InvalidArgument(f'filter value for {column} must be true or false, got "{value[:40]}"')
            wanted = (value.lower() == "true") == (op == "=")
            selected = [v for v in selected if getattr(v, column) == wanted]
        return 200, {"trainingShapeVersions": [v.payload() for v in selected[:size]], "nextPageToken": ""}

    def get_version(self, request: Request, account: str, shape_id: str, version_id: str) -> Response:
        """E10: one exact version."""
        self._shape_versions(account, shape_id)
        version = shapes.find_version(shape_id, version_id)
        if version is None:
            raise NotFound(f"training shape version {shapes.shape_name(shape_id)}/versions/{version_id[:80]} not found")
        return 200, version.payload()

    # -- trainer health (E11) --------------------------------------------------------------

    def healthz(self, request: Request, account: str, job_id: str) -> Response:
        """200 only while RUNNING and not marked unhealthy; 503 otherwise."""
        if account != self.store.account_id:
            raise NotFound(f"no trainer for account {account[:80]}")
        healthy, reason = self.store.check_health(self._known_job_id(job_id))
        if not healthy:
            raise Unavailable(reason)
        return 200, {"status": "ok"}

    # -- deployments (E13-E17) and their data plane (E21-E23) ------------------------------

    def create_deployment(self, request: Request, account: str) -> Response:
        """E13 (superuser-only fields only with a superuser key; 409 on an existing ID)."""
        self._own_account(account)
        deployment = self.store.deployments.create(request.json(), request.query, superuser=request.superuser)
        return self._answer("create", 200, deployment)

    def get_deployment(self, request: Request, account: str, deployment_id: str) -> Response:
        """E14 (tombstones included)."""
        self._own_account(account)
        return 200, self.store.deployments.get(deployment_id)

    def list_deployments(self, request: Request, account: str) -> Response:
        """E15: pages by createTime; DELETED rows only with ``showDeleted=true``."""
        self._own_account(account)
        token = request.query.get("pageToken", "")
        rows, last = self.store.deployments.list_page(
            page_size=_page_size(request.query),
            after=decode_page_token(token) if token else None,
            show_deleted=request.query.get("showDeleted", "").lower() == "true",
        )
        return 200, {"deployments": rows, "nextPageToken": encode_page_token(last) if last else ""}

    def update_deployment(self, request: Request, account: str, deployment_id: str) -> Response:
        """E16: ``updateMask`` (snake_case paths) limits the change; without one, the fields sent change."""
        self._own_account(account)
        mask = request.query.get("updateMask")
        updated = self.store.deployments.update(deployment_id, request.json(), mask, superuser=request.superuser)
        return 200, updated

    def delete_deployment(self, request: Request, account: str, deployment_id: str) -> Response:
        """E17: answers the row, now DELETING; ``hard=true`` ends in 404 rather than a DELETED tombstone.

        ``ignoreChecks`` is accepted; the emulator tracks no inference traffic, so no recent-use check refuses.
        """
        self._own_account(account)
        hard = request.query.get("hard", "").lower() == "true"
        return self._answer("delete", 200, self.store.deployments.delete(deployment_id, hard=hard))

    def _data_plane_deployment(self, request: Request, name: str | None) -> str:
        """The deployment ID named ``accounts/{a}/deployments/{id}`` (404 for another account or a bad name)."""
        prefix = f"accounts/{self.store.account_id}/deployments/"
        if not name or not name.startswith(prefix):
            raise NotFound(f"no such deployment: {str(name)[:120]}")
        return name.removeprefix(prefix)

    def hot_load(self, request: Request) -> Response:
        """E21: load the snapshot ``identity`` into the ``fireworks-deployment`` header's deployment."""
        deployment_id = self._data_plane_deployment(request, request.header("fireworks-deployment"))
        body = request.json()
        if not isinstance(body, dict) or not isinstance(body.get("identity"), str) or not body["identity"]:
            raise InvalidArgument('send {"identity": "<snapshot identity>"}')
        self.store.deployments.hot_load(deployment_id, body["identity"])
        return 200, {}

    def hot_load_status(self, request: Request) -> Response:
        """E22: ``{"replicas": [...]}`` (always a list; empty while not serving)."""
        deployment_id = self._data_plane_deployment(request, request.header("fireworks-deployment"))
        return 200, self.store.deployments.hot_load_status(deployment_id)

    def completions(self, request: Request) -> Response:
        """E23: 200 while READY, 404 otherwise (never 503, which the SDK's probe would retry)."""
        body = request.json()
        model = body.get("model") if isinstance(body, dict) else None
        deployment_id = self._data_plane_deployment(request, model if isinstance(model, str) else None)
        if not self.store.deployments.is_ready(deployment_id):
            raise NotFound(f"deployment {model} is not ready")
        return 200, {"object": "text_completion", "choices": [{"index": 0, "text": "", "finish_reason": "length"}]}

    # -- admin -------------------------------------------------------------------------------

    def inject_fault(self, request: Request) -> Response:
        """``POST /_emulator/faults``: apply a fault to a job (answer the job), or arm a drop-response."""
        body = request.json()
        if not isinstance(body, dict):
            raise InvalidArgument(
                'send {"jobId": "...", "fault": "..."} or {"fault": "drop-response", "operation": ...}'
            )
        fault = body.get("fault")
        if fault not in FAULTS:
            raise InvalidArgument(f'unknown fault "{str(fault)[:40]}"; use one of {", ".join(FAULTS)}')
        if fault == "drop-response":
            return 200, self._arm_drop(body)
        if fault in DEPLOYMENT_FAULTS:
            return 200, self._deployment_fault(body)
        if not isinstance(body.get("jobId"), str) or not body["jobId"]:
            raise InvalidArgument(f'send {{"jobId": "...", "fault": "{fault}"}}')
        job_id = self._known_job_id(body["jobId"])
        return 200, self._job(request, self._job_fault(job_id, fault, body))

    def _deployment_fault(self, body: dict[str, Any]) -> dict[str, Any]:
        deployment_id, message = body.get("deploymentId"), body.get("message")
        if not isinstance(deployment_id, str) or not deployment_id:
            raise InvalidArgument('send {"deploymentId": "...", "fault": "fail-deployment"}')
        if message is not None and not isinstance(message, str):
            raise InvalidArgument('"message" must be a string')
        return self.store.deployments.fail(deployment_id, message)

    def _arm_drop(self, body: dict[str, Any]) -> dict[str, Any]:
        operation, count = body.get("operation"), body.get("count", 1)
        if operation not in DROP_OPERATIONS:
            raise InvalidArgument(f'"operation" must be one of {", ".join(DROP_OPERATIONS)}')
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise InvalidArgument('"count" must be a non-negative integer')
        return self.store.arm_drop(operation, count)

    def _job_fault(self, job_id: str, fault: str, body: dict[str, Any]) -> dict[str, Any]:
        message, period, off = body.get("message"), body.get("period", DEFAULT_FLAP_PERIOD_S), body.get("off", False)
        if message is not None and not isinstance(message, str):
            raise InvalidArgument('"message" must be a string')
        if isinstance(period, bool) or not isinstance(period, (int, float)) or not 0 < period < float("inf"):
            raise InvalidArgument('"period" must be a positive number of seconds')
        if not isinstance(off, bool):
            raise InvalidArgument('"off" must be a boolean')
        return self.store.job_fault(fault, job_id, message=message, period=float(period), off=off)


def _full_state(value: str) -> str:
    """``RUNNING`` and ``JOB_STATE_RUNNING`` both name the running state."""
    return value if value.startswith("JOB_STATE_") else f"JOB_STATE_{value}"


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Client Closed Request" if status == 499 else "Error"


def make_app(
    store: Store,
    *,
    api_key: str = "local",
    superuser_keys: Iterable[str] = (),
    echo_create_fields: bool = False,
    latency_ms: float = 0,
    error_rate: float = 0.0,
    rate_limit_rate: float = 0.0,
    retry_after_s: int = 1,
    max_body_bytes: int = 1 << 20,
    seed: int | None = None,
) -> EmulatorApp:
    """The emulator's WSGI app over ``store``.

    ``api_key`` is the customer key; ``superuser_keys`` are also accepted on
    every route and may send the key-gated create parameters (PROTOCOL.md
    §6.4). ``echo_create_fields=True`` makes job responses echo everything
    sent (plus ``trainingShape`` and ``updateTime``) instead of only the fields
    the real API returns; it sets the view of ``store``. ``latency_ms``
    delays every API request; ``error_rate`` and ``rate_limit_rate`` are the
    probabilities of an injected 503 or 429 (``Retry-After: retry_after_s``);
    ``seed`` makes them reproducible. Bodies over ``max_body_bytes`` get 413.
    """
    superuser_keys = tuple(superuser_keys)
    if not api_key or not all(superuser_keys):
        raise ValueError("the emulator's keys must not be empty")
    store.echo_create_fields = bool(echo_create_fields)
    return EmulatorApp(
        store,
        api_key=api_key,
        superuser_keys=superuser_keys,
        latency_ms=latency_ms,
        error_rate=error_rate,
        rate_limit_rate=rate_limit_rate,
        retry_after_s=retry_after_s,
        max_body_bytes=max_body_bytes,
        seed=seed,
    )
