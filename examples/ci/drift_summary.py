#!/usr/bin/env python3
"""Turn `rlorinfra plan --json` output into a Markdown drift report.

Used by github-actions-drift.yml, which appends the report to $GITHUB_STEP_SUMMARY:

    python3 drift_summary.py plan.json >> "$GITHUB_STEP_SUMMARY"

The input is the plan document (keys `format_version`, `changes[]`, `drift[]`,
`summary`; see docs/planning.md). Standard library only, so it runs on any runner.
"""

from __future__ import annotations

import json
import sys

ACTION_WORDS = {"create": "create", "resume": "resume", "wait": "wait for readiness",
                "replace": "replace", "stop": "stop", "delete": "delete"}


def cell(value: object) -> str:
    """A Markdown table cell: pipes escaped, newlines flattened."""
    return str(value if value is not None else "").replace("|", "\\|").replace("\n", " ")


def drift_table(drift: list[dict]) -> list[str]:
    lines = ["### Changed outside rlorinfra", "", "| job | kind | recorded | live | detail |",
             "|---|---|---|---|---|"]
    for item in drift:
        lines.append("| " + " | ".join(cell(item.get(key)) for key in
                                       ("name", "kind", "recorded_state", "live_state", "detail")) + " |")
    return lines + [""]


def changes_table(changes: list[dict]) -> list[str]:
    lines = ["### What `rlorinfra apply` would do", "", "| job | action | reason |", "|---|---|---|"]
    for change in changes:
        action = ACTION_WORDS.get(change.get("action"), change.get("action"))
        lines.append(f"| {cell(change.get('name'))} | {cell(action)} | {cell(change.get('reason'))} |")
    return lines + [""]


def report(document: dict) -> str:
    """The Markdown report for one plan document."""
    if document.get("format_version") not in (1, 2):  # 2 added cost keys this report does not use
        raise SystemExit(f"unsupported plan format_version {document.get('format_version')!r}")
    drift = document.get("drift", [])
    changes = [c for c in document.get("changes", []) if c.get("action") != "noop"]
    summary = document.get("summary", {})
    if not drift and not changes:
        return "## rlorinfra: no drift\n\nThe trainer jobs match the configuration.\n"
    counts = ", ".join(f"{summary.get(a, 0)} to {w}" for a, w in ACTION_WORDS.items() if summary.get(a))
    title = (f"drift detected ({len(drift)} job(s) changed outside rlorinfra)" if drift
             else "changes pending (the configuration is not applied)")
    lines = [f"## rlorinfra: {title}", "",
             f"Plan: {counts or 'no actions'}.", ""]
    if drift:
        lines += drift_table(drift)
    if changes:
        lines += changes_table(changes)
    lines.append("Run `rlorinfra plan` to see the details and `rlorinfra apply` to converge.")
    return "\n".join(lines) + "\n"


USAGE = """\
usage: drift_summary.py PLAN_JSON

Print a Markdown drift report for PLAN_JSON, the output of
`rlorinfra plan --detailed-exitcode --json > plan.json`. In GitHub Actions:

    python3 drift_summary.py plan.json >> "$GITHUB_STEP_SUMMARY"
"""


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[1] in ("-h", "--help"):
        sys.stdout.write(USAGE)
        return 0
    if len(argv) != 2:
        sys.stderr.write(USAGE)
        return 1
    with open(argv[1], encoding="utf-8") as handle:
        document = json.load(handle)
    sys.stdout.write(report(document))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
