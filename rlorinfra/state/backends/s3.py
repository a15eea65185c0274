"""The S3 backend: the state as one object, fenced by its ETag, locked by a conditional create.

- The state is the object at ``key``, exactly the bytes ``encode_state`` writes;
  its ETag is the version. The previous content is copied to ``<key>.backup``
  before each overwrite.
- A write is ``PutObject`` with ``If-Match: <etag read>`` (``If-None-Match: *``
  when nothing was stored), so a run whose state moved underneath it gets
  ``StateChangedError`` from the store itself and writes nothing.
- The lock is the object ``<key>.lock``, created with ``If-None-Match: *`` and
  holding the holder's ``LockInfo``. S3 has no sessions, so the lock is a lease:
  the holder rewrites it every ``LEASE / 3`` seconds (``If-Match`` its ETag, a
  renewal counter in the body so the ETag changes). A run that finds it held
  watches its ETag; unchanged for longer than ``LEASE`` on the watcher's own
  monotonic clock (no clock skew between machines matters), the holder is dead
  or paused and the watcher deletes it (``If-Match`` that stale ETag: a holder
  renewing at the last moment keeps it) and takes its own. A paused holder thus
  loses its lock; when it resumes its renewal fails, and the state's ETag fence
  refuses its next write. ``force-unlock ID`` still removes a live holder's lock.
- On first use the backend proves the store refuses a second conditional create
  (some S3-compatible stores ignore the header); else it refuses to work, since
  such a store gives no mutual exclusion.

Credentials come only from boto3's own chain (the standard AWS environment);
they never reach a message: store errors are summarized by their code, never
echoed. boto3 is imported lazily, so rlorinfra works without the ``s3`` extra.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from rlorinfra.errors import StateError, StateLockedError
from rlorinfra.state.backend import StateBackend, Version, next_state, state_changed_error
from rlorinfra.state.codec import SUPPORTED_FORMAT_VERSION, decode_state, encode_state
from rlorinfra.state.lock import INITIAL_BACKOFF, MAX_BACKOFF, LockInfo, lock_held_error
from rlorinfra.state.model import State

# The store's answers to a conditional request whose condition failed (412), or that
# raced another conditional request on the same key (409): either way, someone else won.
_CONDITION_FAILED = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "412", "409"})
_MISSING = frozenset({"NoSuchKey", "404", "NotFound"})
ANSWER_TIMEOUT = 30.0  # seconds the store may take to accept a connection or answer a request
MAX_ATTEMPTS = 3  # per request, first try included: a silent store fails a call after about 3 timeouts
LEASE = 1.5  # seconds a lock object may go unrenewed before a waiting run may break it
RENEW_EVERY = LEASE / 3  # the holder renews this often: two renewals may fail before the lease runs out
WATCH_EVERY = 0.25  # a waiting run looks at the lock at least this often: a dead holder's lock frees within ~2 s


@dataclass(frozen=True)
class _Object:
    """An object's bytes and ETag."""

    body: bytes
    etag: str


# Conditional deletes force-unlock tries on a live holder's lock, which its renewals keep moving.
FORCE_UNLOCK_ATTEMPTS = 5


class S3Backend:
    """A ``StateBackend`` over the object ``s3://bucket/key`` (``endpoint_url``: an S3-compatible store)."""

    def __init__(
        self,
        *,
        bucket: str,
        key: str,
        region: str | None = None,
        endpoint_url: str | None = None,
        timeout: float = ANSWER_TIMEOUT,
        config_path: Path | None = None,
    ) -> None:
        self.bucket = bucket
        self.config_path = config_path  # only makes the force-unlock hint of a "locked" error exact
        self.timeout = timeout  # botocore's connect and read timeouts: a silent store fails, never hangs
        self.key = key
        self.region = region
        self.endpoint_url = endpoint_url
        self.backup_key = key + ".backup"
        self.lock_key = key + ".lock"
        self._client: Any = None
        self._proven = False
        self._guard = threading.Lock()  # one client, one probe, whatever thread comes first
        self._lease: _Lease | None = None  # the renewing thread of the lock this backend holds

    def __repr__(self) -> str:
        return f"S3Backend({self.describe()!r})"

    def describe(self) -> str:
        """``s3://BUCKET/KEY`` (``at HOST:PORT`` for an S3-compatible endpoint); never a credential."""
        where = f"s3://{self.bucket}/{self.key}"
        return f"{where} at {_endpoint_host(self.endpoint_url)}" if self.endpoint_url else where

    # -- state --------------------------------------------------------------------------------

    def read(self) -> tuple[State, Version]:
        """The stored state (``State()`` when there is none) and its ETag as the version."""
        stored = self._get(self.key)
        if stored is None:
            return State(), None
        return self._decode(stored.body), stored.etag

    def write(self, state: State, expected_version: Version) -> tuple[State, Version]:
        """Store ``state`` unless the object's ETag moved since ``expected_version`` (``StateChangedError``).

        Unchanged content writes nothing. The previous bytes go to ``<key>.backup`` first
        (so if the fenced put then loses a race, the backup still holds a state that was stored).
        """
        stored = self._fenced_get(expected_version)
        current = State() if stored is None else self._decode(stored.body)
        new = next_state(state, current)
        if new is None:
            return current, expected_version
        return new, self._replace(stored, encode_state(new), expected_version)

    def write_verbatim(self, state: State, expected_version: Version) -> Version:
        """Store ``state`` with its own serial and lineage unless the ETag moved (``StateChangedError``)."""
        stored = self._fenced_get(expected_version)
        data = encode_state(replace(state, format_version=SUPPORTED_FORMAT_VERSION))
        return self._replace(stored, data, expected_version)

    def close(self) -> None:
        """Nothing to release: boto3's client keeps no session that outlives a request."""

    def _fenced_get(self, expected: Version) -> _Object | None:
        """The stored object, or ``StateChangedError`` when its ETag is not ``expected``."""
        stored = self._get(self.key)
        found = None if stored is None else stored.etag
        if found != expected:
            raise state_changed_error(self.describe(), expected, found)
        return stored

    def _replace(self, stored: _Object | None, data: bytes, expected: Version) -> str:
        """Back up ``stored``, then put ``data`` conditionally on ``expected``; the new ETag."""
        # ``data`` is encoded before anything is written: a failure to encode writes nothing.
        if stored is not None:
            self._call("write the backup", "put_object", Key=self.backup_key, Body=stored.body)
        return self._put_state(data, expected)

    def _put_state(self, data: bytes, expected: Version) -> str:
        condition = {"IfNoneMatch": "*"} if expected is None else {"IfMatch": expected}
        try:
            response = self._call("write the state", "put_object", Key=self.key, Body=data, **condition)
        except (_ConditionFailed, _Missing):  # moved, or deleted (If-Match on a missing key: 404)
            now = self._get(self.key)
            if now is not None and now.body == data:
                return now.etag  # our own write, whose answer was lost and retried
            raise state_changed_error(self.describe(), expected, None if now is None else now.etag) from None
        return str(response["ETag"])

    def _decode(self, body: bytes) -> State:
        # Every strictness of the local file applies (``decode_state``); messages name bucket/key.
        return decode_state(body, Path(self.bucket) / self.key)

    # -- lock ---------------------------------------------------------------------------------

    def lock(self, operation: str, timeout: float) -> AbstractContextManager[LockInfo]:
        """Create ``<key>.lock`` (``If-None-Match: *``) for ``operation``, waiting up to ``timeout`` seconds."""
        return self._held(operation, max(0.0, float(timeout)))

    def lock_info(self) -> LockInfo | None:
        """The holder recorded in ``<key>.lock``, or None when nobody holds it."""
        held = self._get(self.lock_key)
        return None if held is None else self._holder(held)

    def force_unlock(self, lock_id: str) -> None:
        """Delete ``<key>.lock`` if its ID is ``lock_id``; ``StateError`` (nothing changed) otherwise.

        A live holder renews its lease (a new ETag) every third of a lease, which can
        land between our read and our conditional delete: then the lock is read again
        and, while it still carries ``lock_id``, the delete is retried on the new ETag.
        """
        held = self._get(self.lock_key)
        if held is None:
            raise StateError(
                "No lock to remove",
                f"{self.describe()} is not locked (there is no {self.lock_key}). Nothing was changed.",
            )
        self._check_lock_id(held, lock_id)
        for _ in range(FORCE_UNLOCK_ATTEMPTS):
            if self._delete_lock(held):
                return
            renewed = self._get(self.lock_key)
            if renewed is None:
                return  # its holder released it meanwhile: unlocked all the same
            if self._holder(renewed).id != lock_id:
                break  # another run holds it now: not ours to break
            held = renewed
        raise StateError(
            "The lock changed while it was being removed",
            f"{self.describe()} was unlocked or locked again by another run just now. Nothing was "
            "changed; run `rlorinfra force-unlock` again with the ID it shows if it is still stuck.",
        )

    def _check_lock_id(self, held: _Object, lock_id: str) -> None:
        """``StateError`` naming the real holder when ``held`` is not the lock ``lock_id``."""
        holder = self._holder(held)
        if holder.id != lock_id:
            raise StateError(
                "Lock ID does not match",
                f"{self.describe()} is locked with ID {holder.id}, not {lock_id}. Nothing was changed."
                f"\n\n{holder.describe()}\n\nIf you are sure that run is no longer active, run "
                f"`rlorinfra force-unlock {holder.id}`.",
            )

    @contextmanager
    def _held(self, operation: str, timeout: float) -> Iterator[LockInfo]:
        info = self._acquire(operation, timeout)
        try:
            yield info
        except BaseException:
            # The run's own error says what happened; a store that cannot be reached to remove
            # the lock must not replace it (the lock then stays: the next run names it).
            with suppress(StateError):
                self._release(info)
            raise
        self._release(info)

    def _acquire(self, operation: str, timeout: float) -> LockInfo:
        info = LockInfo.new(self.describe(), operation)
        body = (json.dumps(info.to_dict(), indent=2) + "\n").encode("utf-8")
        self._ready()  # the client and the store's probe first: ``timeout`` is for waiting on a holder only
        deadline = time.monotonic() + timeout
        delay = INITIAL_BACKOFF
        watch = _Watch()
        while True:
            mine, held = self._try_create_lock(body)
            if mine is not None:
                self._lease = _Lease(self, info, mine)
                return info
            if held is not None and watch.stale(held.etag, time.monotonic()):
                self._delete_lock(held)  # the holder stopped renewing: break it, unless it just renewed
                watch = _Watch()
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._locked_error(timeout, watch)
            if held is not None:  # gone already: try again at once
                time.sleep(min(delay, remaining, WATCH_EVERY))
                delay = min(delay * 2, MAX_BACKOFF)

    def _try_create_lock(self, body: bytes) -> tuple[str | None, _Object | None]:
        """(the new lock's ETag, None) when created; (None, the lock held, or None if it went meanwhile)."""
        try:
            response = self._call("create the lock", "put_object", Key=self.lock_key, Body=body, IfNoneMatch="*")
        except _ConditionFailed:
            held = self._get(self.lock_key)
            if held is not None and held.body == body:  # ours: a retried create whose answer was lost
                return held.etag, None
            return None, held
        return str(response["ETag"]), None

    def _locked_error(self, waited: float, watch: _Watch) -> StateError:
        held = self._get(self.lock_key)
        try:
            holder = None if held is None else self._holder(held)
        except StateError:
            holder = None
        error = lock_held_error(
            f"The state {self.describe()}",
            holder,
            waited,
            config_path=self.config_path,
            unavailable=f"{self.lock_key} is gone or unreadable",
        )
        seen = watch.last_renewal_seen(time.monotonic())
        renewed = f"This run saw the holder renew its lock {seen:.1f} s ago. " if seen is not None else ""
        lease = (
            f"\n\n{renewed}A live holder renews its lock every {RENEW_EVERY:g} s; the lock of a holder that died "
            f"or hangs frees itself {LEASE:g} s after its last renewal, so a --lock-timeout of "
            f"{LEASE + 1:g} s or more gets in then without force-unlock."
        )
        return StateLockedError(error.summary, error.detail + lease, holder=error.holder)

    def _release(self, info: LockInfo) -> None:
        lease, self._lease = self._lease, None
        if lease is not None:
            lease.stop(self.timeout)  # before the delete: no renewal may recreate the ETag it checks
        held = self._get(self.lock_key)
        # After a force-unlock the lock may be the next run's: leave it alone.
        if held is not None and _lock_id(held.body) == info.id:
            self._delete_lock(held)

    def _delete_lock(self, held: _Object) -> bool:
        """Delete the lock object if it is still ``held`` (its ETag); False when it changed or went."""
        # If-Match makes "it is still the one I checked" and the delete one step: a lock
        # taken by the next run in between is never removed.
        try:
            self._call("remove the lock", "delete_object", Key=self.lock_key, IfMatch=held.etag)
        except (_ConditionFailed, _Missing):
            return False
        return True

    def _holder(self, held: _Object) -> LockInfo:
        try:
            return LockInfo.from_dict(json.loads(held.body))
        except (ValueError, KeyError, TypeError):
            raise StateError(
                f"Cannot read the lock object {self.lock_key}",
                f"{self.describe()} is locked, but {self.lock_key} is not valid lock info, so its holder "
                f"and ID cannot be shown. If you are sure no rlorinfra run is active, delete "
                f"s3://{self.bucket}/{self.lock_key} by hand.",
            ) from None

    # -- the store ----------------------------------------------------------------------------

    def _get(self, key: str) -> _Object | None:
        try:
            response = self._call(f"read {key}", "get_object", Key=key)
        except _Missing:
            return None
        with response["Body"] as stream:
            return _Object(stream.read(), str(response["ETag"]))

    def _call(self, what: str, operation: str, **params: Any) -> Any:
        """``client.<operation>(Bucket=…, **params)``, store errors turned into ``StateError`` without secrets."""
        client = self._ready()
        try:
            return _translated(
                self._store_name(), what, lambda: getattr(client, operation)(Bucket=self.bucket, **params)
            )
        except _StoreSilent:
            # It went silent: the rest of this run (the lock's release, a last write) tries each
            # request once, so the run ends in a few timeouts instead of a few times MAX_ATTEMPTS.
            with self._guard:
                self._client = _make_client(self.region, self.endpoint_url, self.timeout, attempts=1)
            raise

    def _store_name(self) -> str:
        return f"the S3 endpoint {_endpoint_host(self.endpoint_url)}" if self.endpoint_url else "S3"

    def _ready(self) -> Any:
        """The client, made once; the store proved to enforce conditional writes before first use."""
        with self._guard:
            if self._client is None:
                self._client = _make_client(self.region, self.endpoint_url, self.timeout)
            if not self._proven:
                self._prove_conditional_writes(self._client)
                self._proven = True
            return self._client

    def _prove_conditional_writes(self, client: Any) -> None:
        # A unique key: two runs proving the same store at once must not see each other's probe.
        probe = f"{self.key}.probe-{uuid.uuid4()}"
        store = self._store_name()

        def create() -> bool:
            put = lambda: client.put_object(Bucket=self.bucket, Key=probe, Body=b"probe\n", IfNoneMatch="*")  # noqa: E731
            try:
                _translated(store, "create a probe object", put)
            except _ConditionFailed:
                return False
            return True

        try:
            create()
            second_refused = not create()
        finally:
            _translated(store, "remove the probe object", lambda: client.delete_object(Bucket=self.bucket, Key=probe))
        if not second_refused:
            raise self._no_mutual_exclusion()

    def _no_mutual_exclusion(self) -> StateError:
        return StateError(
            f"{self.describe()}: this store gives no mutual exclusion",
            f"{self._store_name()} accepted a second create of the same object with "
            "`If-None-Match: *`, so it ignores conditional writes: two runs could both take the "
            "lock and overwrite each other's state. Nothing was read or written. Use a store that "
            "supports S3 conditional writes (AWS S3, or an S3-compatible store with "
            "If-None-Match/If-Match support), or the `postgres` or `local` backend.",
        )


class _Watch:
    """A waiting run's view of a held lock: its ETag and, on this run's monotonic clock, since when."""

    def __init__(self) -> None:
        self.etag: str | None = None
        self.since = 0.0  # when this run first saw ``etag``
        self.changed: float | None = None  # when this run last saw the ETag change (a renewal)

    def stale(self, etag: str, now: float) -> bool:
        """Note ``etag`` seen at ``now``; True once the same ETag has been seen for longer than ``LEASE``."""
        if etag != self.etag:
            if self.etag is not None:
                self.changed = now
            self.etag, self.since = etag, now
            return False
        return now - self.since > LEASE

    def last_renewal_seen(self, now: float) -> float | None:
        """Seconds since this run saw the holder renew, or None if it never did."""
        return None if self.changed is None else now - self.changed


class _Lease:
    """Renews a held lock object every ``RENEW_EVERY`` seconds in a daemon thread, until stopped or lost."""

    def __init__(self, backend: S3Backend, info: LockInfo, etag: str) -> None:
        self.backend = backend
        self.info = info
        self.etag = etag
        self.renewals = 0
        self.lost = threading.Event()  # the lock was broken or force-unlocked: renewing stopped
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"s3-lock-lease-{info.id}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """Stop renewing; waits for a renewal in flight (bounded by the store's answer timeout)."""
        self._stop.set()
        self._thread.join(timeout + 1.0)

    def _run(self) -> None:
        while not self._stop.wait(RENEW_EVERY) and not self.lost.is_set():
            try:
                self._renew()
            except Exception:  # noqa: BLE001 - a store error is retried next tick; this thread never prints or dies
                continue

    def _renew(self) -> None:
        self.renewals += 1
        record = {**self.info.to_dict(), "lease_seconds": LEASE, "renewals": self.renewals, "renewed": _now()}
        body = (json.dumps(record, indent=2) + "\n").encode("utf-8")
        backend = self.backend
        try:
            response = backend._call("renew the lock", "put_object", Key=backend.lock_key, Body=body, IfMatch=self.etag)
        except (_ConditionFailed, _Missing):
            held = backend._get(backend.lock_key)
            if held is not None and held.body == body:  # our renewal landed; its answer was lost and retried
                self.etag = held.etag
                return
            self.lost.set()  # broken or force-unlocked: the state's ETag fences whatever this run writes next
            return
        self.etag = str(response["ETag"])


class _StoreSilent(StateError):
    """The store did not accept the connection or did not answer in time."""


class _ConditionFailed(Exception):
    """A conditional request lost: the object exists (If-None-Match) or moved (If-Match)."""


class _Missing(Exception):
    """The object does not exist."""


def _make_client(
    region: str | None, endpoint_url: str | None, timeout: float = ANSWER_TIMEOUT, attempts: int = MAX_ATTEMPTS
) -> Any:
    import boto3  # type: ignore[import-untyped]  # lazily: only this backend needs the `s3` extra
    from botocore.config import Config  # type: ignore[import-untyped]

    config = Config(
        connect_timeout=min(5.0, timeout),
        read_timeout=timeout,
        retries={"max_attempts": attempts, "mode": "standard"},
        # Checksums only where S3 requires them: many S3-compatible stores reject the newer defaults.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    try:
        return boto3.session.Session().client("s3", region_name=region, endpoint_url=endpoint_url, config=config)
    except Exception as exc:  # botocore's configuration errors share no base class worth naming
        raise StateError(
            "Cannot set up the S3 client",
            f"{type(exc).__name__}. Check `[state] region` and `endpoint_url` in the config and the "
            "standard AWS environment (AWS_PROFILE, AWS_REGION, ...).",
        ) from None


def _translated(store: str, what: str, call: Callable[[], Any]) -> Any:
    """Run ``call``; turn botocore errors into ``_ConditionFailed``, ``_Missing`` or a secret-free ``StateError``."""
    from botocore.exceptions import (  # type: ignore[import-untyped]
        BotoCoreError,
        ClientError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        ReadTimeoutError,
    )
    from botocore.exceptions import ConnectionError as BotoConnectionError

    try:
        return call()
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
        if code in _CONDITION_FAILED or status in ("412", "409"):
            raise _ConditionFailed() from None
        if code in _MISSING:
            raise _Missing() from None
        raise _client_error(store, what, code, status) from None
    except NoCredentialsError:
        raise StateError(
            f"Cannot {what}: no AWS credentials",
            "rlorinfra reads AWS credentials only from the standard AWS environment (environment "
            "variables, ~/.aws, an instance or task role). Set one up and run the command again.",
        ) from None
    except (ReadTimeoutError, ConnectTimeoutError):
        raise _StoreSilent(
            f"Cannot {what}: {store} stopped answering",
            f"{store} did not answer in time (the store is down, hung, or the network to it is cut). Check it "
            "and the network, then run the command again.",
        ) from None
    except (EndpointConnectionError, BotoConnectionError):
        raise _StoreSilent(
            f"Cannot {what}: {store} is unreachable",
            f"rlorinfra could not connect to {store}. Check the network and `[state] endpoint_url`, "
            "then run the command again. Nothing was changed by this attempt.",
        ) from None
    except BotoCoreError as exc:
        raise StateError(
            f"Cannot {what} on {store}", f"{type(exc).__name__}. Run the command again; nothing was changed."
        ) from None


def _client_error(store: str, what: str, code: str, status: str) -> StateError:
    """A ``StateError`` from a store's error code (never its message: it may quote request details)."""
    if code == "NoSuchBucket":
        return StateError(
            f"Cannot {what}: the bucket does not exist",
            f"{store} has no bucket by the name in `[state] bucket`. Create it (rlorinfra never creates "
            "buckets) or fix the name, then run the command again.",
        )
    if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403") or status == "403":
        return StateError(
            f"Cannot {what}: access denied ({code or status})",
            f"{store} refused the AWS credentials found in the standard AWS environment. They need "
            "s3:GetObject, s3:PutObject and s3:DeleteObject on the state key and its .backup, .lock "
            "and .probe-* siblings, and s3:ListBucket on the bucket (without it S3 answers a missing "
            "object, such as the lock when nobody holds it, with 403 instead of 404).",
        )
    return StateError(
        f"Cannot {what}: {store} answered {code or 'an error'} (HTTP {status or '?'})",
        "Run the command again; if it keeps failing, check the bucket and the store's status.",
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _lock_id(body: bytes) -> str | None:
    try:
        return str(json.loads(body)["id"])
    except (ValueError, KeyError, TypeError):
        return None


def _endpoint_host(endpoint_url: str | None) -> str:
    """``host:port`` of an endpoint URL: never its user info (a credential may hide there)."""
    parts = urlsplit(endpoint_url or "")
    host = parts.hostname or "?"
    return f"{host}:{parts.port}" if parts.port else host


if TYPE_CHECKING:  # mypy proves the class satisfies the protocol
    _CONFORMS: StateBackend = S3Backend(bucket="b", key="k")
