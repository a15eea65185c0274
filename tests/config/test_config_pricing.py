"""[pricing], [policy] and --pricing FILE: checked with file, line and a "did you mean"; no built-in price."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlorinfra.config.load import load_config_text
from rlorinfra.config.pricing import load_pricing_file
from rlorinfra.errors import ConfigError
from rlorinfra.model.pricing import CostPolicy, PriceTable

JOB = '[jobs.a]\nbase_model = "accounts/fireworks/models/qwen3-8b"\ntraining_shape = "ts-qwen3-8b-policy"\n'


def _load(tmp_path: Path, text: str):
    return load_config_text(text + JOB, tmp_path / "rlorinfra.toml", {})


def _problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, text)
    return list(caught.value.problems)


def test_pricing_and_policy_are_read(tmp_path):
    config = _load(
        tmp_path,
        '[pricing]\nsource = "team rate card, 2026-11"\nNVIDIA_H100_80GB = 8\nNVIDIA_H200_141GB = 10.5\n'
        "[policy]\nmax_hourly_delta = 40\n",
    )
    assert config.pricing == PriceTable("team rate card, 2026-11", {"NVIDIA_H100_80GB": 8.0, "NVIDIA_H200_141GB": 10.5})
    assert config.policy == CostPolicy(max_hourly_delta=40.0)


def test_no_tables_no_prices_and_no_limit(tmp_path):
    config = _load(tmp_path, "")
    assert config.pricing == PriceTable() and config.pricing.price("NVIDIA_H100_80GB") is None
    assert config.policy.max_hourly_delta is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[pricing]\nsource = "s"\nnvidia_h100_80gb = 8\n', ':3: pricing key "nvidia_h100_80gb" must be one of'),
        ('[pricing]\nsource = "s"\nNVIDIA_H10_80GB = 8\n', 'Did you mean "NVIDIA_H100_80GB"?'),
        ('[pricing]\nsource = "s"\nNVIDIA_H100_80GB = 0\n', ":3: pricing.NVIDIA_H100_80GB must be a finite number"),
        ('[pricing]\nsource = "s"\nNVIDIA_H100_80GB = -2.5\n', "USD per accelerator-hour > 0, got -2.5"),
        ('[pricing]\nsource = "s"\nNVIDIA_H100_80GB = inf\n', "must be a finite number"),
        ('[pricing]\nsource = "s"\nNVIDIA_H100_80GB = nan\n', "must be a finite number"),
        ('[pricing]\nsource = "s"\nNVIDIA_H100_80GB = "8"\n', "must be a finite number"),
        ("[pricing]\nNVIDIA_H100_80GB = 8\n", ":1: pricing.source is required when prices are given"),
        ('[pricing]\nsource = ""\nNVIDIA_H100_80GB = 8\n', ":2: pricing.source must be a non-empty string"),
        ("[policy]\nmax_hourly_delta = -1\n", ":2: policy.max_hourly_delta must be a finite number"),
        ("[policy]\nmax_hourly_delta = true\n", "policy.max_hourly_delta must be a finite number"),
        ("[policy]\nmax_hourly = 3\n", 'unknown key "max_hourly" in [policy]. Did you mean "max_hourly_delta"?'),
        ('pricing = "cheap"\n', "pricing must be a table"),
    ],
)
def test_bad_tables_are_errors_with_line(tmp_path, text, expected):
    problems = _problems(tmp_path, text)
    assert any(expected in p for p in problems), problems


def test_pricing_file_bare_or_under_a_header(tmp_path):
    bare = tmp_path / "bare.toml"
    bare.write_text('source = "fireworks.ai/pricing, 2026-12"\nNVIDIA_H100_80GB = 6.0\n')
    nested = tmp_path / "nested.toml"
    nested.write_text('[pricing]\nsource = "card"\nNVIDIA_A100_80GB = 3\n')
    assert load_pricing_file(bare) == PriceTable("fireworks.ai/pricing, 2026-12", {"NVIDIA_H100_80GB": 6.0})
    assert load_pricing_file(nested) == PriceTable("card", {"NVIDIA_A100_80GB": 3.0})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('source = "s"\nNVIDIA_H100_80GB = 6\nNVIDIA_B200 = 9\n', ':3: pricing key "NVIDIA_B200"'),
        ("NVIDIA_H100_80GB = 6\n", "pricing.source is required"),
        ('source = "s"\n', "no price in the pricing file"),
        ("source = \n", "not valid TOML"),
    ],
)
def test_pricing_file_errors_name_the_file(tmp_path, text, expected):
    path = tmp_path / "rates.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_pricing_file(path)
    assert caught.value.summary.startswith(f"Invalid pricing file: 1 problem in {path}")
    assert any(expected in p and p.startswith(str(path)) for p in caught.value.problems), caught.value.problems


def test_missing_pricing_file(tmp_path):
    with pytest.raises(ConfigError, match="Cannot read the pricing file"):
        load_pricing_file(tmp_path / "nope.toml")
