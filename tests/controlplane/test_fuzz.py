"""Property: whatever arrives, the emulator never answers 5xx (other than injected faults) or crashes."""

from __future__ import annotations

import io
import json
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rlorinfra.controlplane.app import make_app
from rlorinfra.controlplane.store import Store

SEGMENTS = st.sampled_from(
    [
        "v1",
        "accounts",
        "local",
        "fireworks",
        "other",
        "rlorTrainerJobs",
        "trainingShapes",
        "versions",
        "ts-qwen3-8b-policy",
        "v1",
        "v2",
        "j1",
        "j1:resume",
        "j1:cancel",
        "j1:explode",
        ":resume",
        "training",
        "api",
        "healthz",
        "_emulator",
        "faults",
        "",
        "..",
        "%2F",
        "A",
        "x" * 70,
    ]
)
PATHS = st.one_of(
    st.lists(SEGMENTS, max_size=9).map(lambda parts: "/" + "/".join(parts)),
    st.text(max_size=60).map(lambda t: "/" + t),
)
JSONISH = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20)),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
CREATE_KEYS = st.sampled_from(
    [
        "trainingConfig",
        "displayName",
        "nodeCount",
        "inactivityTimeout",
        "forwardOnly",
        "extraValues",
        "baseModel",
        "region",
        "acceleratorCount",
        "loraRank",
    ]
)
BODIES = st.one_of(
    st.binary(max_size=80),
    JSONISH.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(CREATE_KEYS, JSONISH, max_size=5).map(lambda d: json.dumps(d).encode()),
    st.dictionaries(st.sampled_from(["jobId", "fault", "message"]), JSONISH, max_size=3).map(
        lambda d: json.dumps(d).encode()
    ),
)
QUERY = st.dictionaries(
    st.sampled_from(
        [
            "pageSize",
            "pageToken",
            "filter",
            "orderBy",
            "trainingShape",
            "skipValidations",
            "rlorTrainerJobId",
            "deploymentId",
            "readMask",
            "x",
        ]
    ),
    st.one_of(
        st.text(max_size=30),
        st.sampled_from(
            ["true", "200", "-1", "latest_validated=true", "accounts/fireworks/trainingShapes/ts-qwen3-8b-policy"]
        ),
    ),
    max_size=4,
)
METHODS = st.sampled_from(["GET", "POST", "DELETE", "PUT", "PATCH", "HEAD", "OPTIONS", "FOO"])


def call(app, method: str, path: str, query: str, body: bytes, content_length: str | None) -> tuple[str, bytes]:
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "e",
        "SERVER_PORT": "80",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "HTTP_X_API_KEY": "local",
        "CONTENT_TYPE": "application/json",
    }
    if content_length is not None:
        environ["CONTENT_LENGTH"] = content_length
    seen = {}

    def start_response(status, headers, exc_info=None):
        seen["status"], seen["headers"] = status, headers

    payload = b"".join(app(environ, start_response))
    assert dict(seen["headers"])["Content-Length"] == str(len(payload))
    return seen["status"], payload


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory):
    """One world for the whole run: jobs created by one example persist into the next."""
    store = Store(tmp_path_factory.mktemp("fuzz") / "cp.sqlite3", provision_seconds=0.0, settle_seconds=0.0)
    store.create_job(
        {"trainingConfig": {"baseModel": "accounts/fireworks/models/qwen3-8b"}}, {"rlorTrainerJobId": "j1"}
    )
    return make_app(store, max_body_bytes=64)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=METHODS, path=PATHS, query=QUERY, body=BODIES, length=st.sampled_from([None, "auto", "", "abc", "-1"]))
def test_no_input_ever_gets_a_5xx(fuzz_app, caplog, method, path, query, body, length):
    app = fuzz_app
    content_length = str(len(body)) if length == "auto" else length
    status, payload = call(app, method, path, urlencode(query), body, content_length)
    code = int(status.split()[0])
    assert code < 500 and code not in (408, 429), (status, payload)
    document = json.loads(payload)
    if code >= 400:
        assert set(document["error"]) == {"code", "message", "status"}
        assert isinstance(document["error"]["code"], int)
    assert not [r for r in caplog.records if r.name == "rlorinfra.controlplane"], "an unexpected exception was hidden"
