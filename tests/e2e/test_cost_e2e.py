"""Cost end to end on the served emulator: the plan's $/h, the budget gate, and `rlorinfra cost`.

Spend is checked against the emulator's own numbers: its GET of the job
(``acceleratorSeconds``) read just before and just after `cost --json`.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest

from tests.e2e.conftest import API_KEY, jobs_toml

H200 = "NVIDIA_H200_141GB"  # ts-qwen3-8b-policy: 8 × H200 per job
PRICING = '[pricing]\nsource = "e2e rate card"\nNVIDIA_H200_141GB = 3.6\n'  # $0.001 per accelerator-second


def _emulator_seconds(world, job_id: str) -> int:
    """The job's acceleratorSeconds as the emulator reports them (not through our client)."""
    with httpx.Client(base_url=world.url, headers={"X-Api-Key": API_KEY}) as http:
        body = http.get(f"/v1/accounts/local/rlorTrainerJobs/{job_id}").json()
    return int(body["acceleratorSeconds"][H200])


def test_plan_shows_each_change_cost_and_the_totals(world):
    world.write_config(jobs_toml("alpha", "beta"), extra=PRICING)
    result = world.cli("plan")
    assert result.exit_code == 0, result.output
    assert "  # +8 × NVIDIA_H200_141GB (+$28.80/h)\n" in result.stdout
    assert "Cost change: +$57.60/h (prices: e2e rate card)\n" in result.stdout
    assert "Cost after apply: $57.60/h (prices: e2e rate card)\n" in result.stdout
    doc = json.loads(world.cli("plan", "--json").stdout)
    assert doc["format_version"] == 2 and doc["pricing_source"] == "e2e rate card"
    assert [c["hourly_cost_delta"] for c in doc["changes"]] == [28.8, 28.8]
    assert doc["summary"]["hourly_cost_delta"] == 57.6 and doc["summary"]["hourly_cost_after"] == 57.6


def test_cost_spend_is_accelerator_seconds_times_price(world):
    world.write_config(jobs_toml("alpha"), extra=PRICING)
    assert world.cli("apply", "--auto-approve").exit_code == 0
    job_id = world.state()["resources"]["job"]["alpha"]["job_id"]
    time.sleep(2.5)  # RUNNING for a few seconds: 8 accelerators accrue 8 s per second

    before = _emulator_seconds(world, job_id)
    result = world.cli("cost", "--json")
    after = _emulator_seconds(world, job_id)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    (row,) = doc["resources"]
    seconds = row["accelerator_seconds"][H200]
    assert before >= 8 and before <= seconds <= after  # the emulator's own numbers bracket ours
    assert row["spend_to_date"] == pytest.approx(seconds * 3.6 / 3600, rel=1e-12)
    assert before * 0.001 - 1e-9 <= row["spend_to_date"] <= after * 0.001 + 1e-9
    assert row["hourly_cost"] == 8 * 3.6 and row["accelerators"] == {H200: 8}
    assert row["address"] == "job.alpha" and row["expires_at"] is None and row["projected_spend"] is None
    assert doc["pricing_source"] == "e2e rate card"

    text = world.cli("cost")
    assert text.exit_code == 0, text.output
    assert "job.alpha" in text.stdout and "8 × NVIDIA_H200_141GB" in text.stdout and "no ttl" in text.stdout
    assert "Prices (USD per accelerator-hour): e2e rate card" in text.stdout


def test_a_plan_over_budget_exits_1_and_creates_nothing(world):
    world.write_config(jobs_toml("alpha", "beta"), extra=PRICING + "\n[policy]\nmax_hourly_delta = 40.0\n")
    for command in (["plan"], ["apply", "--auto-approve"]):
        result = world.cli(*command)
        assert result.exit_code == 1, result.output
        assert "The plan adds +$57.60/h, above the max_hourly_delta limit of $40.00/h" in result.output
        assert "job.alpha: +$28.80/h" in result.output and "job.beta: +$28.80/h" in result.output
    assert world.live_jobs() == []
    # The command line raises the limit for one run.
    assert world.cli("plan", "--max-hourly-delta", "60").exit_code == 0


def test_an_unknown_increase_fails_while_a_limit_is_set(world):
    world.write_config(jobs_toml("alpha"), extra='[pricing]\nsource = "card"\nNVIDIA_H100_80GB = 2.0\n')
    result = world.cli("apply", "--auto-approve", "--max-hourly-delta", "1000")
    assert result.exit_code == 1, result.output
    assert "cost increase is unknown" in result.output and "no price for NVIDIA_H200_141GB" in result.output
    assert world.live_jobs() == []


def test_apply_of_a_saved_plan_rechecks_the_budget_with_current_prices(world, tmp_path):
    world.write_config(jobs_toml("alpha"))
    planfile = world.folder / "release.plan"
    assert world.cli("plan", "--out", str(planfile)).exit_code == 0
    rates = tmp_path / "rates.toml"
    rates.write_text('source = "team card"\nNVIDIA_H200_141GB = 10.0\n')
    result = world.cli("apply", str(planfile), "--pricing", str(rates), "--max-hourly-delta", "50")
    assert result.exit_code == 1, result.output
    assert "adds +$80.00/h" in result.output and "prices: team card" in result.output
    assert world.live_jobs() == []


def test_a_bad_pricing_file_names_its_file_and_line(world, tmp_path):
    world.write_config(jobs_toml("alpha"))
    rates = tmp_path / "rates.toml"
    rates.write_text('source = "card"\nNVIDIA_H200_141GB = 3.0\nNVIDIA_H100_80G = 2.0\n')
    result = world.cli("plan", "--pricing", str(rates))
    assert result.exit_code == 1, result.output
    assert f"{rates}:3:" in result.output and 'Did you mean "NVIDIA_H100_80GB"?' in result.output
