"""write.py: a rendered job block loads back to the same spec; `rlorinfra init` writes the starter."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlorinfra.config.fields import REGIONS
from rlorinfra.config.load import load_config, load_config_text
from rlorinfra.config.write import render_job_toml, starter_config
from rlorinfra.model.jobs import canonical_spec
from tests.conftest import run_cli

MODEL = "accounts/fireworks/models/qwen3-8b"
# A served emulator (loopback http://) is not the embedded one: the manual path, skip_validations
# and extra_args are allowed there (with skip_validations = true on the manual path), as on the real API.
HEADER = '[control_plane]\nurl = "http://127.0.0.1:8765"\n\n'

SPECS = {
    "shape": {"base_model": MODEL, "training_shape": "accounts/fireworks/trainingShapes/ts-qwen3-8b-policy"},
    "shape-versioned": {
        "base_model": MODEL, "training_shape": "accounts/acme/trainingShapes/s/versions/v7",
        "skip_validations": True, "lora_rank": 32, "trainer_replica_count": 4,
    },
    "manual": {
        "base_model": MODEL, "accelerator_type": "NVIDIA_H100_80GB", "accelerator_count": 8,
        "node_count": 2, "max_context_length": 8192, "custom_image_tag": "v1", "skip_validations": True,
    },
    "manual-default-nodes": {"base_model": MODEL, "accelerator_type": "NVIDIA_A100_80GB", "node_count": 1,
                             "skip_validations": True},
    "extra-args": {"base_model": MODEL, "extra_args": ["--foo", "1", "--bar=x"], "forward_only": True},
    "timeout": {"base_model": MODEL, "inactivity_timeout": 5400, "learning_rate": 3e-06},
    "timeout-odd": {"base_model": MODEL, "inactivity_timeout": 3661},
    "everything-else": {
        "base_model": MODEL, "region": "EU_PARIS_1", "hot_load_deployment_id": "dep-1",
        "use_reservation": False, "reservation_target": "res", "max_context_length": 1024,
    },
}  # fmt: skip
ON_THE_EMBEDDED_EMULATOR = ("shape", "timeout", "timeout-odd", "everything-else")


def loaded_spec(text: str, tmp_path: Path, name: str):
    config = load_config_text(HEADER + text, tmp_path / "rlorinfra.toml", {})
    return config.jobs[name]


@pytest.mark.parametrize("spec", SPECS.values(), ids=SPECS.keys())
@pytest.mark.parametrize("name", ["plain", "with space", 'caf\u00e9-"quoted"'])
def test_render_round_trips_to_the_same_spec(tmp_path, spec, name):
    block = render_job_toml(name, spec)
    assert loaded_spec(block, tmp_path, name).spec() == spec


@pytest.mark.parametrize("key", ON_THE_EMBEDDED_EMULATOR)
def test_render_round_trips_on_the_embedded_emulator(tmp_path, key):
    text = '[control_plane]\nurl = "local"\n\n' + render_job_toml("a", SPECS[key])
    assert load_config_text(text, tmp_path / "rlorinfra.toml", {}).jobs["a"].spec() == SPECS[key]


DEFAULTS = f'''[defaults]
base_model = "{MODEL}"
region = "US_VIRGINIA_1"
lora_rank = 16
training_shape = "ts-qwen3-8b-policy"

'''


@pytest.mark.parametrize("unset,spec", [
    (("region",), {"base_model": MODEL, "training_shape": "accounts/fireworks/trainingShapes/ts-qwen3-8b-policy",
                   "lora_rank": 16}),
    (("region", "lora_rank", "training_shape"), {"base_model": MODEL}),
    (("training_shape",), {"base_model": MODEL, "accelerator_type": "NVIDIA_H100_80GB", "accelerator_count": 8,
                           "node_count": 2, "skip_validations": True, "region": "US_VIRGINIA_1",
                           "lora_rank": 16}),
])  # fmt: skip
def test_render_unset_round_trips_under_defaults(tmp_path, unset, spec):
    own = {k: v for k, v in spec.items() if k not in ("base_model", "region", "lora_rank", "training_shape")}
    block = render_job_toml("a", own, unset=unset)
    assert tomllib.loads(block)["jobs"]["a"]["unset"] == list(unset)
    job = load_config_text(HEADER + DEFAULTS + block, tmp_path / "rlorinfra.toml", {}).jobs["a"]
    assert job.spec() == spec


def test_render_without_unset_writes_no_unset_key():
    assert "unset" not in render_job_toml("a", SPECS["shape"])


def test_render_includes_lifecycle_fields(tmp_path):
    block = render_job_toml("a", SPECS["manual"], lifecycle={"desired_state": "stopped", "prevent_destroy": True})
    job = loaded_spec(block, tmp_path, "a")
    assert job.spec() == SPECS["manual"]
    assert (job.desired_state, job.prevent_destroy) == ("stopped", True)


def test_render_writes_readable_toml():
    block = render_job_toml("grpo", SPECS["timeout"])
    assert block.startswith("[jobs.grpo]\nbase_model = ")
    assert 'inactivity_timeout = "1h30m"' in block


def test_render_refuses_unknown_fields():
    with pytest.raises(ValueError, match="bogus"):
        render_job_toml("a", {"base_model": MODEL, "bogus": 1})
    with pytest.raises(ValueError, match="lora_rank"):
        render_job_toml("a", {"base_model": MODEL}, lifecycle={"lora_rank": 1})


# Random valid specs: whatever the loader accepts must render and load back unchanged.
_specs = st.fixed_dictionaries(
    {"base_model": st.sampled_from([MODEL, "accounts/acme/models/m-1"])},
    optional={
        "lora_rank": st.integers(0, 2**31 - 1),
        "learning_rate": st.floats(1e-9, 10, allow_nan=False),
        "region": st.sampled_from(REGIONS),
        "custom_image_tag": st.from_regex(r"[a-z0-9.-]{1,20}", fullmatch=True),
        "extra_args": st.lists(st.from_regex(r"--[a-z]{1,8}(=[a-z0-9]{1,4})?", fullmatch=True), min_size=1,
                               max_size=4),
        "forward_only": st.just(True),
        "inactivity_timeout": st.integers(1, 10800),
        "use_reservation": st.just(False),
        "reservation_target": st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True),
        "trainer_replica_count": st.integers(1, 64),
        "hot_load_deployment_id": st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True),
    },
)  # fmt: skip
_paths = st.one_of(
    st.just({}),
    st.fixed_dictionaries({"training_shape": st.from_regex(
        r"accounts/[a-z]{1,6}/trainingShapes/[a-z0-9][a-z0-9-]{0,11}(/versions/v[0-9]{1,3})?", fullmatch=True)}),
    st.fixed_dictionaries({"accelerator_type": st.sampled_from(["NVIDIA_H100_80GB", "NVIDIA_B200_180GB"]),
                           "node_count": st.integers(1, 16), "skip_validations": st.just(True)},
                          optional={"accelerator_count": st.integers(1, 8),
                                    "max_context_length": st.integers(1, 10**7)}),
)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(spec=_specs, path=_paths, name=st.text(min_size=1, max_size=20).filter(lambda s: s == s.strip()))
def test_render_round_trip_property(tmp_path_factory, spec, path, name):
    import unicodedata

    if any(unicodedata.category(ch)[0] == "C" or unicodedata.category(ch) in ("Zl", "Zp") for ch in name):
        return
    tmp_path = tmp_path_factory.mktemp("rt")
    full = {**spec, **path}
    loaded = load_config_text(HEADER + render_job_toml(name, full), tmp_path / "x.toml", {}).jobs[name].spec()
    assert loaded == canonical_spec(full)


# --------------------------------------------------------------------------- starter and init


def test_starter_config_is_valid_and_uses_the_emulator_and_the_shape(tmp_path):
    config = load_config_text(starter_config(), tmp_path / "rlorinfra.toml", {})
    assert config.control_plane.is_local
    (job,) = config.jobs.values()
    assert job.base_model == "accounts/fireworks/models/qwen3-8b"
    assert job.training_shape == "accounts/fireworks/trainingShapes/ts-qwen3-8b-policy"
    assert config.warnings == ()
    assert tomllib.loads(starter_config())  # plain TOML, comments and all


def test_init_creates_the_file_then_refuses_to_overwrite(tmp_path):
    result = run_cli(["init"], cwd=tmp_path)
    assert result.exit_code == 0, result.output
    path = tmp_path / "rlorinfra.toml"
    assert path.read_text() == starter_config()
    assert load_config(path, {}).jobs
    assert not (tmp_path / "rlorinfra.state.json").exists()

    path.write_text("# mine\n")
    again = run_cli(["init"], cwd=tmp_path)
    assert again.exit_code == 1
    assert "already exists" in again.stderr and "Traceback" not in again.output
    assert path.read_text() == "# mine\n"


def test_init_with_file_option_then_validate(tmp_path):
    target = tmp_path / "envs" / "prod.toml"
    missing_dir = run_cli(["init", "-f", target])
    assert missing_dir.exit_code == 1 and "Cannot write" in missing_dir.stderr
    target.parent.mkdir()
    assert run_cli(["init", "-f", target]).exit_code == 0
    result = run_cli(["validate", "-f", target])
    assert result.exit_code == 0 and "Success! The configuration is valid." in result.stdout
