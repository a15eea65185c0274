"""Property: on any document the loader returns a Config or raises ConfigError, nothing else."""

from __future__ import annotations

import datetime
import string
from pathlib import Path

import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rlorinfra.config.fields import JOB_RULES
from rlorinfra.config.load import load_config_bytes, validate_bytes
from rlorinfra.config.model import Config
from rlorinfra.config.write import starter_config
from rlorinfra.errors import ConfigError

PATH = Path("/nonexistent-dir/rlorinfra.toml")
KNOWN_KEYS = [*JOB_RULES, "control_plane", "state", "defaults", "jobs", "url", "api_key_env", "account_id",
              "trainer_gateway_url", "allow_insecure", "emulator", "provision_seconds", "capacity", "path",
              "api_key"]  # fmt: skip
ENV = {"FIREWORKS_BASE_URL": "", "FIREWORKS_ACCOUNT_ID": ""}

keys = st.one_of(st.sampled_from(KNOWN_KEYS), st.text(max_size=12), st.text(min_size=60, max_size=70))
scalars = st.one_of(
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(),
    st.text(max_size=20),
    st.sampled_from(["local", "https://api.fireworks.ai", "http://example.com", "ts-qwen3-8b-policy",
                     "accounts/fireworks/trainingShapes/x", "NVIDIA_H100_80GB", "US_IOWA_1", "30m", "4h",
                     "running", "stopped", "fw_abcdefghijklmnopqrstuvwxyz", "", " "]),
    st.datetimes(),
    st.dates(),
    st.times(),
)  # fmt: skip
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=5)), max_leaves=8)  # fmt: skip
job_tables = st.dictionaries(
    st.sampled_from(list(JOB_RULES)) | keys, scalars | st.lists(scalars, max_size=3), max_size=8
)
documents = st.fixed_dictionaries({}, optional={
    "control_plane": st.dictionaries(keys, values, max_size=6),
    "state": st.dictionaries(st.sampled_from(["path"]) | keys, values, max_size=2),
    "defaults": job_tables,
    "jobs": st.dictionaries(keys, job_tables | scalars, max_size=4),
}) | st.dictionaries(keys, values, max_size=5)  # fmt: skip


# Plausible values per field (valid and invalid), so that many documents are valid.
PLAUSIBLE = {
    "base_model": st.sampled_from(["accounts/fireworks/models/qwen3-8b", ""]),
    "lora_rank": st.integers(-2, 70),
    "max_context_length": st.integers(-1, 10**7 + 1),
    "learning_rate": st.floats(-1, 1) | st.integers(-1, 3),
    "gradient_accumulation_steps": st.integers(0, 2),
    "node_count": st.integers(0, 4),
    "accelerator_type": st.sampled_from(["NVIDIA_H100_80GB", "nvidia", ""]),
    "accelerator_count": st.integers(0, 8),
    "training_shape": st.sampled_from(["ts-qwen3-8b-policy", "accounts/a/trainingShapes/s/versions/1", "", "a b"]),
    "inactivity_timeout": st.sampled_from(["30m", "1h30m", "4h", "0s", "1800s", 60, 0, -5]),
    "region": st.sampled_from(["US_IOWA_1", "us_iowa_1", "MARS_1", ""]),
    "extra_args": st.lists(st.sampled_from(["--a", "--b 1", "", " "]), max_size=3),
    "desired_state": st.sampled_from(["running", "stopped", "paused"]),
    "max_resumes": st.integers(-1, 1001),
    "trainer_replica_count": st.integers(0, 3),
}
plausible_jobs = st.fixed_dictionaries(
    {"base_model": PLAUSIBLE["base_model"]},
    optional={k: v for k, v in PLAUSIBLE.items() if k != "base_model"} | {
        k: st.booleans() for k, rule in JOB_RULES.items() if rule.type_doc == "boolean"},
)  # fmt: skip
plausible_documents = st.fixed_dictionaries({"jobs": st.dictionaries(st.text(min_size=1, max_size=8), plausible_jobs,
                                                                     max_size=3)},
                                            optional={"defaults": plausible_jobs})  # fmt: skip
OUTCOMES = {"config": 0, "error": 0}


def check(data: bytes) -> None:
    try:
        config = load_config_bytes(data, PATH, ENV)
    except ConfigError as err:
        assert err.problems or err.summary
        OUTCOMES["error"] += 1
        return
    OUTCOMES["config"] += 1
    assert isinstance(config, Config)
    report = validate_bytes(data, PATH, ENV)
    assert report.valid and report.to_json()["error_count"] == 0


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_random_toml_documents(doc):
    try:
        text = tomli_w.dumps(doc)
    except (TypeError, ValueError):
        return  # not representable as TOML (tomli_w refuses it): nothing to load
    check(text.encode("utf-8"))


@settings(max_examples=250, deadline=None)
@given(plausible_documents)
def test_plausible_documents(doc):
    before = OUTCOMES["config"]
    check(tomli_w.dumps(doc).encode("utf-8"))
    if OUTCOMES["config"] > before:  # a valid document: spec() works on every job
        config = load_config_bytes(tomli_w.dumps(doc).encode("utf-8"), PATH, ENV)
        for job in config.jobs.values():
            assert job.spec()["base_model"]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes(data):
    check(data)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=string.printable + "[]\"'=.#é\u0301", max_size=300))
def test_random_text(text):
    check(text.encode("utf-8"))


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_starter_config(data):
    raw = bytearray(starter_config().encode())
    for _ in range(data.draw(st.integers(1, 5))):
        position = data.draw(st.integers(0, len(raw) - 1))
        raw[position] = data.draw(st.integers(0, 255))
    check(bytes(raw))


def test_pathological_inputs():
    for data in (b"a = " + b"[" * 5000 + b"]" * 5000, b"x = 1" + b"0" * 5000,
                 b"[jobs.a]\nlora_rank = " + b"9" * 5000, b"[jobs.a]\nbase_model = 1979-05-27T07:32:00Z\n",
                 datetime.datetime.now().isoformat().encode()):  # fmt: skip
        check(data)
