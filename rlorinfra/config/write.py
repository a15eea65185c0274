"""Write desired-state TOML: one job or deployment block (``import --generate-config``) and the starter file.

``render_job_toml`` is the inverse of the loader for one job: pasted under a
config, its output loads back to a ``JobSpec`` whose ``.spec()`` equals the
spec it was rendered from. ``render_deployment_toml`` is the same for one
deployment (its ``hot_load_trainer`` must name a job of the file it is pasted into).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rlorinfra.config.durations import format_duration
from rlorinfra.config.fields import JOB_RULES
from rlorinfra.config.model import LIFECYCLE_FIELDS
from rlorinfra.errors import ConfigError

STARTER_JOB = "grpo-policy-trainer"
STARTER_SHAPE = "ts-qwen3-8b-policy"
STARTER_BASE_MODEL = "accounts/fireworks/models/qwen3-8b"

# Render order: the model first, then every other field in JOB_RULES order.
_FIELD_ORDER = tuple(JOB_RULES)


def render_job_toml(
    display_name: str, spec: dict[str, Any], *, lifecycle: dict[str, Any] | None = None, unset: tuple[str, ...] = ()
) -> str:
    """A ``[jobs."<display_name>"]`` block for ``spec`` (``JobSpec.spec()`` form).

    ``lifecycle`` optionally adds rlorinfra's own fields (``desired_state``,
    ``prevent_destroy``, ...); ``unset`` lists ``[defaults]`` keys the job
    drops. Unknown keys are a programming error (``ValueError``): the output
    must always load back.
    """
    unknown = sorted(set(spec) - set(JOB_RULES) | set(lifecycle or {}) - set(LIFECYCLE_FIELDS))
    if unknown:
        raise ValueError(f"cannot render unknown job field(s): {', '.join(unknown)}")
    merged = {**spec, **(lifecycle or {})}
    body = {key: _toml_value(key, merged[key]) for key in _FIELD_ORDER if merged.get(key) is not None}
    if unset:
        body["unset"] = list(unset)
    import tomli_w  # only the writers pay for it

    return tomli_w.dumps({"jobs": {display_name: body}})


# Spec keys spelled differently in a [deployments.NAME] table; values as the loader reads them.
_DEPLOYMENT_CONFIG_KEYS = {"hot_load_transition_type": "hot_load_transition"}


def render_deployment_toml(deployment_id: str, spec: dict[str, Any], *, lifecycle: dict[str, Any] | None = None) -> str:
    """A ``[deployments.<deployment_id>]`` block for ``spec`` (``DeploymentSpec.spec()`` form, shape resolved).

    ``lifecycle`` optionally adds ``prevent_destroy`` / ``ttl`` (whole seconds).
    A key the table cannot hold (``deployment_shape_from``, ``hot_load_trainer_job``,
    anything unknown) is a programming error (``ValueError``): the output must always load back.
    """
    from rlorinfra.config.deployments import DEPLOYMENT_RULES
    from rlorinfra.config.model import DEPLOYMENT_LIFECYCLE_FIELDS

    renamed = {_DEPLOYMENT_CONFIG_KEYS.get(key, key): value for key, value in spec.items()}
    unknown = sorted(set(renamed) - set(DEPLOYMENT_RULES) | set(lifecycle or {}) - set(DEPLOYMENT_LIFECYCLE_FIELDS))
    if unknown:
        raise ValueError(f"cannot render unknown deployment field(s): {', '.join(unknown)}")
    merged = {**renamed, **(lifecycle or {})}
    body = {key: _deployment_value(key, merged[key]) for key in DEPLOYMENT_RULES if merged.get(key) is not None}
    import tomli_w

    return tomli_w.dumps({"deployments": {deployment_id: body}})


def _deployment_value(key: str, value: Any) -> Any:
    if key == "hot_load_transition":
        return str(value).lower()  # "async"/"sync", as the docs write it; the loader upper-cases it
    if key == "ttl" and isinstance(value, int) and not isinstance(value, bool):
        return format_duration(value)
    if isinstance(value, dict):
        return dict(sorted(value.items()))
    return list(value) if isinstance(value, tuple) else value


def _toml_value(key: str, value: Any) -> Any:
    if key == "inactivity_timeout" and isinstance(value, int) and not isinstance(value, bool):
        return format_duration(value)  # "1h30m" reads better than 5400, and loads back the same
    if isinstance(value, tuple):
        return list(value)
    return value


def starter_config() -> str:
    """The commented ``rlorinfra.toml`` that ``rlorinfra init`` writes (one job, embedded emulator)."""
    return _STARTER


def write_starter_config(path: Path) -> None:
    """Create ``path`` with ``starter_config()``; never overwrites (``ConfigError`` if it exists)."""
    try:
        with open(path, "x", encoding="utf-8") as handle:  # "x": fail rather than overwrite
            handle.write(starter_config())
    except FileExistsError:
        raise ConfigError(
            f"{path} already exists",
            "`rlorinfra init` never overwrites a configuration. Edit the existing file, or pass "
            "`-f OTHER.toml` to write the starter configuration somewhere else.",
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"Cannot write {path}: {exc.strerror or exc}",
            "Check that the folder exists and that you may write to it, or pass `-f PATH`.",
        ) from None


_STARTER = f'''\
# rlorinfra desired-state file: the trainer jobs you want, keyed by display name.
# `rlorinfra validate` checks it offline, `rlorinfra plan` shows what would change,
# `rlorinfra apply` makes it so. Every field is documented in docs/configuration.md.

[control_plane]
# "local" runs an embedded emulator of the Fireworks control plane (no network, no key).
# For the real thing: url = "https://api.fireworks.ai" and export FIREWORKS_API_KEY.
url = "local"
api_key_env = "FIREWORKS_API_KEY"   # the NAME of the variable; never put the key in this file

[control_plane.emulator]
provision_seconds = 2               # how long a new job stays CREATING in the emulator

# [state]
# path = "rlorinfra.state.json"     # default: <config name>.state.json beside this file

# [defaults]                        # merged under every job; a job's own value wins
# learning_rate = 1e-5

[jobs.{STARTER_JOB}]
base_model = "{STARTER_BASE_MODEL}"
training_shape = "{STARTER_SHAPE}"   # the shape picks accelerators, nodes and context length
lora_rank = 0                       # 0 = full-parameter training
learning_rate = 1e-5
inactivity_timeout = "1h"           # stop the trainer after an hour without activity (max 3h)
desired_state = "running"           # or "stopped": cancel the job but keep it
prevent_destroy = false             # true: plans that delete or replace this job fail
'''
