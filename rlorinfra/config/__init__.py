"""The desired-state configuration: load + validate TOML (``load``), models (``model``), writers (``write``).

Names are re-exported lazily so that importing ``rlorinfra.config.model`` does
not pay for the loader (or ``tomli_w``).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "load_config": "rlorinfra.config.load",
    "load_config_text": "rlorinfra.config.load",
    "load_config_bytes": "rlorinfra.config.load",
    "validate_config": "rlorinfra.config.load",
    "Report": "rlorinfra.config.diagnostics",
    "Diagnostic": "rlorinfra.config.diagnostics",
    "Config": "rlorinfra.config.model",
    "ControlPlaneSettings": "rlorinfra.config.model",
    "EmulatorSettings": "rlorinfra.config.model",
    "JobSpec": "rlorinfra.config.model",
    "render_job_toml": "rlorinfra.config.write",
    "starter_config": "rlorinfra.config.write",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'rlorinfra.config' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
