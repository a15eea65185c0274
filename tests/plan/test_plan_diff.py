"""changed_fields: top-level spec keys that differ, via deepdiff."""

from __future__ import annotations

import pytest

from rlorinfra.plan.diff import changed_fields


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        ({"a": 1}, {"a": 1}, ()),
        ({"a": 1}, {"a": 2}, ("a",)),
        ({"a": 1}, {"a": 1, "b": 2}, ("b",)),
        ({"a": 1, "b": 2}, {"a": 1}, ("b",)),
        ({"x": ["--a", "--b"]}, {"x": ["--a", "--c"]}, ("x",)),
        ({"x": ["--a", "--b"]}, {"x": ["--b", "--a"]}, ("x",)),  # argument order matters
        ({"x": ("--a",)}, {"x": ["--a"]}, ()),  # TOML tuple vs JSON list
        ({"lr": 1}, {"lr": 1.0}, ()),  # int vs float from a JSON round trip
        ({"z": 1, "a": 1, "m": 1}, {"z": 2, "a": 2, "m": 1}, ("a", "z")),  # sorted
        # Specs with few shared keys (deepdiff would otherwise report the root).
        (
            {"accelerator_type": "A", "accelerator_count": 8, "node_count": 1, "base_model": "m"},
            {"base_model": "m", "training_shape": "s"},
            ("accelerator_count", "accelerator_type", "node_count", "training_shape"),
        ),
        ({"a": 1}, {"b": 1}, ("a", "b")),
        ({}, {"b": 1}, ("b",)),
    ],
)
def test_changed_fields(before, after, expected):
    assert changed_fields(before, after) == expected
