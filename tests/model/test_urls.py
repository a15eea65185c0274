"""The one loopback rule (``model.urls.is_loopback``) that the config, the client and the server all use."""

from __future__ import annotations

import pytest

from rlorinfra.model.urls import is_loopback


@pytest.mark.parametrize("url,expected", [
    ("http://localhost:8765", True), ("http://LOCALHOST", True), ("http://127.0.0.1", True),
    ("http://127.0.0.1:1", True), ("http://127.0.0.2:9", True), ("http://127.255.255.254", True),
    ("http://[::1]:8765", True),
    ("http://evil.localhost", False), ("http://x.localhost:8765", False), ("http://localhost.", False),
    ("http://localhost.evil.example", False), ("http://128.0.0.1", False), ("http://[::2]", False),
    ("http://[::ffff:127.0.0.1]", False), ("http://0.0.0.0", False), ("http://127.1", False),
    ("http://10.0.0.1", False), ("https://api.fireworks.ai", False), ("http://[::1", False), ("http://", False),
])  # fmt: skip
def test_loopback_means_literal_names_only(url: str, expected: bool) -> None:
    assert is_loopback(url) is expected
