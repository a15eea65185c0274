"""``[deployments.NAME]``: valid examples, the spec, and every error with its file, line, address and key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlorinfra.config.deployments import find_cycles, report_cycle
from rlorinfra.config.diagnostics import Collector
from rlorinfra.config.load import validate_bytes
from rlorinfra.config.model import DeploymentSpec, HotLoadTransition, ShapeSource
from tests.conftest import run_cli

MODEL = 'base_model = "accounts/fireworks/models/qwen3-8b"\n'
POLICY = "[jobs.grpo-policy]\n" + MODEL + 'training_shape = "ts-qwen3-8b-policy"\n'
SERVED = '[control_plane]\nurl = "https://api.fireworks.ai"\n'


def report(text: str, tmp_path: Path):
    """Validate ``text`` as the file ``tmp_path/rlorinfra.toml``."""
    return validate_bytes(text.encode(), tmp_path / "rlorinfra.toml", {})


def deployments(text: str, tmp_path: Path) -> dict[str, DeploymentSpec]:
    result = report(text, tmp_path)
    assert result.valid, [d.message() for d in result.errors]
    assert result.config is not None
    return result.config.deployments


def dep(*lines: str, name: str = "rollout", model: bool = True) -> str:
    return f"[deployments.{name}]\n" + (MODEL if model else "") + "".join(line + "\n" for line in lines)


# --------------------------------------------------------------------------- valid


def test_hot_load_trainer_on_a_shaped_job_takes_the_trainer_shape(tmp_path):
    spec = deployments(POLICY + dep('hot_load_trainer = "grpo-policy"'), tmp_path)["rollout"]
    assert spec.shape_source is ShapeSource.TRAINER and spec.deployment_shape is None
    assert spec.needs_trainer_shape
    assert spec.address == "deployment.rollout" and spec.depends_on == ("job.grpo-policy",)
    assert spec.spec() == {"base_model": "accounts/fireworks/models/qwen3-8b", "deployment_shape_from": "trainer",
                           "hot_load_trainer": "grpo-policy"}  # fmt: skip
    filled = spec.with_deployment_shape("accounts/fireworks/deploymentShapes/ds/versions/v1")
    assert not filled.needs_trainer_shape
    assert filled.spec()["deployment_shape"] == "accounts/fireworks/deploymentShapes/ds/versions/v1"
    assert "deployment_shape_from" not in filled.spec()


def test_every_field_and_the_canonical_spec(tmp_path):
    text = POLICY + dep(
        'hot_load_trainer = "grpo-policy"', 'deployment_shape = "ds-qwen3-8b"', "min_replica_count = 1",
        "max_replica_count = 3", 'region = "US_IOWA_1"', 'hot_load_transition = "SYNC"', "enable_hot_load = true",
        "disable_speculative_decoding = true", 'annotations = { team = "rl", a = "b" }', 'description = "rollouts"',
        "prevent_destroy = true", 'ttl = "1h30m"',
    )  # fmt: skip
    spec = deployments(text, tmp_path)["rollout"]
    assert spec.shape_source is ShapeSource.DECLARED
    assert spec.deployment_shape == "accounts/fireworks/deploymentShapes/ds-qwen3-8b"
    assert spec.hot_load_transition is HotLoadTransition.SYNC
    assert spec.ttl == 5400 and spec.prevent_destroy
    assert spec.spec() == {
        "annotations": {"a": "b", "team": "rl"}, "base_model": "accounts/fireworks/models/qwen3-8b",
        "deployment_shape": "accounts/fireworks/deploymentShapes/ds-qwen3-8b", "description": "rollouts",
        "disable_speculative_decoding": True, "hot_load_trainer": "grpo-policy", "hot_load_transition_type": "SYNC",
        "max_replica_count": 3, "min_replica_count": 1, "region": "US_IOWA_1",
    }  # fmt: skip
    assert list(spec.spec()) == sorted(spec.spec())


def test_defaults_spelled_out_make_the_same_spec(tmp_path):
    shape = 'deployment_shape = "accounts/me/deploymentShapes/s/versions/v2"'
    bare = deployments(dep(shape), tmp_path)["rollout"]
    spelled = deployments(dep(shape, "min_replica_count = 0", "max_replica_count = 1", 'hot_load_transition = "async"',
                              "enable_hot_load = true", "prevent_destroy = false"), tmp_path)["rollout"]  # fmt: skip
    assert (
        bare.spec()
        == spelled.spec()
        == {
            "base_model": "accounts/fireworks/models/qwen3-8b",
            "deployment_shape": "accounts/me/deploymentShapes/s/versions/v2",
        }
    )


def test_manual_path_with_accept_shapeless_risk(tmp_path):
    spec = deployments(dep('accelerator_type = "NVIDIA_H100_80GB"', "accept_shapeless_risk = true"), tmp_path)
    assert spec["rollout"].shape_source is ShapeSource.MANUAL
    assert spec["rollout"].spec()["accelerator_type"] == "NVIDIA_H100_80GB"


def test_superuser_fields_on_a_served_control_plane_are_warnings(tmp_path):
    text = SERVED + dep('deployment_shape = "ds"', 'extra_args = ["--a 1"]', 'extra_values = { k = "v" }',
                        "preemptible = true")  # fmt: skip
    result = report(text, tmp_path)
    assert result.valid
    assert {(w.key, w.address) for w in result.warnings} == {
        ("extra_args", "deployment.rollout"), ("extra_values", "deployment.rollout"),
        ("preemptible", "deployment.rollout")}  # fmt: skip
    assert result.config is not None and result.config.deployments["rollout"].spec()["extra_args"] == ["--a", "1"]


def test_jobs_stay_as_they_are_and_only_deployments_need_no_warning(tmp_path):
    result = report(dep('deployment_shape = "ds"'), tmp_path)
    assert result.valid and not result.warnings
    assert result.config is not None and result.config.jobs == {}


# --------------------------------------------------------------------------- invalid

# (id, toml, line, key); the address is always deployment.rollout
ERRORS = [
    ("bad-id", dep('deployment_shape = "ds"', name='"Roll_Out"'), 1, None),
    ("id-too-long", dep('deployment_shape = "ds"', name="a" * 64), 1, None),
    ("not-a-table", "[deployments]\nrollout = 3\n", 2, None),
    ("missing-model", dep('deployment_shape = "ds"', model=False), 1, "base_model"),
    ("bad-model", dep('deployment_shape = "ds"', model=False) + 'base_model = "qwen3-8b"\n', 3, "base_model"),
    ("unknown-key", dep('deployment_shape = "ds"', 'hot_load_transiton = "sync"'), 4, "hot_load_transiton"),
    ("alias-key", dep('deployment_shape = "ds"', 'trainer = "x"'), 4, "trainer"),
    (
        "unknown-trainer",
        POLICY + dep('hot_load_trainer = "grpo-polcy"', 'deployment_shape = "ds"'),
        6,
        "hot_load_trainer",
    ),
    ("shape-and-accel", dep('deployment_shape = "ds"', 'accelerator_type = "NVIDIA_H100_80GB"'), 4, "accelerator_type"),
    ("shape-and-risk", dep('deployment_shape = "ds"', "accept_shapeless_risk = true"), 4, "accept_shapeless_risk"),
    ("manual-no-risk", dep('accelerator_type = "NVIDIA_H100_80GB"'), 3, "accelerator_type"),
    ("no-shape-at-all", dep("max_replica_count = 1"), 1, None),
    ("unshaped-trainer", "[jobs.ref]\n" + MODEL + dep('hot_load_trainer = "ref"'), 5, "hot_load_trainer"),
    (
        "min-over-max",
        dep('deployment_shape = "ds"', "min_replica_count = 3", "max_replica_count = 2"),
        4,
        "min_replica_count",
    ),
    ("min-over-default-max", dep('deployment_shape = "ds"', "min_replica_count = 2"), 4, "min_replica_count"),
    ("negative-min", dep('deployment_shape = "ds"', "min_replica_count = -1"), 4, "min_replica_count"),
    ("negative-max", dep('deployment_shape = "ds"', "max_replica_count = -2"), 4, "max_replica_count"),
    ("bad-transition", dep('deployment_shape = "ds"', 'hot_load_transition = "eventually"'), 4, "hot_load_transition"),
    ("bad-shape", dep('deployment_shape = "accounts/x/trainingShapes/y"'), 3, "deployment_shape"),
    ("annotations-not-strings", dep('deployment_shape = "ds"', "annotations = { a = 1 }"), 4, "annotations"),
    ("annotations-array", dep('deployment_shape = "ds"', 'annotations = ["a"]'), 4, "annotations"),
    ("ttl-words", dep('deployment_shape = "ds"', 'ttl = "a day"'), 4, "ttl"),
    ("ttl-zero", dep('deployment_shape = "ds"', "ttl = 0"), 4, "ttl"),
    ("enable-hot-load-string", dep('deployment_shape = "ds"', 'enable_hot_load = "yes"'), 4, "enable_hot_load"),
    ("extra-args-local", dep('deployment_shape = "ds"', 'extra_args = ["--x"]'), 4, "extra_args"),
    ("extra-values-local", dep('deployment_shape = "ds"', 'extra_values = { a = "b" }'), 4, "extra_values"),
    ("preemptible-local", dep('deployment_shape = "ds"', "preemptible = true"), 4, "preemptible"),
    (
        "both-scopes",
        POLICY + 'hot_load_deployment_id = "rollout"\n' + dep('hot_load_trainer = "grpo-policy"'),
        7,
        "hot_load_trainer",
    ),
    ("api-key", dep('deployment_shape = "ds"', 'api_key = "fw_secret"'), 4, "api_key"),
    ("syntax", dep('deployment_shape = "ds"', "max_replica_count = "), 4, "max_replica_count"),
]


@pytest.mark.parametrize(("toml", "line", "key"), [c[1:] for c in ERRORS], ids=[c[0] for c in ERRORS])
def test_each_error_names_file_line_address_and_key(tmp_path, toml, line, key):
    result = report(toml, tmp_path)
    assert not result.valid
    errors = [e for e in result.errors if e.address is not None]
    assert len(errors) == 1, [e.message() for e in result.errors]
    (error,) = errors
    name = (
        toml.split("]", 1)[0].removeprefix("[deployments.").strip('"')
        if toml.startswith("[deployments.")
        else "rollout"
    )
    assert (error.file, error.line, error.address, error.key) == (str(tmp_path / "rlorinfra.toml"), line,
                                                                   f"deployment.{name}", key)  # fmt: skip
    assert error.message().startswith(f"{tmp_path / 'rlorinfra.toml'}:{line}: deployment.")


def test_did_you_mean_for_keys_and_trainers(tmp_path):
    result = report(POLICY + dep('hot_load_trainer = "grpo-polcy"', 'hot_load_transiton = "sync"'), tmp_path)
    hints = {e.key: e.detail for e in result.errors}
    assert hints == {
        "hot_load_trainer": 'Did you mean "grpo-policy"?',
        "hot_load_transiton": 'Did you mean "hot_load_transition"?',
    }


def test_all_problems_at_once_across_deployments(tmp_path):
    text = (dep('accelerator_type = "NVIDIA_H100_80GB"', "min_replica_count = 2", "max_replica_count = 1")
            + dep('deployment_shape = "ds"', 'colour = "red"', name="other"))  # fmt: skip
    result = report(text, tmp_path)
    assert [(e.address, e.key) for e in result.errors] == [
        ("deployment.rollout", "accelerator_type"), ("deployment.rollout", "min_replica_count"),
        ("deployment.other", "colour")]  # fmt: skip


def test_an_invalid_trainer_is_not_reported_twice_as_unknown(tmp_path):
    text = "[jobs.grpo-policy]\nlora_rank = -1\n" + MODEL + dep('hot_load_trainer = "grpo-policy"',
                                                                'deployment_shape = "ds"')  # fmt: skip
    result = report(text, tmp_path)
    assert [(e.job, e.key) for e in result.errors] == [("grpo-policy", "lora_rank")]


def test_validate_json_carries_the_address(tmp_path):
    path = tmp_path / "rlorinfra.toml"
    path.write_text(dep("max_replica_count = -1", 'deployment_shape = "ds"'))
    result = run_cli(["validate", "-f", path, "--json"])
    assert result.exit_code == 1
    (diagnostic,) = json.loads(result.stdout)["diagnostics"]
    assert (diagnostic["address"], diagnostic["key"], diagnostic["line"], diagnostic["job"]) == (
        "deployment.rollout",
        "max_replica_count",
        3,
        None,
    )


# --------------------------------------------------------------------------- cycles


def test_find_cycles_on_edges():
    assert find_cycles({"deployment.a": ("job.x",), "deployment.b": ("job.x",)}) == []
    edges = {"deployment.a": ("job.x",), "job.x": ("deployment.a",), "deployment.c": ("deployment.c",)}
    assert find_cycles(edges) == [("deployment.a", "job.x"), ("deployment.c",)]


def test_a_cycle_is_an_error_at_the_deployment(tmp_path):
    text = dep('deployment_shape = "ds"', 'hot_load_trainer = "x"')
    c = Collector(file="f.toml", text=text)
    report_cycle(("job.x", "deployment.rollout"), c)
    (error,) = c.diagnostics()
    assert (error.address, error.key, error.line) == ("deployment.rollout", "hot_load_trainer", 4)
    assert "job.x -> deployment.rollout -> job.x" in error.summary


# --------------------------------------------------------------------------- the docs

DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_docs_document_every_deployment_key_and_the_example_is_valid(tmp_path):
    from rlorinfra.config.deployments import DEPLOYMENT_RULES

    text = DOCS.read_text()
    section = text.split("## `[deployments.NAME]`", 1)[1].split("\n## ", 1)[0]
    for key in DEPLOYMENT_RULES:
        assert f"| `{key}` |" in section, key
    example = section.split("```toml\n", 1)[1].split("```", 1)[0]
    spec = deployments(example, tmp_path)["grpo-rollout"]
    assert spec.needs_trainer_shape and spec.ttl == 12 * 3600


def test_alias_hint_matches_the_docs(tmp_path):
    (error,) = report(dep('deployment_shape = "ds"', 'trainer = "x"'), tmp_path).errors
    assert error.detail == 'Did you mean "hot_load_trainer"?'
    assert '`trainer` gets `Did you mean "hot_load_trainer"?`' in DOCS.read_text()
