"""A table of invalid configs: `rlorinfra validate` exits 1, names the key and job, leaves state alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_cli

MODEL = 'base_model = "accounts/fireworks/models/qwen3-8b"\n'
SHAPE = 'training_shape = "ts-qwen3-8b-policy"\n'
SECRET = "fw_3ZkqXabcdefghijklmnopqrstuv1234"


def job(*lines: str, name: str = "alpha", model: bool = True) -> str:
    """A ``[jobs."<name>"]`` block with a base model and the given lines."""
    return f'[jobs."{name}"]\n' + (MODEL if model else "") + "".join(line + "\n" for line in lines)


# (id, toml, key that must be named, job that must be named or None)
CASES = [
    ("lora-negative", job("lora_rank = -1"), "lora_rank", "alpha"),
    ("lora-bool", job("lora_rank = true"), "lora_rank", "alpha"),
    ("lora-huge", job("lora_rank = 2147483648"), "lora_rank", "alpha"),
    ("lora-enormous", job("lora_rank = 99999999999999999999999999999"), "lora_rank", "alpha"),
    ("lora-float", job("lora_rank = 1.5"), "lora_rank", "alpha"),
    ("context-zero", job("max_context_length = 0"), "max_context_length", "alpha"),
    ("context-huge", job("max_context_length = 10000001"), "max_context_length", "alpha"),
    ("lr-zero", job("learning_rate = 0"), "learning_rate", "alpha"),
    ("lr-negative", job("learning_rate = -1e-5"), "learning_rate", "alpha"),
    ("lr-nan", job("learning_rate = nan"), "learning_rate", "alpha"),
    ("lr-inf", job("learning_rate = inf"), "learning_rate", "alpha"),
    ("lr-string", job('learning_rate = "1e-5"'), "learning_rate", "alpha"),
    ("lr-date", job("learning_rate = 1979-05-27"), "learning_rate", "alpha"),
    ("nodes-zero", job('accelerator_type = "NVIDIA_H100_80GB"', "node_count = 0"), "node_count", "alpha"),
    ("accel-count-zero", job("accelerator_count = 0"), "accelerator_count", "alpha"),
    ("accel-type-format", job('accelerator_type = "nvidia-h100"'), "accelerator_type", "alpha"),
    ("replicas-zero", job("trainer_replica_count = 0"), "trainer_replica_count", "alpha"),
    ("resumes-negative", job("max_resumes = -1"), "max_resumes", "alpha"),
    ("desired-state", job('desired_state = "paused"'), "desired_state", "alpha"),
    ("region-unknown", job('region = "us-east"'), "region", "alpha"),
    ("region-case", job('region = "us_iowa_1"'), "region", "alpha"),
    ("timeout-too-long", job('inactivity_timeout = "4h"'), "inactivity_timeout", "alpha"),
    ("timeout-zero", job("inactivity_timeout = 0"), "inactivity_timeout", "alpha"),
    ("timeout-words", job('inactivity_timeout = "30 minutes"'), "inactivity_timeout", "alpha"),
    ("timeout-fraction", job('inactivity_timeout = "0.5h"'), "inactivity_timeout", "alpha"),
    ("timeout-seconds-over", job("inactivity_timeout = 10801"), "inactivity_timeout", "alpha"),
    ("timeout-bool", job("inactivity_timeout = true"), "inactivity_timeout", "alpha"),
    ("shape-bad-name", job('training_shape = "accounts/x/shapes/y"'), "training_shape", "alpha"),
    ("shape-space", job('training_shape = "bad shape"'), "training_shape", "alpha"),
    ("shape-with-accel-type", job(SHAPE, 'accelerator_type = "NVIDIA_H100_80GB"'), "accelerator_type", "alpha"),
    ("shape-with-accel-count", job(SHAPE, "accelerator_count = 8"), "accelerator_count", "alpha"),
    ("shape-with-nodes", job(SHAPE, "node_count = 2"), "node_count", "alpha"),
    ("shape-from-defaults", "[defaults]\n" + SHAPE + job("node_count = 2"), "node_count", "alpha"),
    ("gas-two", job("gradient_accumulation_steps = 2"), "gradient_accumulation_steps", "alpha"),
    ("extra-args-string", job('extra_args = "--foo"'), "extra_args", "alpha"),
    ("extra-args-int", job("extra_args = [1]"), "extra_args", "alpha"),
    ("extra-args-empty", job('extra_args = [""]'), "extra_args", "alpha"),
    ("skip-validations-string", job('skip_validations = "yes"'), "skip_validations", "alpha"),
    ("forward-only-int", job("forward_only = 1"), "forward_only", "alpha"),
    ("use-reservation-string", job('use_reservation = "true"'), "use_reservation", "alpha"),
    ("prevent-destroy-string", job('prevent_destroy = "no"'), "prevent_destroy", "alpha"),
    ("cbd-int", job("create_before_destroy = 0"), "create_before_destroy", "alpha"),
    ("custom-image-space", job('custom_image_tag = "has space"'), "custom_image_tag", "alpha"),
    ("reservation-int", job("reservation_target = 5"), "reservation_target", "alpha"),
    ("hot-load-int", job("hot_load_deployment_id = 7"), "hot_load_deployment_id", "alpha"),
    ("unknown-job-key", job("lora_rnak = 3"), "lora_rnak", "alpha"),
    ("camel-case-key", job("loraRank = 3"), "loraRank", "alpha"),
    ("display-name-key", job('display_name = "x"'), "display_name", "alpha"),
    ("api-key-in-job", job(f'api_key = "{SECRET}"'), "api_key", "alpha"),
    ("base-model-missing", job("lora_rank = 0", model=False), "base_model", "alpha"),
    ("base-model-empty", job('base_model = ""', model=False), "base_model", "alpha"),
    ("base-model-int", job("base_model = 42", model=False), "base_model", "alpha"),
    ("base-model-huge", job('base_model = "' + "a" * 2000 + '"', model=False), "base_model", "alpha"),
    ("job-not-table", '[jobs]\nbase_model = "x"\n', "base_model", "base_model"),
    ("name-too-long", job(name="n" * 64), "n" * 64, "n" * 64),
    ("name-padded", job(name=" padded"), " padded", " padded"),
    ("name-nfc-duplicate", job(name="caf\u00e9") + job(name="cafe\u0301"), "cafe\u0301", "cafe\u0301"),
    ("defaults-unknown", "[defaults]\nlearning_rat = 1e-5\n" + job(), "learning_rat", None),
    ("defaults-bad-value", "[defaults]\nlora_rank = -2\n" + job(), "lora_rank", None),
    ("defaults-not-table", "defaults = 1\n" + job(), "defaults", None),
    ("jobs-not-table", "jobs = 3\n", "jobs", None),
    ("top-level-unknown", "[job.alpha]\n" + MODEL, "job", None),
    ("cp-api-key", f'[control_plane]\napi_key = "{SECRET}"\n' + job(), "api_key", None),
    ("cp-api-key-env-secret", f'[control_plane]\napi_key_env = "{SECRET}"\n' + job(), "api_key_env", None),
    ("cp-api-key-env-bad", '[control_plane]\napi_key_env = "MY-KEY"\n' + job(), "api_key_env", None),
    ("cp-url-scheme", '[control_plane]\nurl = "ftp://example.com"\n' + job(), "control_plane.url", None),
    ("cp-url-credentials", '[control_plane]\nurl = "https://u:p@example.com"\n' + job(), "control_plane.url", None),
    ("cp-allow-insecure", '[control_plane]\nallow_insecure = "yes"\n' + job(), "allow_insecure", None),
    ("cp-account", '[control_plane]\naccount_id = "a/b"\n' + job(), "account_id", None),
    ("cp-gateway-local", '[control_plane]\ntrainer_gateway_url = "local"\n' + job(), "trainer_gateway_url", None),
    ("cp-unknown", '[control_plane]\nbase_url = "https://api.fireworks.ai"\n' + job(), "base_url", None),
    ("emulator-capacity", "[control_plane.emulator]\ncapacity = 0\n" + job(), "capacity", None),
    ("emulator-provision", "[control_plane.emulator]\nprovision_seconds = -1\n" + job(), "provision_seconds", None),
    ("emulator-unknown", "[control_plane.emulator]\nspeed = 1\n" + job(), "speed", None),
    ("state-path-int", "[state]\npath = 5\n" + job(), "state.path", None),
    ("state-path-self", '[state]\npath = "rlorinfra.toml"\n' + job(), "state.path", None),
    ("state-unknown", '[state]\ndir = "x"\n' + job(), "dir", None),
    ("toml-syntax", job("lora_rank = = 1"), "line 3", None),
    ("toml-duplicate-key", job("lora_rank = 1", "lora_rank = 2"), "line 4", None),
]


def test_table_is_big_enough():
    assert len(CASES) >= 40
    assert len({case[0] for case in CASES}) == len(CASES)


@pytest.mark.parametrize("toml,key,job_name", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_invalid_config_exits_1_names_key_and_job_and_leaves_state_alone(tmp_path: Path, toml, key, job_name):
    config = tmp_path / "rlorinfra.toml"
    config.write_text(toml, encoding="utf-8")
    before = sorted(p.name for p in tmp_path.iterdir())

    result = run_cli(["validate", "-f", config])  # no state file: none may be created
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert key in result.stderr, result.stderr
    if job_name is not None:
        assert f'job "{job_name}"' in result.stderr, result.stderr
    assert SECRET not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == before

    state = tmp_path / "rlorinfra.state.json"
    state.write_bytes(b'{"known": "bytes"}\n')  # an existing state file is never touched
    again = run_cli(["validate", "-f", config])
    assert again.exit_code == 1
    assert state.read_bytes() == b'{"known": "bytes"}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(before + ["rlorinfra.state.json"])


@pytest.mark.parametrize("toml,key,job_name", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_invalid_config_json_names_key(tmp_path: Path, toml, key, job_name):
    import json

    config = tmp_path / "rlorinfra.toml"
    config.write_text(toml, encoding="utf-8")
    result = run_cli(["validate", "-f", config, "--json"])
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["valid"] is False and doc["error_count"] >= 1
    errors = [d for d in doc["diagnostics"] if d["severity"] == "error"]
    assert any(key in (d["key"] or "") + d["summary"] or key == d["job"] for d in errors), errors
    if job_name is not None:
        assert any(d["job"] == job_name for d in errors), errors
    assert SECRET not in result.stdout
