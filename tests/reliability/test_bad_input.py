"""Bad input corpus: every case goes through a real CLI command and must end
with exit 1, an ``Error:`` paragraph naming the problem, no traceback, and not a
single byte or mode changed in the workspace folder.

Cases cover malformed TOML, wrong types, unknown keys, binary garbage, huge
values, non-finite numbers (TOML ``nan``/``inf``, ``--timeout nan``), look-alike
duplicate names, corrupt/truncated/foreign state files, hostile state and plan
files (duplicate keys, 5000-digit integers, NaN, deep nesting), stale/garbled
plan files and bad command-line arguments, spread over the
commands plan, apply, destroy, validate, show, output, import and state. A
workspace that has been used keeps an empty ``<state>.lock`` file (the OS lock
is taken on it; unlinking it on release would race), so cases with a state file
start with one: the snapshot then proves nothing at all is written.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import run_cli
from tests.e2e.conftest import API_KEY, KEY_ENV, serve_world
from tests.reliability.helpers import record_figures, snapshot

CONFIG = "rlorinfra.toml"
STATE = "rlorinfra.state.json"
MODEL = 'base_model = "accounts/fireworks/models/qwen3-8b"\n'
SHAPE = 'training_shape = "ts-qwen3-8b-policy"\n'
MAX_STDERR = 6000  # an error is a paragraph, never an echo of a huge input


@dataclass
class Case:
    """One bad input: files to lay down, the command to run, words the error must contain."""

    id: str
    argv: list[str]
    expect: list[str]
    files: dict[str, bytes | str] = field(default_factory=dict)
    setup: Callable[[Path, str], None] | None = None  # (folder, url) -> None, before the snapshot


def cp() -> str:
    """[control_plane] pointing at the served emulator ({url} is filled in when written)."""
    return '[control_plane]\nurl = "{url}"\napi_key_env = "' + KEY_ENV + '"\n'


def job_toml(body: str = "", name: str = "alpha", model: bool = True, shape: bool = True) -> str:
    return f"[jobs.{name}]\n" + (MODEL if model else "") + (SHAPE if shape else "") + body


GOOD = cp() + job_toml()


def state_doc(**over) -> dict:
    """A valid state document for account `local` with one job, fields overridable."""
    job = {
        "job_id": "alpha-123abc",
        "job_name": "accounts/local/rlorTrainerJobs/alpha-123abc",
        "endpoint": "http://127.0.0.1/training/v1/rlorTrainerJobs/local/alpha-123abc",
        "spec": {
            "base_model": "accounts/fireworks/models/qwen3-8b",
            "training_shape": "accounts/fireworks/trainingShapes/ts-qwen3-8b-policy",
        },
        "phase": "ready",
        "observed_state": "JOB_STATE_RUNNING",
    }
    job.update(over.pop("job", {}))
    doc = {
        "format_version": 1,
        "serial": 3,
        "lineage": "7d9f3c1e-0000-4000-8000-000000000000",
        "control_plane": {"url": "{url}", "account_id": "local"},
        "jobs": {"alpha": job},
    }
    doc.update(over)
    return doc


def state_bytes(doc) -> str:
    return json.dumps(doc, indent=2)


# -- the corpus ---------------------------------------------------------------------------

CONFIG_CMDS = [
    ["validate"],
    ["plan"],
    ["apply", "--auto-approve"],
    ["plan", "--detailed-exitcode"],
    ["show"],
    ["state", "list"],
    ["destroy", "--auto-approve"],
    ["output"],
]

BAD_CONFIGS = [
    ("binary-garbage", b"\x00\xff\xfe\x89PNG\r\n\x1a\n" + bytes(range(256)), ["utf-8"]),
    ("invalid-utf8", (GOOD + "# caf\xe9\n").encode("latin-1"), ["utf-8"]),
    ("nul-byte", GOOD + "\x00\n", ["rlorinfra.toml"]),
    ("unclosed-table", cp() + "[jobs.alpha\n" + MODEL, ["line"]),
    ("missing-value", cp() + "[jobs.alpha]\nbase_model =\n", ["line"]),
    ("unterminated-string", cp() + '[jobs.alpha]\nbase_model = "accounts/fireworks\n', ["line"]),
    ("duplicate-table", GOOD + job_toml(), ["alpha"]),
    ("duplicate-key", cp() + job_toml(MODEL), ["base_model"]),
    ("unknown-top-level", GOOD + "[controlplane]\nurl = 'local'\n", ["controlplane", "control_plane"]),
    ("unknown-job-key", cp() + job_toml("base_modle = 'x'\n"), ["base_modle", "alpha"]),
    ("unknown-cp-key", GOOD + "", ["nope"]),  # replaced below
    ("unknown-state-key", GOOD + "[state]\nfile = 'x.json'\n", ["file"]),
    ("unknown-defaults-key", "[defaults]\nlearning_rat = 1e-5\n" + GOOD, ["learning_rat"]),
    ("nested-unknown-table", cp() + job_toml("[jobs.alpha.extra]\nx = 1\n"), ["extra", "alpha"]),
    ("lora-rank-string", cp() + job_toml("lora_rank = 'eight'\n"), ["lora_rank", "alpha"]),
    ("lora-rank-bool", cp() + job_toml("lora_rank = true\n"), ["lora_rank"]),
    ("context-float", cp() + job_toml("max_context_length = 4096.5\n"), ["max_context_length"]),
    ("context-huge", cp() + job_toml("max_context_length = 9223372036854775807\n"), ["max_context_length"]),
    ("context-negative", cp() + job_toml("max_context_length = -4096\n"), ["max_context_length"]),
    ("learning-rate-nan", cp() + job_toml("learning_rate = nan\n"), ["learning_rate"]),
    ("learning-rate-inf", cp() + job_toml("learning_rate = inf\n"), ["learning_rate"]),
    ("learning-rate-string", cp() + job_toml("learning_rate = '1e-5'\n"), ["learning_rate"]),
    ("desired-state-int", cp() + job_toml("desired_state = 1\n"), ["desired_state"]),
    ("desired-state-bad", cp() + job_toml("desired_state = 'paused'\n"), ["desired_state"]),
    ("prevent-destroy-string", cp() + job_toml("prevent_destroy = 'yes'\n"), ["prevent_destroy"]),
    ("jobs-not-table", cp() + "jobs = 5\n", ["jobs"]),
    ("job-not-table", cp() + "[jobs]\nalpha = 'x'\n", ["alpha"]),
    ("base-model-array", cp() + job_toml("base_model = ['a']\n", model=False), ["base_model"]),
    ("huge-string", cp() + job_toml(f"custom_image_tag = '{'x' * 1_000_000}'\n", shape=False), ["custom_image_tag"]),
    ("name-too-long", cp() + job_toml(name="n" * 70), ["63 characters"]),
    ("nfc-duplicate", cp() + job_toml(name='"caf\u00e9"') + job_toml(name='"cafe\u0301"'), ["duplicate"]),
    ("grad-accum-4", cp() + job_toml("gradient_accumulation_steps = 4\n"), ["gradient_accumulation_steps"]),
    ("inactivity-5h", cp() + job_toml("inactivity_timeout = '5h'\n"), ["inactivity_timeout"]),
    ("shape-with-infra", cp() + job_toml("accelerator_count = 8\n"), ["accelerator_count"]),
    ("url-ftp", '[control_plane]\nurl = "ftp://example.com"\n' + job_toml(), ["url"]),
    ("api-key-in-file", GOOD.replace("api_key_env", 'api_key = "sk-123"\napi_key_env'), ["api_key"]),
    ("node-count-zero", cp() + job_toml("node_count = 0\n", shape=False), ["node_count"]),
    ("deep-nesting", cp() + job_toml("extra_args = " + "[" * 5000 + "]" * 5000 + "\n"), ["rlorinfra.toml"]),
    ("defaults-wrong-type", "[defaults]\nlora_rank = 'x'\n" + GOOD, ["lora_rank"]),
]
BAD_CONFIGS[10] = ("unknown-cp-key", GOOD.replace("api_key_env", "nope = 1\napi_key_env"), ["nope"])
# Non-finite and absurd numbers (TOML has nan and inf literals).
EMULATOR = "[control_plane.emulator]\nprovision_seconds = "
BAD_CONFIGS += [
    ("provision-seconds-nan", GOOD + EMULATOR + "nan\n", ["provision_seconds", "finite"]),
    ("provision-seconds-inf", GOOD + EMULATOR + "inf\n", ["provision_seconds", "finite"]),
    ("provision-seconds-minus-inf", GOOD + EMULATOR + "-inf\n", ["provision_seconds"]),
    ("provision-seconds-negative", GOOD + EMULATOR + "-1\n", ["provision_seconds"]),
    ("learning-rate-minus-inf", cp() + job_toml("learning_rate = -inf\n"), ["learning_rate"]),
    ("learning-rate-minus-nan", cp() + job_toml("learning_rate = -nan\n"), ["learning_rate"]),
    ("inactivity-nan", cp() + job_toml("inactivity_timeout = nan\n"), ["inactivity_timeout"]),
    ("inactivity-inf", cp() + job_toml("inactivity_timeout = inf\n"), ["inactivity_timeout"]),
    ("inactivity-negative", cp() + job_toml("inactivity_timeout = -5\n"), ["inactivity_timeout"]),
    ("inactivity-int64", cp() + job_toml("inactivity_timeout = 9223372036854775807\n"), ["inactivity_timeout"]),
    (
        "inactivity-foreign-digits",
        cp() + job_toml("inactivity_timeout = '\u0661\u0662\u0663'\n"),
        ["inactivity_timeout"],
    ),
    ("inactivity-nan-string", cp() + job_toml("inactivity_timeout = 'nan'\n"), ["inactivity_timeout"]),
]

BAD_STATES = [
    ("state-empty", "", ["empty"]),
    ("state-truncated", state_bytes(state_doc())[:120], ["not valid json"]),
    ("state-binary", b"\x89\x00\xff\xfe" * 20, ["utf-8"]),
    ("state-array", "[1, 2, 3]", ["list"]),
    ("state-no-serial", state_bytes({k: v for k, v in state_doc().items() if k != "serial"}), ["serial"]),
    ("state-serial-string", state_bytes(state_doc(serial="3")), ["serial"]),
    ("state-serial-negative", state_bytes(state_doc(serial=-1)), ["serial"]),
    ("state-future-format", state_bytes(state_doc(format_version=99)), ["newer"]),
    ("state-no-jobs", state_bytes({k: v for k, v in state_doc().items() if k != "jobs"}), ["jobs"]),
    ("state-jobs-list", state_bytes(state_doc(jobs=[])), ["jobs"]),
    ("state-job-no-id", state_bytes(state_doc(job={"job_id": ""})), ["job_id"]),
    ("state-bad-phase", state_bytes(state_doc(job={"phase": "exploded"})), ["phase"]),
    ("state-spec-string", state_bytes(state_doc(job={"spec": "x"})), ["spec"]),
    ("state-cp-string", state_bytes(state_doc(control_plane="local")), ["control_plane"]),
    ("state-lineage-int", state_bytes(state_doc(lineage=7)), ["lineage"]),
    # Hostile: a job given twice must not silently shadow the other; absurd numbers and
    # nesting are the corrupt-state error, never an internal error.
    (
        "state-duplicate-job",
        state_bytes(state_doc()).replace('"jobs": {', '"jobs": {"alpha": {}, ', 1),
        ["corrupt", '"alpha"', "twice", ".backup"],
    ),
    (
        "state-duplicate-serial",
        state_bytes(state_doc()).replace('"serial": 3,', '"serial": 3, "serial": 9,'),
        ["corrupt", '"serial"', "twice"],
    ),
    (
        "state-duplicate-spec-key",
        state_bytes(state_doc()).replace('"spec": {', '"spec": {"lora_rank": 8, "lora_rank": 16, '),
        ["corrupt", '"lora_rank"', "twice"],
    ),
    (
        "state-serial-5000-digits",
        state_bytes(state_doc()).replace('"serial": 3', '"serial": ' + "9" * 5000),
        ["corrupt", "5000 digits", ".backup"],
    ),
    ("state-serial-nan", state_bytes(state_doc()).replace('"serial": 3', '"serial": NaN'), ["corrupt", "NaN"]),
    (
        "state-spec-infinity",
        state_bytes(state_doc(job={"spec": {"learning_rate": float("inf")}})),
        ["corrupt", "Infinity"],
    ),
    (
        "state-deep-nesting",
        state_bytes(state_doc()).replace('"spec": {', '"deep": ' + "[" * 50_000 + "]" * 50_000 + ', "spec": {'),
        ["corrupt", "deeper than 64"],
    ),
    (
        "state-nesting-65",
        state_bytes(state_doc(job={"spec": {"x": json.loads("[" * 62 + "]" * 62)}})),
        ["corrupt", "deeper than 64"],
    ),
    (
        "state-lone-surrogate",
        state_bytes(state_doc()).replace('"alpha": {', '"alpha\\ud800": {', 1),
        ["corrupt", "surrogate"],
    ),
]
STATE_CMDS = [
    ["plan"],
    ["apply", "--auto-approve"],
    ["show"],
    ["state", "list"],
    ["state", "show", "alpha"],
    ["output"],
    ["destroy", "--auto-approve"],
    ["state", "rm", "alpha"],
    ["state", "mv", "alpha", "beta"],
    ["import", "beta", "beta-123abc"],
    ["plan", "--json"],
    ["show", "--json"],
    ["output", "--json"],
    ["plan", "--refresh-only"],
    ["apply", "--auto-approve", "--no-wait"],
]

FOREIGN = state_bytes(state_doc(control_plane={"url": "https://api.fireworks.ai", "account_id": "someone-else"}))


def _stale_plan(folder: Path, url: str) -> None:
    """A plan saved, then the state moved on (another run applied): the plan is stale."""
    _write(folder, {CONFIG: GOOD, STATE: state_bytes(state_doc())}, url)
    assert _cli(folder, "plan", "--out", "p.plan").exit_code == 0
    assert _cli(folder, "state", "rm", "alpha").exit_code == 0


def _plan_other_config(folder: Path, url: str) -> None:
    """A plan saved, then the config edited: the plan no longer matches it."""
    _write(folder, {CONFIG: GOOD.replace("{url}", url)})
    assert _cli(folder, "plan", "--out", "p.plan").exit_code == 0
    (folder / CONFIG).write_text(GOOD.replace("{url}", url) + job_toml(name="beta"))


PLANFILE_CASES = [
    Case("plan-garbage-apply", ["apply", "p.plan"], ["p.plan"], {CONFIG: GOOD, "p.plan": b"\x00\x01garbage\xff"}),
    Case("plan-garbage-show", ["show", "p.plan"], ["p.plan"], {CONFIG: GOOD, "p.plan": b"\x00\x01garbage\xff"}),
    Case("plan-empty-apply", ["apply", "p.plan"], ["p.plan"], {CONFIG: GOOD, "p.plan": ""}),
    Case("plan-json-not-plan", ["apply", "p.plan"], ["p.plan"], {CONFIG: GOOD, "p.plan": '{"hello": 1}'}),
    Case("plan-json-array-show", ["show", "p.plan"], ["p.plan"], {CONFIG: GOOD, "p.plan": "[]"}),
    Case("plan-missing", ["apply", "nothing.plan"], ["nothing.plan"], {CONFIG: GOOD}),
    Case("plan-stale-state", ["apply", "p.plan"], ["stale"], setup=_stale_plan),
    Case("plan-stale-config", ["apply", "p.plan"], ["stale"], setup=_plan_other_config),
    Case("plan-truncated", ["apply", "p.plan"], ["p.plan"], setup=lambda f, u: _truncate_plan(f, u)),
]


def _edit_plan(old: str, new: str) -> Callable[[Path, str], None]:
    """Setup: save a plan, then replace ``old`` with ``new`` in its text (a hand edit)."""

    def setup(folder: Path, url: str) -> None:
        _write(folder, {CONFIG: GOOD.replace("{url}", url)})
        assert _cli(folder, "plan", "--out", "p.plan").exit_code == 0
        text = (folder / "p.plan").read_text()
        assert old in text
        (folder / "p.plan").write_text(text.replace(old, new, 1))

    return setup


PLANFILE_CASES += [
    Case(
        "plan-duplicate-key",
        ["apply", "p.plan"],
        ["p.plan", "twice"],
        setup=_edit_plan('"state_serial": 0', '"state_serial": 0, "state_serial": 0'),
    ),
    Case(
        "plan-deep-nesting",
        ["apply", "p.plan"],
        ["p.plan", "deeper than 64"],
        setup=_edit_plan('"state_serial": 0', '"deep": ' + "[" * 50_000 + "]" * 50_000 + ', "state_serial": 0'),
    ),
    Case(
        "plan-nesting-65-show",
        ["show", "p.plan"],
        ["p.plan", "deeper than 64"],
        setup=_edit_plan('"state_serial": 0', '"deep": ' + "[" * 64 + "]" * 64 + ', "state_serial": 0'),
    ),
    Case(
        "plan-nan", ["apply", "p.plan"], ["p.plan", "NaN"], setup=_edit_plan('"state_serial": 0', '"state_serial": NaN')
    ),
    Case(
        "plan-huge-int",
        ["show", "p.plan"],
        ["p.plan", "digits"],
        setup=_edit_plan('"state_serial": 0', '"state_serial": ' + "1" * 5000),
    ),
]


def _truncate_plan(folder: Path, url: str) -> None:
    _write(folder, {CONFIG: GOOD.replace("{url}", url)})
    assert _cli(folder, "plan", "--out", "p.plan").exit_code == 0
    data = (folder / "p.plan").read_bytes()
    (folder / "p.plan").write_bytes(data[: len(data) // 2])


ARG_CASES = [
    Case("arg-parallelism-zero", ["apply", "--auto-approve", "--parallelism", "0"], ["--parallelism"], {CONFIG: GOOD}),
    Case("arg-parallelism-word", ["apply", "--parallelism", "many"], ["--parallelism"], {CONFIG: GOOD}),
    Case("arg-lock-timeout-negative", ["plan", "--lock-timeout", "-1"], ["--lock-timeout"], {CONFIG: GOOD}),
    Case("arg-unknown-option", ["plan", "--frobnicate"], ["--frobnicate"], {CONFIG: GOOD}),
    Case("arg-unknown-command", ["plon"], ["plon"], {CONFIG: GOOD}),
    Case("arg-missing-config", ["plan", "-f", "missing.toml"], ["missing.toml"], {}),
    Case("arg-config-is-folder", ["validate", "-f", "."], ["."], {CONFIG: GOOD}),
    Case("arg-json-needs-approve", ["apply", "--json"], ["--auto-approve"], {CONFIG: GOOD}),
    Case("arg-state-show-missing", ["state", "show"], ["name"], {CONFIG: GOOD}),
    Case(
        "arg-state-show-unknown", ["state", "show", "ghost"], ["ghost"], {CONFIG: GOOD, STATE: state_bytes(state_doc())}
    ),
    Case("arg-state-rm-unknown", ["state", "rm", "ghost"], ["ghost"], {CONFIG: GOOD, STATE: state_bytes(state_doc())}),
    Case("arg-output-unknown", ["output", "ghost"], ["ghost"], {CONFIG: GOOD, STATE: state_bytes(state_doc())}),
    Case("arg-import-bad-id", ["import", "beta", "Not An ID!"], ["Not An ID!"], {CONFIG: GOOD}),
    Case("arg-force-unlock-no-lock", ["force-unlock", "1234"], ["lock"], {CONFIG: GOOD}),
    Case("arg-target-unknown", ["plan", "--target", "ghost"], ["ghost"], {CONFIG: GOOD}),
    Case("arg-timeout-word", ["apply", "--auto-approve", "--timeout", "soon"], ["--timeout"], {CONFIG: GOOD}),
]
# Numbers must be finite: nan and inf (which click.FloatRange lets through) are usage errors everywhere.
NON_FINITE = ("nan", "NaN", "inf", "-inf", "Infinity", "1e400")


def _number_case(argv: list[str]) -> Case:
    """A bad number for the option ``argv[-2]``: the error names the option (and says finite)."""
    option, value = argv[-2], argv[-1]
    expect = [option, "finite"] if value in NON_FINITE else [option]
    words = [a.lstrip("-") for a in argv[:-1] if a != "--auto-approve"] + [value.replace("-", "minus-")]
    slug = "-".join(words).replace(".", "_")
    return Case(f"arg-number-{slug}", argv, expect, {CONFIG: GOOD, STATE: state_bytes(state_doc())})


ARG_CASES += [
    _number_case(argv)
    for argv in (
        ["apply", "--auto-approve", "--timeout", "nan"],
        ["apply", "--auto-approve", "--timeout", "inf"],
        ["apply", "--auto-approve", "--timeout", "-1"],
        ["apply", "--auto-approve", "--timeout", "1e12"],
        ["apply", "--auto-approve", "--pending-timeout", "nan"],
        ["apply", "--auto-approve", "--pending-timeout", "Infinity"],
        ["apply", "--auto-approve", "--lock-timeout", "nan"],
        ["destroy", "--auto-approve", "--timeout", "inf"],
        ["destroy", "--auto-approve", "--pending-timeout", "-5"],
        ["destroy", "--auto-approve", "--lock-timeout", "1e400"],
        ["plan", "--lock-timeout", "inf"],
        ["plan", "--lock-timeout", "nan"],
        ["plan", "--lock-timeout", "NaN"],
        ["plan", "--lock-timeout", "-inf"],
        ["import", "beta", "beta-123abc", "--lock-timeout", "inf"],
        ["state", "rm", "alpha", "--lock-timeout", "nan"],
        ["state", "mv", "alpha", "beta", "--lock-timeout", "inf"],
    )
]


def build_cases() -> list[Case]:
    cases = []
    for i, (cid, text, expect) in enumerate(BAD_CONFIGS):
        cases.append(Case(f"config-{cid}", CONFIG_CMDS[i % len(CONFIG_CMDS)], expect, {CONFIG: text}))
    for i, (cid, text, expect) in enumerate(BAD_STATES):
        cases.append(Case(cid, STATE_CMDS[i % len(STATE_CMDS)], expect, {CONFIG: GOOD, STATE: text}))
    for argv in (["plan"], ["apply", "--auto-approve"], ["destroy", "--auto-approve"], ["import", "beta", "beta-1"]):
        cases.append(
            Case(f"state-foreign-{argv[0]}", argv, ["someone-else", "another account"], {CONFIG: GOOD, STATE: FOREIGN})
        )
    return cases + PLANFILE_CASES + ARG_CASES


CASES = build_cases()


# -- running ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    world = serve_world(tmp_path_factory.mktemp("badinput"), provision_seconds=0.2)
    yield world
    world.server.stop()


def _write(folder: Path, files: dict[str, bytes | str], url: str = "") -> None:
    for name, content in files.items():
        data = content if isinstance(content, bytes) else content.replace("{url}", url).encode("utf-8")
        (folder / name).write_bytes(data)
        (folder / name).chmod(0o600 if name == STATE else 0o644)


def _cli(folder: Path, *args: str):
    argv = list(args)
    if "-f" not in argv and argv and argv[0] not in ("plon",):
        argv = (
            [*argv[:2], "-f", str(folder / CONFIG), *argv[2:]]
            if argv[0] == "state"
            else [argv[0], "-f", str(folder / CONFIG), *argv[1:]]
        )
    return run_cli(["--no-color", *argv], env={KEY_ENV: API_KEY, "NO_COLOR": "1"}, cwd=folder)


SEEN: dict[str, int] = {}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_fails_cleanly_and_changes_nothing(case: Case, tmp_path: Path, served):
    folder = tmp_path / "ws"
    folder.mkdir()
    _write(folder, case.files, served.url)
    if case.setup:
        case.setup(folder, served.url)
    if not case.id.startswith("config-"):
        (folder / (STATE + ".lock")).touch(mode=0o600)  # a used workspace has one
    before = snapshot(folder)
    result = _cli(folder, *case.argv)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert "Error" in result.stderr, result.output
    assert "Unexpected internal error" not in result.stderr, result.stderr
    assert len(result.stderr) < MAX_STDERR, result.stderr[:2000]
    for word in case.expect:
        assert word.lower() in result.stderr.lower(), f"{word!r} not in: {result.stderr}"
    assert snapshot(folder) == before, "the failed command changed a file"
    assert API_KEY not in result.output
    SEEN[case.id] = 1
    record_figures(
        "bad_input_corpus",
        {"cases": len(CASES), "passed_so_far": len(SEEN), "commands": sorted({c.argv[0] for c in CASES})},
    )


def test_the_corpus_is_big_enough():
    assert len(CASES) >= 60
    assert {"plan", "apply", "validate", "show", "state"} <= {c.argv[0] for c in CASES}


@pytest.mark.parametrize(
    "value",
    [
        float("nan"),
        float("inf"),
        -1,
        2**63,
        "-5",
        "nan",
        "inf",
        "1e3",
        "\u0661\u0662\u0663",
        "999999999h",
        "1.5h",
        True,
        1.0,
    ],
)
def test_parse_duration_refuses_non_finite_and_absurd_values(value):
    from rlorinfra.config.durations import parse_duration

    with pytest.raises(ValueError):
        parse_duration(value)


@pytest.mark.parametrize("value,seconds", [(0, 0), ("90", 90), ("1h30m", 5400), (366 * 86400, 366 * 86400)])
def test_parse_duration_still_takes_sane_values(value, seconds):
    from rlorinfra.config.durations import parse_duration

    assert parse_duration(value) == seconds


@pytest.mark.parametrize("text", ["nan", "-nan", "inf", "+inf", "-inf", "Infinity", "1e400", "-0.5", "1e10", "x", ""])
def test_finite_float_refuses_what_float_range_lets_through(text):
    import click

    from rlorinfra.cli.common import FiniteFloat

    with pytest.raises(click.BadParameter):
        FiniteFloat(min=0).convert(text, None, None)


def test_finite_float_with_a_range_for_other_options():
    import click

    from rlorinfra.cli.common import FiniteFloat

    rate, period = FiniteFloat(min=0, max=1), FiniteFloat(min=0, min_open=True)
    assert rate.convert("0.25", None, None) == 0.25 and period.convert("0.5", None, None) == 0.5
    for kind, text in ((rate, "nan"), (rate, "1.5"), (rate, "-0.1"), (period, "0"), (period, "nan")):
        with pytest.raises(click.BadParameter):
            kind.convert(text, None, None)
    assert rate._describe_range() == "0<=x<=1" and FiniteFloat(min=0)._describe_range() == "x>=0"


def test_finite_float_takes_ordinary_seconds():
    from rlorinfra.cli.common import FiniteFloat

    assert [FiniteFloat(min=0).convert(v, None, None) for v in ("0", "2.5", " 30 ", 900.0, 7)] == [0, 2.5, 30, 900, 7]


def test_import_refuses_a_state_of_another_account_even_for_a_live_job(tmp_path, served):
    """Regression: import used to write a job of this account into a foreign state."""
    served.store.create_job(
        {"displayName": "beta", "trainingConfig": {"baseModel": MODEL.split('"')[1]}},
        {"rlorTrainerJobId": "beta-live01"},
    )
    folder = tmp_path / "ws"
    folder.mkdir()
    _write(folder, {CONFIG: GOOD, STATE: FOREIGN}, served.url)
    (folder / (STATE + ".lock")).touch(mode=0o600)
    before = snapshot(folder)
    result = _cli(folder, "import", "beta", "beta-live01")
    assert result.exit_code == 1
    assert "another account" in result.stderr and "someone-else" in result.stderr
    assert snapshot(folder) == before


# -- property: random TOML through `rlorinfra validate` ------------------------------------

FIELD_NAMES = [
    "base_model",
    "lora_rank",
    "max_context_length",
    "learning_rate",
    "training_shape",
    "node_count",
    "desired_state",
    "prevent_destroy",
    "inactivity_timeout",
    "accelerator_type",
    "accelerator_count",
    "region",
    "extra_args",
    "gradient_accumulation_steps",
    "skip_validations",
    "forward_only",
    "trainer_replica_count",
    "use_reservation",
    "hot_load_deployment_id",
    "bogus",
    "Base-Model",
]
TOML_SCALARS = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True),
    st.text(max_size=30),
    st.sampled_from(
        [
            "running",
            "stopped",
            "ts-qwen3-8b-policy",
            "30m",
            "4h",
            "local",
            "accounts/fireworks/models/qwen3-8b",
            "NVIDIA_H100_80GB",
            "",
        ]
    ),
)
TOML_VALUES = st.one_of(TOML_SCALARS, st.lists(TOML_SCALARS, max_size=3))
JOB_TABLES = st.dictionaries(st.sampled_from(FIELD_NAMES), TOML_VALUES, max_size=6)
DOCUMENTS = st.fixed_dictionaries(
    {"jobs": st.dictionaries(st.text(min_size=1, max_size=70), JOB_TABLES, max_size=3)},
    optional={
        "defaults": JOB_TABLES,
        "control_plane": st.dictionaries(
            st.sampled_from(["url", "api_key_env", "account_id", "allow_insecure", "api_key", "timeout"]),
            TOML_SCALARS,
            max_size=3,
        ),
        "state": st.dictionaries(st.sampled_from(["path", "backend"]), TOML_SCALARS, max_size=2),
    },
)


def _mutate(text: str, data) -> bytes:
    """Random damage to a TOML text: truncate, flip a byte, duplicate a line, or nothing."""
    raw = text.encode("utf-8")
    kind = data.draw(st.sampled_from(["none", "truncate", "flip", "duplicate"]))
    if not raw or kind == "none":
        return raw
    at = data.draw(st.integers(0, len(raw) - 1))
    if kind == "truncate":
        return raw[:at]
    if kind == "flip":
        return raw[:at] + bytes([data.draw(st.integers(0, 255))]) + raw[at + 1 :]
    lines = text.splitlines(keepends=True)
    i = at % len(lines)
    return "".join(lines[: i + 1] + lines[i:]).encode("utf-8")


PROPERTY = {"examples": 0, "valid": 0, "invalid": 0}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=DOCUMENTS, data=st.data())
def test_validate_on_random_toml_exits_0_or_1_cleanly(tmp_path, doc, data):
    import tomli_w

    from rlorinfra.config.load import load_config_bytes
    from rlorinfra.errors import ConfigError

    raw = _mutate(tomli_w.dumps(doc), data)
    path = tmp_path / "random.toml"
    path.write_bytes(raw)
    result = run_cli(["--no-color", "validate", "-f", str(path)], env={"NO_COLOR": "1"})
    assert result.exit_code in (0, 1), result.output
    assert "Traceback" not in result.output and "Unexpected internal error" not in result.output
    PROPERTY["examples"] += 1
    try:
        config = load_config_bytes(raw, path, {})
    except ConfigError:
        assert result.exit_code == 1 and result.stderr.startswith("Error:"), result.output
        PROPERTY["invalid"] += 1
    else:
        assert result.exit_code == 0 and config.jobs is not None, result.output
        PROPERTY["valid"] += 1
    record_figures(
        "config_property",
        {
            "random_documents": PROPERTY["examples"],
            "valid": PROPERTY["valid"],
            "rejected_cleanly": PROPERTY["invalid"],
            "crashes": 0,
        },
    )
