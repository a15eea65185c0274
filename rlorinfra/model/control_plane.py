"""Where the control plane is and how to reach it: the ``[control_plane]`` table as a value.

The config loader builds it; the client factory (``api/connect.py``) and the
workspace read it. It lives here, below both, so ``api`` never imports ``config``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# ``url = "local"`` (the default) selects the embedded in-process emulator.
LOCAL_URL = "local"
DEFAULT_API_KEY_ENV = "FIREWORKS_API_KEY"


@dataclass(frozen=True)
class EmulatorSettings:
    """Knobs of the embedded emulator (only used when ``url = "local"``)."""

    provision_seconds: float = 2.0
    capacity: int = 256  # accelerators available before jobs queue in PENDING


@dataclass(frozen=True)
class ControlPlaneSettings:
    """Where the control plane is and how to authenticate to it."""

    url: str = LOCAL_URL
    api_key_env: str = DEFAULT_API_KEY_ENV
    account_id: str | None = None
    trainer_gateway_url: str | None = None
    allow_insecure: bool = False
    emulator: EmulatorSettings = field(default_factory=EmulatorSettings)
    # Total seconds one control-plane call may spend retrying (DESIGN.md §5).
    retry_budget_s: float = 120.0

    @property
    def is_local(self) -> bool:
        """True when the embedded in-process emulator is the control plane."""
        return self.url == LOCAL_URL
