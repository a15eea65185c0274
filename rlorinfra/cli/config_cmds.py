"""``rlorinfra init`` and ``rlorinfra validate``: offline commands about the config file.

Both stay light: they import only the config package (no httpx, deepdiff or
sqlite3), never read or write state and never touch the network.
"""

from __future__ import annotations

from pathlib import Path

import click

from rlorinfra.cli.common import echo_warning, file_option, get_globals, json_option, load_config
from rlorinfra.config.model import Config


@click.command("init")
@file_option
def init_cmd(config_path: Path) -> int:
    """Write a starter rlorinfra.toml (one job on the embedded emulator).

    Never overwrites a file. If it already exists and is a valid rlorinfra
    configuration, says so and exits 0 (nothing to do); any other existing file
    is an error. Use -f to write the starter elsewhere. The starter runs
    offline: `url = "local"` is the embedded emulator.

    \b
    Examples:
      rlorinfra init
      rlorinfra init -f staging.toml
    """
    from rlorinfra.config.write import STARTER_JOB, write_starter_config

    if config_path.exists() and _is_rlorinfra_config(config_path):
        click.echo(
            f"{config_path} already exists; nothing to do. Edit it, or "
            "`rlorinfra init -f other.toml` to write a starter configuration elsewhere."
        )
        click.echo(f"It is a valid configuration: {_summary(load_config(config_path))}")
        return 0
    write_starter_config(config_path)  # refuses (exit 1) any other existing file
    click.echo(f"Wrote {config_path} with one job ({STARTER_JOB}) on the embedded emulator.")
    flag = "" if str(config_path) == "rlorinfra.toml" else f" -f {config_path}"
    click.echo(f"Next: `rlorinfra validate{flag}`, then `rlorinfra plan{flag}`.")
    return 0


@click.command("validate")
@file_option
@json_option
def validate_cmd(config_path: Path, as_json: bool) -> int:
    """Check the configuration offline and print every problem at once.

    Never touches the network or the state. Exit 0 when valid, 1 otherwise.
    Each problem names the file, line, job and key; warnings go to stderr.

    \b
    Examples:
      rlorinfra validate
      rlorinfra validate -f examples/grpo.toml
      rlorinfra validate --json        # one JSON document, for editors and CI
    """
    from rlorinfra.config.load import validate_config

    report = validate_config(config_path, env=get_globals().env)
    if as_json:
        import json

        click.echo(json.dumps(report.to_json(), indent=2, ensure_ascii=False))
        return 0 if report.valid else 1
    config = report.config_or_raise()
    click.echo("Success! The configuration is valid.")
    click.echo(_summary(config))
    for warning in report.warnings:
        echo_warning(warning.message())
    return 0


def _is_rlorinfra_config(path: Path) -> bool:
    """Whether ``path`` is a valid rlorinfra configuration that declares something.

    A file that is empty (or only comments) is not recognisably ours: `init`
    refuses it rather than claim it is a configuration with nothing in it.
    """
    import tomllib

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        if not data:
            return False
        load_config(path)
    except Exception:  # noqa: BLE001 - anything unreadable or invalid is "not a config"
        return False
    return True


def _summary(config: Config) -> str:
    """``2 jobs (1 stopped), 1 deployment, control plane: local (embedded emulator).``"""
    count = len(config.jobs)
    text = f"{count} job{'' if count == 1 else 's'}"
    stopped = sum(1 for job in config.jobs.values() if job.desired_state == "stopped")
    if stopped:
        text += f" ({stopped} stopped)"
    if config.deployments:
        deployments = len(config.deployments)
        text += f", {deployments} deployment{'' if deployments == 1 else 's'}"
    cp = config.control_plane
    where = "local (embedded emulator)" if cp.is_local else cp.url
    return f"{text}, control plane: {where}."
