"""Create-path rules: which path a job takes, what each path refuses, superuser keys, unset, enums.

Every refusal is one error naming the key, its line, the path and the way out
(rlorinfra/config/load.py ``_check_paths``; PROTOCOL.md §2.1, §4.3).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rlorinfra.config.diagnostics import ERROR, WARNING
from rlorinfra.config.fields import ACCELERATOR_TYPES
from rlorinfra.config.load import load_config_text, validate_config
from rlorinfra.config.model import JobSpec
from rlorinfra.model.jobs import create_path
from tests.conftest import run_cli

MODEL = "accounts/fireworks/models/qwen3-8b"
LOCAL = "local"
SERVED = "http://127.0.0.1:8765"  # a served emulator: not the embedded one
REMOTE = "https://api.fireworks.ai"
SERVE = "rlorinfra control-plane serve --superuser-key KEY"


def config_text(url: str, *lines: str, defaults: tuple[str, ...] = ()) -> str:
    """Line 1-2: [control_plane]; then [defaults] (if any); then [jobs.a] and base_model; then ``lines``."""
    head = f'[control_plane]\nurl = "{url}"\n'
    if defaults:
        head += "[defaults]\n" + "".join(line + "\n" for line in defaults)
    return head + f'[jobs.a]\nbase_model = "{MODEL}"\n' + "".join(line + "\n" for line in lines)


def report_of(text: str, tmp_path: Path):
    path = tmp_path / "rlorinfra.toml"
    path.write_text(text)
    return validate_config(path, {})


# ------------------------------------------------------------------ which path


@pytest.mark.parametrize("fields,path", [
    ({}, "auto"),
    ({"node_count": 2}, "auto"),  # node_count alone no longer selects the manual path
    ({"max_context_length": 4096}, "auto"),
    ({"accelerator_type": "NVIDIA_H100_80GB"}, "manual"),
    ({"accelerator_count": 8}, "manual"),
    ({"accelerator_type": "NVIDIA_H100_80GB", "accelerator_count": 8, "node_count": 2}, "manual"),
    ({"training_shape": "accounts/fireworks/trainingShapes/s"}, "shape"),
    ({"training_shape": "accounts/fireworks/trainingShapes/s", "accelerator_type": "NVIDIA_H100_80GB"}, "shape"),
])  # fmt: skip
def test_create_path_follows_the_sdk_managed_flow(fields, path):
    assert create_path(fields) == path
    assert JobSpec(display_name="a", base_model=MODEL, **fields).path == path


# ------------------------------------------------------------------ one error per refused field

# (id, url, job lines, [defaults] lines, key, line, fragments of the summary, fragments of the detail)
ERRORS = [
    ("shape-accelerator-type", LOCAL, ('training_shape = "ts"', 'accelerator_type = "NVIDIA_H100_80GB"'), (),
     "accelerator_type", 6, ("not allowed with training_shape", "shape path"), ('training_shape = ""', "Remove")),
    ("shape-accelerator-count", LOCAL, ('training_shape = "ts"', "accelerator_count = 8"), (),
     "accelerator_count", 6, ("not allowed with training_shape", "shape path"), ('training_shape = ""',)),
    ("shape-node-count", REMOTE, ('training_shape = "ts"', "node_count = 2"), (),
     "node_count", 6, ("not allowed with training_shape", "shape path"), ('training_shape = ""',)),
    ("shape-max-context", LOCAL, ('training_shape = "ts"', "max_context_length = 4096"), (),
     "max_context_length", 6, ("never sent on the shape path",),
     ("Remove max_context_length", "drop training_shape")),
    ("shape-max-context-from-defaults", REMOTE, ('training_shape = "ts"',), ("max_context_length = 4096",),
     "max_context_length", 4, ("(from [defaults])", "shape path"), ("Remove max_context_length",)),
    ("auto-node-count", LOCAL, ("node_count = 2",), (),
     "node_count", 5, ("never sent on the auto-shape path",),
     ("Remove node_count", "set training_shape", "accelerator_type and accelerator_count")),
    ("auto-node-count-from-defaults", REMOTE, (), ("node_count = 2",),
     "node_count", 4, ("(from [defaults])", "auto-shape path"), ("Remove node_count",)),
    ("auto-skip-validations", REMOTE, ("skip_validations = true",), (),
     "skip_validations", 5, ("never sent on the auto-shape path",),
     ("Remove skip_validations", "set training_shape")),
    ("local-manual-accelerator-type", LOCAL, ('accelerator_type = "NVIDIA_H100_80GB"', "skip_validations = true"),
     (), "accelerator_type", 5, ("manual path", "superuser", "customer key"), (SERVE, "training_shape")),
    ("local-manual-accelerator-count", LOCAL, ("accelerator_count = 8",), (),
     "accelerator_count", 5, ("manual path", "superuser"), (SERVE,)),
    ("local-manual-from-defaults", LOCAL, (), ('accelerator_type = "NVIDIA_H100_80GB"',),
     "accelerator_type", 4, ("(from [defaults])", "manual path"), (SERVE,)),
    ("local-extra-args", LOCAL, ('extra_args = ["--seed", "7"]',), (),
     "extra_args", 5, ("superuser", "customer key"), (SERVE,)),
    ("local-shape-skip-validations", LOCAL, ('training_shape = "ts"', "skip_validations = true"), (),
     "skip_validations", 6, ("superuser", "customer key"), (SERVE,)),
    ("remote-manual-without-skip-validations", REMOTE, ('accelerator_type = "NVIDIA_H100_80GB"',), (),
     "accelerator_type", 5, ("manual path", "skipValidations=true", "HTTP 400"),
     ("skip_validations = true", "training_shape")),
    ("served-manual-without-skip-validations", SERVED, ("accelerator_count = 8",), (),
     "accelerator_count", 5, ("manual path", "customer key"), ("skip_validations = true",)),
    ("remote-manual-skip-validations-false", REMOTE,
     ('accelerator_type = "NVIDIA_H100_80GB"', "skip_validations = false"), (),
     "accelerator_type", 5, ("manual path",), ("skip_validations = true",)),
]  # fmt: skip


@pytest.mark.parametrize("url,lines,defaults,key,line,summary,detail",
                         [case[1:] for case in ERRORS], ids=[case[0] for case in ERRORS])  # fmt: skip
def test_a_field_the_path_does_not_send_is_one_error(tmp_path, url, lines, defaults, key, line, summary, detail):
    report = report_of(config_text(url, *lines, defaults=defaults), tmp_path)
    assert not report.valid and report.config is None
    errors = [d for d in report.diagnostics if d.severity == ERROR]
    assert len(errors) == 1, errors
    (error,) = errors
    assert (error.job, error.key, error.line) == ("a", key, line)
    assert error.summary.startswith(key)
    for fragment in summary:
        assert fragment in error.summary, (fragment, error.summary)
    for fragment in detail:
        assert fragment in error.detail, (fragment, error.detail)


def test_the_way_out_of_a_path_error_is_valid(tmp_path):
    """Doing what the messages say loads: the manual path with skip_validations on a served emulator."""
    text = config_text(
        SERVED,
        'accelerator_type = "NVIDIA_H100_80GB"',
        "accelerator_count = 8",
        "node_count = 2",
        "max_context_length = 8192",
        "skip_validations = true",
    )
    config = load_config_text(text, tmp_path / "rlorinfra.toml", {})
    job = config.jobs["a"]
    assert job.path == "manual" and (job.node_count, job.max_context_length) == (2, 8192)
    assert config.warnings == ()


def test_the_cli_prints_the_path_error_with_file_line_and_way_out(tmp_path):
    path = tmp_path / "rlorinfra.toml"
    path.write_text(config_text(LOCAL, 'accelerator_type = "NVIDIA_H100_80GB"'))
    result = run_cli(["validate", "-f", path])
    assert result.exit_code == 1
    assert f'{path}:5: job "a": accelerator_type selects the manual path' in result.stderr
    assert SERVE in result.stderr


# ------------------------------------------------------------------ what stays allowed (and warns)


@pytest.mark.parametrize("url", [REMOTE, SERVED])
def test_manual_path_with_skip_validations_elsewhere_is_valid_and_extra_args_only_warns(tmp_path, url):
    report = report_of(
        config_text(
            url, 'accelerator_type = "NVIDIA_H100_80GB"', "skip_validations = true", 'extra_args = ["--seed", "7"]'
        ),
        tmp_path,
    )
    assert report.valid, report.errors
    (warning,) = [d for d in report.diagnostics if d.severity == WARNING]
    assert (warning.key, warning.line) == ("extra_args", 7)
    assert "superuser" in warning.summary


@pytest.mark.parametrize("url", [REMOTE, SERVED])
def test_shape_path_with_skip_validations_elsewhere_is_valid(tmp_path, url):
    report = report_of(config_text(url, 'training_shape = "ts"', "skip_validations = true"), tmp_path)
    assert report.valid and report.warnings == ()


def test_auto_path_with_max_context_length_is_valid_on_the_embedded_emulator(tmp_path):
    report = report_of(config_text(LOCAL, "max_context_length = 4096"), tmp_path)
    assert report.valid and report.config.jobs["a"].path == "auto"


# ------------------------------------------------------------------ unset


def test_unset_drops_defaults_from_one_job(tmp_path):
    text = f'''[defaults]
base_model = "{MODEL}"
training_shape = "ts-qwen3-8b-policy"
region = "US_VIRGINIA_1"
lora_rank = 16

[jobs.shape]

[jobs.auto]
unset = ["training_shape", "region"]
max_context_length = 4096

[jobs.empty-unset]
unset = []
'''
    jobs = load_config_text(text, tmp_path / "rlorinfra.toml", {}).jobs
    assert jobs["shape"].path == "shape" and jobs["shape"].region == "US_VIRGINIA_1"
    auto = jobs["auto"]
    assert auto.path == "auto" and auto.region is None and auto.lora_rank == 16
    assert auto.spec() == {"base_model": MODEL, "lora_rank": 16, "max_context_length": 4096}
    assert jobs["empty-unset"].spec() == jobs["shape"].spec()


def test_unset_of_a_default_shape_lets_a_job_take_the_manual_path(tmp_path):
    text = config_text(
        SERVED,
        'unset = ["training_shape"]',
        'accelerator_type = "NVIDIA_H100_80GB"',
        "skip_validations = true",
        defaults=('training_shape = "ts-qwen3-8b-policy"',),
    )
    job = load_config_text(text, tmp_path / "rlorinfra.toml", {}).jobs["a"]
    assert job.path == "manual" and job.training_shape is None


# (id, [defaults] lines, job lines, fragments of the summary, fragments of the detail)
UNSET_ERRORS = [
    ("not-an-array", ('region = "US_VIRGINIA_1"',), ('unset = "region"',),
     ("unset must be an array",), ('unset = ["region"]',)),
    ("not-strings", ('region = "US_VIRGINIA_1"',), ("unset = [1]",), ("unset must be an array",), ()),
    ("not-a-default", ('region = "US_VIRGINIA_1"',), ('unset = ["regin"]',),
     ('unset names "regin"', "[defaults] does not set"), ('Did you mean "region"?',)),
    ("not-a-default-no-suggestion", ('region = "US_VIRGINIA_1"',), ('unset = ["lora_rank"]',),
     ('unset names "lora_rank"',), ("[defaults] sets: region.",)),
    ("no-defaults-at-all", (), ('unset = ["region"]',), ('unset names "region"',), ("[defaults] sets: nothing.",)),
    ("set-and-unset", ('region = "US_VIRGINIA_1"',), ('unset = ["region"]', 'region = "EU_PARIS_1"'),
     ("region is both set and unset",), ("Remove region from unset",)),
]  # fmt: skip


@pytest.mark.parametrize("defaults,lines,summary,detail", [case[1:] for case in UNSET_ERRORS],
                         ids=[case[0] for case in UNSET_ERRORS])  # fmt: skip
def test_unset_errors(tmp_path, defaults, lines, summary, detail):
    text = config_text(REMOTE, *lines, defaults=defaults)
    report = report_of(text, tmp_path)
    errors = [d for d in report.diagnostics if d.severity == ERROR]
    assert len(errors) == 1, errors
    (error,) = errors
    unset_line = text.splitlines().index(lines[0]) + 1
    assert (error.job, error.key, error.line) == ("a", "unset", unset_line)
    for fragment in summary:
        assert fragment in error.summary, (fragment, error.summary)
    for fragment in detail:
        assert fragment in error.detail, (fragment, error.detail)


def test_unset_in_defaults_is_an_unknown_key(tmp_path):
    report = report_of('[defaults]\nunset = ["region"]\n', tmp_path)
    assert [d.key for d in report.errors] == ["defaults.unset"]


# ------------------------------------------------------------------ accelerator_type and base_model


@pytest.mark.parametrize("value", ACCELERATOR_TYPES)
def test_every_api_accelerator_type_is_accepted(tmp_path, value):
    text = config_text(REMOTE, f'accelerator_type = "{value}"', "skip_validations = true")
    assert load_config_text(text, tmp_path / "x.toml", {}).jobs["a"].accelerator_type == value


@pytest.mark.parametrize("value,hint", [
    ("nvidia_h100_80gb", 'Did you mean "NVIDIA_H100_80GB"?'),
    ("NVIDIA_H100_80G", 'Did you mean "NVIDIA_H100_80GB"?'),
    ("NVIDIA_H100", 'Did you mean "NVIDIA_H100_80GB"?'),
    ("AMD_MI300X", 'Did you mean "AMD_MI300X_192GB"?'),
    ("ACCELERATOR_TYPE_UNSPECIFIED", ""),
    ("TPU_V5", "Valid types: NVIDIA_A100_80GB,"),
])  # fmt: skip
def test_accelerator_type_must_be_an_api_enum_value(tmp_path, value, hint):
    report = report_of(config_text(REMOTE, f'accelerator_type = "{value}"'), tmp_path)
    (error,) = report.errors
    assert (error.key, error.line) == ("accelerator_type", 5)
    assert "accelerator types" in error.summary and value in error.summary
    assert hint in error.detail
    if not hint:
        assert error.detail  # always some way out


def test_empty_accelerator_type_means_unset(tmp_path):
    job = load_config_text(config_text(LOCAL, 'accelerator_type = ""'), tmp_path / "x.toml", {}).jobs["a"]
    assert job.accelerator_type is None and job.path == "auto"


@pytest.mark.parametrize("value", [MODEL, "accounts/acme/models/m-1.5", "accounts/a_b/models/Qwen3.8B"])
def test_base_model_resource_names_are_accepted(tmp_path, value):
    text = f'[jobs.a]\nbase_model = "{value}"\n'
    assert load_config_text(text, tmp_path / "x.toml", {}).jobs["a"].base_model == value


@pytest.mark.parametrize("value,hint", [
    ("qwen3-8b", 'Did you mean "accounts/fireworks/models/qwen3-8b"?'),
    ("llama-v3p1-8b-instruct", 'Did you mean "accounts/fireworks/models/llama-v3p1-8b-instruct"?'),
    ("models/qwen3-8b", "full resource name, e.g. accounts/fireworks/models/qwen3-8b"),
    ("accounts/fireworks/qwen3-8b", "full resource name"),
    ("accounts/fireworks/models/qwen3-8b/versions/1", "full resource name"),
    ("accounts//models/qwen3-8b", "full resource name"),
])  # fmt: skip
def test_base_model_must_be_a_resource_name(tmp_path, value, hint):
    report = report_of(f'[jobs.a]\nbase_model = "{value}"\n', tmp_path)
    (error,) = report.errors
    assert (error.job, error.key, error.line) == ("a", "base_model", 2)
    assert "accounts/<account>/models/<model>" in error.summary
    assert hint in error.detail


def test_a_bare_base_model_in_defaults_is_reported_once(tmp_path):
    report = report_of('[defaults]\nbase_model = "qwen3-8b"\n[jobs.a]\n[jobs.b]\n', tmp_path)
    assert [(d.key, d.line) for d in report.errors] == [("defaults.base_model", 2)]
    assert 'Did you mean "accounts/fireworks/models/qwen3-8b"?' in report.errors[0].detail
