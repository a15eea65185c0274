"""Spec comparison: which top-level spec fields differ between two specs.

The control plane has no update call, so every differing field forces a
replacement; the planner only needs the *names* of those fields, and the
renderer shows their old and new values. deepdiff does the comparison so that
nested values (``extra_args`` lists) are compared structurally, and so that
``1`` vs ``1.0`` or a tuple vs a list (TOML vs JSON round trips) are not
reported as changes.

Also the arithmetic of accelerator counts every kind's changes share
(``negated``, ``difference``).
"""

from __future__ import annotations

from typing import Any


def changed_fields(before: dict[str, Any], after: dict[str, Any]) -> tuple[str, ...]:
    """Top-level keys whose values differ (added, removed or changed), sorted."""
    if before == after:  # the common case; skips importing deepdiff at all
        return ()
    # Imported here: deepdiff takes a noticeable fraction of a second to import
    # and most CLI runs (validate, output, state list) never diff anything.
    from deepdiff import DeepDiff

    options: dict[str, Any] = {
        "ignore_numeric_type_changes": True,
        "ignore_type_in_groups": [(list, tuple)],
    }
    try:
        # deepdiff >= 8 reports two dicts with few shared keys as one root-level
        # change unless told to always descend; we need per-key results.
        diff = DeepDiff(before, after, threshold_to_diff_deeper=0, **options)
    except TypeError:  # deepdiff 7 has no such option and always descends
        diff = DeepDiff(before, after, **options)
    keys = {str(key) for key in diff.affected_root_keys}
    if diff and not keys:  # a root-level report: fall back to comparing key sets
        keys = {k for k in set(before) | set(after) if k not in before or k not in after}
        keys |= {k for k in set(before) & set(after) if DeepDiff(before[k], after[k], **options)}
    return tuple(sorted(keys))


def negated(counts: dict[str, int]) -> dict[str, int]:
    """Accelerator counts with their signs flipped (what a release gives back)."""
    return {k: -v for k, v in counts.items()}


def difference(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    """``after - before`` per accelerator type, keeping only non-zero entries."""
    out = {k: after.get(k, 0) - before.get(k, 0) for k in sorted(set(after) | set(before))}
    return {k: v for k, v in out.items() if v}
