"""Valid configs load into the dataclasses: defaults merge, env overrides, warnings, paths, --json."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from rlorinfra.config.durations import format_duration, parse_duration
from rlorinfra.config.load import load_config, load_config_bytes, load_config_text, validate_config
from rlorinfra.config.model import Config, JobSpec
from rlorinfra.errors import ConfigError
from tests.conftest import run_cli

MODEL = "accounts/fireworks/models/qwen3-8b"
SHAPE = "accounts/fireworks/trainingShapes/ts-qwen3-8b-policy"

FULL = f'''
[control_plane]
url = "https://api.fireworks.ai/"
api_key_env = "MY_FIREWORKS_KEY"
account_id = "my-account"
trainer_gateway_url = "https://gateway.example.com"
allow_insecure = false

[control_plane.emulator]
provision_seconds = 0.5
capacity = 64

[state]
path = "states/prod.state.json"

[defaults]
learning_rate = 2e-5
prevent_destroy = true
region = "US_VIRGINIA_1"

[jobs.grpo-policy-trainer]
base_model = "{MODEL}"
lora_rank = 0
training_shape = "ts-qwen3-8b-policy"
inactivity_timeout = "1h30m"
trainer_replica_count = 2
desired_state = "running"

[jobs."reference model"]
base_model = "{MODEL}"
training_shape = "accounts/acme/trainingShapes/ref/versions/v3"
forward_only = true
prevent_destroy = false
desired_state = "stopped"
max_resumes = 0

[jobs.manual]
base_model = "{MODEL}"
accelerator_type = "NVIDIA_H100_80GB"
accelerator_count = 8
node_count = 2
max_context_length = 8192
extra_args = ["--foo 1", "--bar"]
custom_image_tag = "v1.2.3"
skip_validations = true
use_reservation = false
reservation_target = "team-reservation"
create_before_destroy = true
learning_rate = 1
'''


def load(text: str, tmp_path: Path, env: dict[str, str] | None = None) -> Config:
    return load_config_text(text, tmp_path / "rlorinfra.toml", env or {})


def errors_of(text: str, tmp_path: Path, env: dict[str, str] | None = None) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as info:
        load(text, tmp_path, env)
    return info.value.problems


def test_full_example_round_trips_through_the_dataclasses(tmp_path):
    config = load(FULL, tmp_path)
    cp = config.control_plane
    assert cp.url == "https://api.fireworks.ai"  # trailing slash dropped
    assert (cp.api_key_env, cp.account_id, cp.trainer_gateway_url) == (
        "MY_FIREWORKS_KEY",
        "my-account",
        "https://gateway.example.com",
    )
    assert not cp.is_local and cp.allow_insecure is False
    assert (cp.emulator.provision_seconds, cp.emulator.capacity) == (0.5, 64)
    assert config.state_path == (tmp_path / "states" / "prod.state.json").resolve()
    assert config.path == (tmp_path / "rlorinfra.toml").resolve()
    assert list(config.jobs) == ["grpo-policy-trainer", "reference model", "manual"]  # file order

    grpo = config.jobs["grpo-policy-trainer"]
    assert grpo == JobSpec(
        display_name="grpo-policy-trainer",
        base_model=MODEL,
        lora_rank=0,
        learning_rate=2e-5,
        training_shape=SHAPE,
        inactivity_timeout=5400,
        trainer_replica_count=2,
        region="US_VIRGINIA_1",
        prevent_destroy=True,
    )
    assert grpo.path == "shape"
    ref = config.jobs["reference model"]
    assert ref.training_shape == "accounts/acme/trainingShapes/ref/versions/v3"
    assert (ref.forward_only, ref.prevent_destroy, ref.desired_state, ref.max_resumes) == (True, False, "stopped", 0)

    manual = config.jobs["manual"]
    assert manual.path == "manual"
    assert manual.extra_args == ("--foo", "1", "--bar")
    assert manual.learning_rate == 1.0 and isinstance(manual.learning_rate, float)
    assert manual.spec() == {
        "accelerator_count": 8,
        "accelerator_type": "NVIDIA_H100_80GB",
        "base_model": MODEL,
        "custom_image_tag": "v1.2.3",
        "extra_args": ["--foo", "1", "--bar"],
        "learning_rate": 1.0,
        "max_context_length": 8192,
        "node_count": 2,
        "region": "US_VIRGINIA_1",
        "reservation_target": "team-reservation",
        "skip_validations": True,
        "use_reservation": False,
    }
    assert manual.create_before_destroy is True


def test_digest_is_sha256_of_the_file_bytes(tmp_path):
    path = tmp_path / "rlorinfra.toml"
    path.write_text(FULL)
    config = load_config(path, {})
    assert config.digest == hashlib.sha256(FULL.encode()).hexdigest()


def test_defaults_merge_under_every_job_and_job_value_wins(tmp_path):
    config = load(
        f'''
[defaults]
base_model = "{MODEL}"
learning_rate = 3e-5
lora_rank = 16
[jobs.a]
[jobs.b]
lora_rank = 8
''',
        tmp_path,
    )
    assert (config.jobs["a"].lora_rank, config.jobs["a"].learning_rate) == (16, 3e-5)
    assert (config.jobs["b"].lora_rank, config.jobs["b"].learning_rate) == (8, 3e-5)
    assert config.jobs["b"].base_model == MODEL


def test_empty_training_shape_in_a_job_overrides_a_default_shape(tmp_path):
    config = load(
        f'''
[control_plane]
url = "http://127.0.0.1:8765"
[defaults]
training_shape = "ts-qwen3-8b-policy"
[jobs.shape]
base_model = "{MODEL}"
[jobs.manual]
base_model = "{MODEL}"
training_shape = ""
accelerator_type = "NVIDIA_H100_80GB"
skip_validations = true
''',
        tmp_path,
    )
    assert config.jobs["shape"].path == "shape"
    assert config.jobs["manual"].path == "manual"
    assert config.jobs["manual"].spec()["node_count"] == 1


def test_every_problem_is_reported_at_once_with_file_job_key_and_line(tmp_path):
    problems = errors_of(
        f'''[jobs.a]
base_model = "{MODEL}"
lora_rank = -1
max_context_length = 0

[jobs.b]
base_model = "{MODEL}"
desired_state = "gone"
''',
        tmp_path,
    )
    assert len(problems) == 3
    file = str(tmp_path / "rlorinfra.toml")
    assert problems[0].startswith(f'{file}:3: job "a": lora_rank ')
    assert problems[1].startswith(f'{file}:4: job "a": max_context_length ')
    assert problems[2].startswith(f'{file}:8: job "b": desired_state ')


def test_config_error_summary_counts_problems_and_detail_lists_them(tmp_path):
    with pytest.raises(ConfigError) as info:
        load("[jobs.a]\nlora_rank = -1\n", tmp_path)
    err = info.value
    assert err.summary.startswith("Invalid configuration: 2 problems")
    for problem in err.problems:
        assert problem in err.detail


def test_line_of_a_key_in_an_inline_table_falls_back_to_the_job(tmp_path):
    problems = errors_of(f'[jobs]\na = {{ base_model = "{MODEL}", lora_rank = -1 }}\n', tmp_path)
    assert problems[0].startswith(str(tmp_path / "rlorinfra.toml") + ':2: job "a": lora_rank')


def test_unknown_keys_suggest_the_closest_key(tmp_path):
    problems = "\n".join(
        errors_of(
            f'''
[control_plane]
acount_id = "x"
[jobs.a]
base_model = "{MODEL}"
learning_rat = 1e-5
trainingShape = "ts"
''',
            tmp_path,
        )
    )
    assert 'unknown key "acount_id"' in problems and 'Did you mean "account_id"?' in problems
    assert 'Did you mean "learning_rate"?' in problems
    assert 'Did you mean "training_shape"?' in problems


def test_api_key_in_the_file_is_an_error_that_never_echoes_the_value(tmp_path):
    secret = "fw_supersecretvalue1234567890"
    for text in (
        f'api_key = "{secret}"\n',
        f'[control_plane]\napi_key = "{secret}"\n',
        f'[control_plane]\napi_key_env = "{secret}"\n',
    ):
        problems = "\n".join(errors_of(text, tmp_path))
        assert secret not in problems
        assert "environment variable" in problems


@pytest.mark.parametrize("url", ["http://127.0.0.1:8765", "http://localhost:1/", "https://example.com/proxy"])
def test_urls_that_need_no_allow_insecure(tmp_path, url):
    assert load(f'[control_plane]\nurl = "{url}"\n', tmp_path).control_plane.url == url.rstrip("/")


def test_allow_insecure_permits_plain_http_to_a_remote_host(tmp_path):
    text = '[control_plane]\nurl = "http://fireworks.internal"\nallow_insecure = true\n'
    config = load(text, tmp_path)
    assert config.control_plane.url == "http://fireworks.internal"
    assert not [w for w in config.warnings if "plain http" in w]


def test_plain_http_to_a_remote_host_is_a_warning_not_an_error(tmp_path):
    # The client refuses it at connect time unless --insecure; validate only warns.
    config = load('[control_plane]\nurl = "http://fireworks.internal"\n', tmp_path)
    assert any("plain http" in w for w in config.warnings)


def test_env_overrides_replace_url_account_and_gateway(tmp_path):
    env = {
        "FIREWORKS_BASE_URL": "https://proxy.example.com",
        "FIREWORKS_ACCOUNT_ID": "env-account",
        "FIREWORKS_TRAINER_GATEWAY_URL": "https://gw.example.com",
    }
    cp = load(FULL, tmp_path, env).control_plane
    assert (cp.url, cp.account_id, cp.trainer_gateway_url) == (
        "https://proxy.example.com",
        "env-account",
        "https://gw.example.com",
    )


def test_empty_env_overrides_are_ignored_and_local_is_allowed(tmp_path):
    env = {"FIREWORKS_BASE_URL": "", "FIREWORKS_ACCOUNT_ID": ""}
    cp = load(FULL, tmp_path, env).control_plane
    assert (cp.url, cp.account_id) == ("https://api.fireworks.ai", "my-account")
    shape_only = f'[control_plane]\nurl = "https://api.fireworks.ai"\n[jobs.a]\nbase_model = "{MODEL}"\n'
    assert load(shape_only, tmp_path, {"FIREWORKS_BASE_URL": "local"}).control_plane.is_local


def test_a_local_env_override_is_checked_by_the_superuser_rules(tmp_path):
    # FULL's manual job is fine on the real API (skip_validations = true) but not on the
    # embedded emulator, whose key is a customer key: the override feeds the path rules.
    problems = "\n".join(errors_of(FULL, tmp_path, {"FIREWORKS_BASE_URL": "local"}))
    assert 'job "manual": accelerator_type selects the manual path' in problems
    assert "rlorinfra control-plane serve --superuser-key KEY" in problems


def test_bad_env_override_names_the_variable(tmp_path):
    problems = errors_of("", tmp_path, {"FIREWORKS_BASE_URL": "not a url"})
    assert "control_plane.url (from FIREWORKS_BASE_URL)" in problems[0]


def test_defaults_when_tables_are_absent(tmp_path):
    config = load(f'[jobs.a]\nbase_model = "{MODEL}"\n', tmp_path)
    cp = config.control_plane
    assert cp.is_local and cp.api_key_env == "FIREWORKS_API_KEY" and cp.account_id is None
    assert config.state_path == (tmp_path / "rlorinfra.state.json").resolve()
    job = config.jobs["a"]
    assert job == JobSpec(display_name="a", base_model=MODEL)
    assert job.spec() == {"base_model": MODEL}
    assert job.path == "auto"


def test_state_path_default_follows_the_config_stem_and_absolute_paths_stay(tmp_path):
    config = load_config_text("", tmp_path / "prod.toml", {})
    assert config.state_path == (tmp_path / "prod.state.json").resolve()
    absolute = tmp_path / "elsewhere" / "s.json"
    config = load(f'[state]\npath = "{absolute}"\n', tmp_path)
    assert config.state_path == absolute.resolve()


def test_empty_file_is_valid_with_a_no_jobs_warning(tmp_path):
    config = load("", tmp_path)
    assert config.jobs == {}
    assert any("no jobs declared" in w for w in config.warnings)


@pytest.mark.parametrize(
    "lines,expected",
    [
        ("gradient_accumulation_steps = 1", "gradient_accumulation_steps is deprecated"),
        ('hot_load_deployment_id = "dep"', "hot_load_deployment_id is deprecated"),
    ],
)
def test_warnings(tmp_path, lines, expected):
    config = load(f'[jobs.a]\nbase_model = "{MODEL}"\n{lines}\n', tmp_path)
    assert any(expected in w and 'job "a"' in w for w in config.warnings), config.warnings


def test_gradient_accumulation_steps_is_never_in_the_spec(tmp_path):
    job = load(f'[jobs.a]\nbase_model = "{MODEL}"\ngradient_accumulation_steps = 1\n', tmp_path).jobs["a"]
    assert job.gradient_accumulation_steps == 1
    assert "gradient_accumulation_steps" not in job.spec()


def test_hot_load_deployment_id_is_kept_in_the_spec(tmp_path):
    job = load(f'[jobs.a]\nbase_model = "{MODEL}"\nhot_load_deployment_id = "dep"\n', tmp_path).jobs["a"]
    assert job.spec()["hot_load_deployment_id"] == "dep"


def test_manual_path_on_the_real_api_needs_skip_validations_and_extra_args_warns(tmp_path):
    text = (
        f'[control_plane]\nurl = "https://api.fireworks.ai"\n[jobs.a]\nbase_model = "{MODEL}"\n'
        'accelerator_type = "NVIDIA_H100_80GB"\nextra_args = ["--seed", "7"]\n'
    )
    problems = "\n".join(errors_of(text, tmp_path))
    assert "accelerator_type selects the manual path" in problems and "skip_validations = true" in problems
    config = load(text + "skip_validations = true\n", tmp_path)
    assert config.jobs["a"].path == "manual"
    assert [w for w in config.warnings if "extra_args needs a superuser API key" in w]


def test_emulator_settings_with_a_remote_url_warn(tmp_path):
    text = '[control_plane]\nurl = "https://api.fireworks.ai"\n[control_plane.emulator]\ncapacity = 4\n'
    assert any("control_plane.emulator is ignored" in w for w in load(text, tmp_path).warnings)


@pytest.mark.parametrize("url", ["local", "http://127.0.0.1:8765", "http://localhost:9000", "http://[::1]:8765"])
def test_emulator_settings_are_used_locally_and_by_a_served_emulator(tmp_path, url):
    # `rlorinfra control-plane serve -f CONFIG` reads them for a loopback http:// URL.
    text = f'[control_plane]\nurl = "{url}"\n[control_plane.emulator]\ncapacity = 4\nprovision_seconds = 0\n'
    config = load(text, tmp_path)
    assert not any("control_plane.emulator" in w for w in config.warnings), config.warnings
    assert (config.control_plane.emulator.capacity, config.control_plane.emulator.provision_seconds) == (4, 0)


@pytest.mark.parametrize("value,seconds", [('"2m"', 120), ('"90s"', 90), ("30", 30), ('"1h"', 3600)])
def test_retry_budget(tmp_path, value, seconds):
    assert load(f"[control_plane]\nretry_budget = {value}\n", tmp_path).control_plane.retry_budget_s == seconds


def test_shape_versions_latest_is_the_unpinned_shape(tmp_path):
    text = f'[jobs.a]\nbase_model = "{MODEL}"\ntraining_shape = "accounts/fireworks/trainingShapes/s/versions/latest"\n'
    assert load(text, tmp_path).jobs["a"].training_shape == "accounts/fireworks/trainingShapes/s"


def test_display_name_of_63_characters_and_unicode_is_fine(tmp_path):
    name = "n" * 63
    config = load(f'[jobs."{name}"]\nbase_model = "{MODEL}"\n[jobs."caf\u00e9 ☕"]\nbase_model = "{MODEL}"\n', tmp_path)
    assert list(config.jobs) == [name, "caf\u00e9 ☕"]


@pytest.mark.parametrize("value,seconds", [
    ('"30m"', 1800), ('"1h"', 3600), ('"1800s"', 1800), ('"1h30m"', 5400), ("1800", 1800),
    ('"3h"', 10800), ('"1h0m1s"', 3601), ('"90"', 90),
])  # fmt: skip
def test_inactivity_timeout_formats(tmp_path, value, seconds):
    text = f'[jobs.a]\nbase_model = "{MODEL}"\ninactivity_timeout = {value}\n'
    job = load(text, tmp_path).jobs["a"]
    assert job.inactivity_timeout == seconds
    assert job.spec()["inactivity_timeout"] == seconds


@pytest.mark.parametrize("seconds", [1, 59, 60, 61, 3599, 3600, 3661, 5400, 10800])
def test_format_duration_parses_back(seconds):
    assert parse_duration(format_duration(seconds)) == seconds


def test_missing_file_suggests_init(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.toml", {})
    assert "No configuration file" in info.value.summary
    assert "rlorinfra init" in info.value.detail


def test_directory_and_binary_files_are_clean_errors(tmp_path):
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path, {})
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config_bytes(b"\xff\xfe\x00garbage", tmp_path / "x.toml", {})
    with pytest.raises(ConfigError, match="TOML syntax error"):
        load_config_bytes(b"\x00\x01\x02", tmp_path / "x.toml", {})


def test_utf8_bom_is_accepted(tmp_path):
    config = load_config_bytes(
        b"\xef\xbb\xbf" + f'[jobs.a]\nbase_model = "{MODEL}"\n'.encode(), tmp_path / "x.toml", {}
    )
    assert list(config.jobs) == ["a"]


def test_report_lists_warnings_and_errors_separately(tmp_path):
    path = tmp_path / "rlorinfra.toml"
    path.write_text(f'[jobs.a]\nbase_model = "{MODEL}"\ngradient_accumulation_steps = 1\nlora_rank = -1\n')
    report = validate_config(path, {})
    assert not report.valid and report.config is None
    assert [d.key for d in report.errors] == ["lora_rank"]
    assert [d.key for d in report.warnings] == ["gradient_accumulation_steps"]
    assert report.errors[0].line == 4 and report.errors[0].job == "a"


# --------------------------------------------------------------------------- the CLI


def test_validate_prints_success_summary_and_warnings(tmp_path):
    path = tmp_path / "rlorinfra.toml"
    path.write_text(
        f'[jobs.a]\nbase_model = "{MODEL}"\ngradient_accumulation_steps = 1\n'
        f'[jobs.b]\nbase_model = "{MODEL}"\ndesired_state = "stopped"\n'
    )
    result = run_cli(["validate", "-f", path])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "Success! The configuration is valid."
    assert "2 jobs (1 stopped), control plane: local (embedded emulator)." in result.stdout
    assert "Warning:" in result.stderr and "gradient_accumulation_steps" in result.stderr


def test_validate_defaults_to_rlorinfra_toml_in_the_current_folder(tmp_path):
    (tmp_path / "rlorinfra.toml").write_text(f'[jobs.a]\nbase_model = "{MODEL}"\n')
    result = run_cli(["validate"], cwd=tmp_path)
    assert result.exit_code == 0 and "1 job, control plane" in result.stdout


def test_validate_json_valid_document(tmp_path):
    path = tmp_path / "rlorinfra.toml"
    path.write_text(f'[jobs.a]\nbase_model = "{MODEL}"\nhot_load_deployment_id = "d"\n')
    result = run_cli(["validate", "-f", path, "--json"])
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert doc == {
        "format_version": 1, "valid": True, "error_count": 0, "warning_count": 1,
        "diagnostics": [{
            "severity": "warning", "summary": doc["diagnostics"][0]["summary"], "detail": "",
            "file": str(path), "job": "a", "key": "hot_load_deployment_id", "line": 3, "address": "job.a",
        }],
    }  # fmt: skip


def test_validate_json_invalid_document(tmp_path):
    path = tmp_path / "rlorinfra.toml"
    path.write_text(f'[jobs.a]\nbase_model = "{MODEL}"\nlora_rank = -1\nnode_count = 0\n')
    result = run_cli(["validate", "-f", path, "--json"])
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert (doc["valid"], doc["error_count"], doc["warning_count"]) == (False, 2, 0)
    assert set(doc["diagnostics"][0]) == {"severity", "summary", "detail", "file", "job", "key", "line", "address"}
    assert [(d["key"], d["line"]) for d in doc["diagnostics"]] == [("lora_rank", 3), ("node_count", 4)]


def test_validate_json_missing_file(tmp_path):
    result = run_cli(["validate", "-f", tmp_path / "nope.toml", "--json"])
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["valid"] is False and "rlorinfra init" in doc["diagnostics"][0]["detail"]


def test_validate_missing_file_error(tmp_path):
    result = run_cli(["validate", "-f", tmp_path / "nope.toml"])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: No configuration file at")
    assert "rlorinfra init" in result.stderr


def test_validate_imports_nothing_heavy(tmp_path):
    """`rlorinfra validate` must start fast: no httpx, deepdiff or sqlite3 on its path."""
    (tmp_path / "rlorinfra.toml").write_text(f'[jobs.a]\nbase_model = "{MODEL}"\n')
    code = (
        "import sys\n"
        "from rlorinfra.cli.common import run_cli\n"
        "from rlorinfra.cli.main import cli\n"
        "code = run_cli(cli, ['validate'])\n"
        "heavy = [m for m in ('httpx', 'deepdiff', 'sqlite3', 'tomli_w') if m in sys.modules]\n"
        "print(code, heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "0 []"


# --------------------------------------------------------------------------- the docs

DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_docs_full_example_is_valid(tmp_path):
    text = DOCS.read_text()
    example = text.split("```toml\n", 1)[1].split("```", 1)[0]
    config = load(example, tmp_path)
    assert list(config.jobs) == ["grpo-policy-trainer", "grpo reference", "manual-h100"]
    assert config.jobs["grpo reference"].prevent_destroy is False
    assert config.jobs["manual-h100"].extra_args == ("--seed", "7", "--log-level=debug")
    assert config.jobs["manual-h100"].path == "manual" and config.jobs["manual-h100"].skip_validations
    assert config.jobs["grpo reference"].region is None  # unset = ["region"]
    assert config.jobs["grpo-policy-trainer"].region == "US_VIRGINIA_1"
    assert [w for w in config.warnings if "extra_args" in w]  # superuser key on the real API


def test_docs_document_every_key():
    from rlorinfra.config.fields import JOB_RULES
    from rlorinfra.config.load import CONTROL_PLANE_KEYS, EMULATOR_KEYS, ENV_OVERRIDES, STATE_KEYS

    text = DOCS.read_text()
    for key in [*JOB_RULES, *CONTROL_PLANE_KEYS[:-1], *EMULATOR_KEYS, *STATE_KEYS, *ENV_OVERRIDES]:
        assert f"| `{key}` |" in text, key
