"""``[deployments.NAME]``: serving deployments that hot-load a trainer (DESIGN.md §2, PROTOCOL.md §10).

NAME is the deployment ID. Fields follow the SDK's ``DeploymentConfig`` (shape path
``deployment_shape``, or manual path ``accelerator_type`` + ``accept_shapeless_risk``), plus
``hot_load_trainer`` (a job of the same file), ``prevent_destroy`` and ``ttl``. Cross-resource
rules run once every table is read: unknown trainers, mixed hot-load scopes, dependency cycles.
Every problem names the file, the line, the address ``deployment.NAME`` and the key.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from rlorinfra.config import fields as F
from rlorinfra.config.diagnostics import ERROR, Collector
from rlorinfra.config.durations import FORMAT_HINT
from rlorinfra.config.model import ControlPlaneSettings, DeploymentSpec, JobSpec, ShapeSource
from rlorinfra.model.deployments import HotLoadTransition, is_valid_deployment_id

_SEGMENT = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
_DEPLOYMENT_SHAPE_RE = re.compile(rf"^accounts/{_SEGMENT}/deploymentShapes/{_SEGMENT}(?:/versions/{_SEGMENT})?$")
_SHAPE_ID_RE = re.compile(rf"^{_SEGMENT}$")
MAX_ANNOTATIONS = 64
MAX_REPLICAS = 1000

UnknownKey = Callable[..., None]  # load._unknown_key, passed in (load imports this module)


def deployment_shape(value: Any) -> str | None:
    """A short deployment-shape id (owner ``fireworks``) or a full name; ``""`` means unset."""
    given = F.text(value, allow_empty=True, spaces=False)
    if not given:
        return None
    if given.startswith("accounts/"):
        if not _DEPLOYMENT_SHAPE_RE.match(given):
            raise F.Invalid("must be a shape id or accounts/<account>/deploymentShapes/<shape>[/versions/<version>], "
                            f"{F.got(given)}")  # fmt: skip
        return given
    if not _SHAPE_ID_RE.match(given):
        raise F.Invalid(f"must be a deployment shape id or a full shape name, {F.got(given)}")
    return f"accounts/fireworks/deploymentShapes/{given}"


def hot_load_transition(value: Any) -> HotLoadTransition:
    """``"async"`` or ``"sync"``, any case (the SDK upper-cases it, PROTOCOL.md §10.2)."""
    if isinstance(value, str) and value.strip().upper() in tuple(HotLoadTransition):
        return HotLoadTransition(value.strip().upper())
    raise F.Invalid(f'must be "async" or "sync", {F.got(value)}')


def string_map(value: Any) -> tuple[tuple[str, str], ...]:
    """A table of strings, as sorted pairs (frozen and hashable)."""
    if not isinstance(value, dict):
        raise F.Invalid(f"must be a table of strings, {F.got(value)}", 'For example annotations = { team = "rl" }.')
    if len(value) > MAX_ANNOTATIONS:
        raise F.Invalid(f"must have at most {MAX_ANNOTATIONS} entries, got {len(value)}")
    for key, item in value.items():
        try:
            F.text(item, allow_empty=True)
        except F.Invalid as exc:
            raise F.Invalid(f"entry {F.show(key)} {exc.summary}") from None
    return tuple(sorted(value.items()))


def description(value: Any) -> str:
    """Free text (at most 1024 characters, no control characters)."""
    return F.text(value, allow_empty=True)


def _rule(name: str, check: F.Check, type_doc: str, default_doc: str, doc: str, *,
          replaces: str = "update") -> F.FieldRule:  # fmt: skip
    return F.FieldRule(name, check, type_doc, default_doc, "all", replaces, doc)


# "replaces" here reads: what changing the value does (the planner's decision table decides it
# precisely; these are the facts the docs show).
DEPLOYMENT_RULES: dict[str, F.FieldRule] = {r.name: r for r in (
    _rule("base_model", F.base_model, "string", "required", "Model served, `accounts/<a>/models/<m>`.",
          replaces="replace"),
    _rule("deployment_shape", deployment_shape, "string", "the trainer's", "Deployment shape (shape path).",
          replaces="replace"),
    _rule("accelerator_type", F.accelerator_type, "string", "unset", "Accelerator (manual path).",
          replaces="replace"),
    _rule("accept_shapeless_risk", F.boolean, "boolean", "false", "Acknowledge the manual path.",
          replaces="replace"),
    _rule("min_replica_count", F.integer(0, MAX_REPLICAS), "integer >= 0", "0", "Minimum replicas."),
    _rule("max_replica_count", F.integer(0, MAX_REPLICAS), "integer >= 0", "1", "Maximum replicas."),
    _rule("region", F.region, "string", "unset (global)", "Region.", replaces="replace"),
    _rule("hot_load_transition", hot_load_transition, "string", '"async"', '"async" or "sync".'),
    _rule("enable_hot_load", F.boolean, "boolean", "true", "Serve hot-loaded snapshots.", replaces="replace"),
    _rule("disable_speculative_decoding", F.boolean, "boolean", "false", "Ignore speculative decoding.",
          replaces="replace"),
    _rule("annotations", string_map, "table of strings", "unset", "Annotations.", replaces="replace"),
    _rule("description", description, "string", "unset", "Description."),
    _rule("hot_load_trainer", F.text, "string", "unset", "A job of this file whose checkpoints are served."),
    _rule("extra_args", F.extra_args, "array of strings", "unset", "Serving arguments (superuser key).",
          replaces="replace"),
    _rule("extra_values", string_map, "table of strings", "unset", "Serving values (superuser key).",
          replaces="replace"),
    _rule("preemptible", F.boolean, "boolean", "false", "Preemptible replicas (admin key).", replaces="replace"),
    _rule("prevent_destroy", F.boolean, "boolean", "false", "Refuse plans that delete it.", replaces="never"),
    _rule("ttl", F.ttl, "duration", "unset", f"Delete it this long after creation: {FORMAT_HINT}.",
          replaces="never"),
)}  # fmt: skip

DEPLOYMENT_ALIASES = {
    "shape": "deployment_shape", "model": "base_model", "trainer": "hot_load_trainer",
    "hot_load_trainer_job": "hot_load_trainer", "hot_load_transition_type": "hot_load_transition",
    "replicas": "max_replica_count", "gpu_type": "accelerator_type", "min_replicas": "min_replica_count",
    "max_replicas": "max_replica_count",
}  # fmt: skip
MANUAL_FIELDS = ("accelerator_type", "accept_shapeless_risk")
# PROTOCOL.md §6.4: what a customer key may not send on a deployment create.
PRIVILEGED_FIELDS = {"extra_args": "a superuser", "extra_values": "a superuser", "preemptible": "an admin"}


class _Ctx:
    """What one deployment's checks report into: the collector and where the table lives."""

    def __init__(self, name: str, c: Collector) -> None:
        self.name, self.c, self.address = name, c, f"deployment.{name}"

    def error(self, key: str | None, summary: str, hint: str = "") -> None:
        where = ("deployments", self.name) + ((key,) if key else ())
        self.c.error(summary, hint, key=key, where=where, address=self.address)

    def warning(self, key: str, summary: str, hint: str = "") -> None:
        self.c.warning(summary, hint, key=key, where=("deployments", self.name, key), address=self.address)


def check_deployments(value: Any, jobs_table: Mapping[str, Any], jobs: Mapping[str, JobSpec],
                      cp: ControlPlaneSettings, c: Collector,
                      unknown_key: UnknownKey) -> dict[str, DeploymentSpec]:  # fmt: skip
    """Check ``[deployments]``; return the valid ``DeploymentSpec``s by deployment ID.

    ``jobs_table`` is the raw ``[jobs]`` table (a trainer that failed its own checks still
    exists, so naming it is no second error); ``jobs`` are the valid jobs.
    """
    if value is None:
        return {}
    if not isinstance(value, dict):
        c.error(f"deployments must be a table, {F.got(value)}", "Write each as a [deployments.NAME] section.",
                key="deployments", where=("deployments",))  # fmt: skip
        return {}
    out: dict[str, DeploymentSpec] = {}
    for name, body in value.items():
        spec = _deployment(name, body, jobs_table, jobs, cp, _Ctx(name, c), unknown_key)
        if spec is not None:
            out[name] = spec
    _check_cycles(out, c)
    return out


def _deployment(name: str, body: Any, jobs_table: Mapping[str, Any], jobs: Mapping[str, JobSpec],
                cp: ControlPlaneSettings, ctx: _Ctx, unknown_key: UnknownKey) -> DeploymentSpec | None:  # fmt: skip
    errors_before = _errors(ctx.c)
    if not is_valid_deployment_id(name):
        ctx.error(
            None,
            f"deployment ID {F.show(name)} must be 1-63 lowercase letters, digits or hyphens, "
            "starting with a letter or digit",
            "The table key of [deployments.NAME] is the deployment ID.",
        )
    if not isinstance(body, dict):
        ctx.error(
            None,
            f"deployments.{F.show(name)} must be a table, {F.got(body)}",
            f'Declare it as [deployments.{name}] with base_model = "..." and so on.',
        )
        return None
    good = _fields(body, ctx, unknown_key)
    if "base_model" not in body:
        ctx.error("base_model", "base_model is required", 'Add base_model = "accounts/fireworks/models/<model>".')
    _check_replicas(good, set(body), ctx)
    source = _check_shape_path(good, set(body), jobs, ctx)
    _check_trainer(good, jobs_table, jobs, ctx)
    _check_privileged(good, cp, ctx)
    if _errors(ctx.c) > errors_before:
        return None
    return DeploymentSpec(deployment_id=name, shape_source=source, **good)


def _errors(c: Collector) -> int:
    return sum(1 for p in c.pending if p.severity == ERROR)


def _fields(body: dict[str, Any], ctx: _Ctx, unknown_key: UnknownKey) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in body.items():
        rule = DEPLOYMENT_RULES.get(key)
        where = ("deployments", ctx.name, key)
        if rule is None:
            before = len(ctx.c.pending)
            unknown_key(key, DEPLOYMENT_RULES, ctx.c, job=None, key=key, where=where,
                        table=f"[deployments.{ctx.name}]", aliases=DEPLOYMENT_ALIASES)  # fmt: skip
            for pending in ctx.c.pending[before:]:  # _unknown_key speaks of jobs; tag its report with our address
                pending.address = ctx.address
            continue
        try:
            out[key] = rule.check(value)
        except F.Invalid as exc:
            ctx.error(key, f"{key} {exc.summary}", exc.hint)
    return out


def _check_replicas(good: dict[str, Any], written: set[str], ctx: _Ctx) -> None:
    # Negative counts fail their integer rule (reported already); here only the pair of good values.
    if {"min_replica_count", "max_replica_count"} & written - set(good):
        return
    low, high = good.get("min_replica_count", 0), good.get("max_replica_count", 1)
    if low > high:
        ctx.error(
            "min_replica_count",
            f"min_replica_count ({low}) must not exceed max_replica_count ({high})",
            "Raise max_replica_count or lower min_replica_count.",
        )


def _check_shape_path(good: dict[str, Any], written: set[str], jobs: Mapping[str, JobSpec],
                      ctx: _Ctx) -> ShapeSource:  # fmt: skip
    """Shape path or manual path, never both (PROTOCOL.md §10.2); returns where the shape comes from."""
    if good.get("deployment_shape"):
        for key in MANUAL_FIELDS:
            if good.get(key):
                ctx.error(
                    key,
                    f"{key} is not allowed with deployment_shape: the server rejects it next to a shape",
                    f"Remove {key} to use the shape, or remove deployment_shape for the manual path.",
                )
        return ShapeSource.DECLARED
    if good.get("accelerator_type"):
        if not good.get("accept_shapeless_risk"):
            ctx.error("accelerator_type", "accelerator_type selects the manual path (no shape validation), "
                      "which needs accept_shapeless_risk = true",
                      "Add accept_shapeless_risk = true to acknowledge it, or set deployment_shape.")  # fmt: skip
        return ShapeSource.MANUAL
    trainer = jobs.get(good.get("hot_load_trainer") or "")
    if trainer is not None and trainer.training_shape:
        return ShapeSource.TRAINER  # as DeploymentConfig.from_training_profile: the training shape's one
    if not written & {"deployment_shape", "accelerator_type", "hot_load_trainer"}:
        ctx.error(
            None,
            "a deployment needs deployment_shape, or accelerator_type with accept_shapeless_risk",
            "Set deployment_shape, or hot_load_trainer naming a job with training_shape (its deployment "
            "shape is used), or accelerator_type + accept_shapeless_risk = true for the manual path.",
        )
    elif trainer is not None:
        ctx.error("hot_load_trainer", f'hot_load_trainer "{trainer.display_name}" has no training_shape, so '
                  "there is no deployment shape to default to",
                  "Set deployment_shape, or accelerator_type + accept_shapeless_risk = true.")  # fmt: skip
    return ShapeSource.MANUAL


def _check_trainer(good: dict[str, Any], jobs_table: Mapping[str, Any], jobs: Mapping[str, JobSpec],
                   ctx: _Ctx) -> None:  # fmt: skip
    trainer = good.get("hot_load_trainer")
    if trainer is None:
        return
    if trainer not in jobs_table:
        hint = F.suggestion(trainer, list(jobs_table)) or f"Jobs in this file: {', '.join(jobs_table) or 'none'}."
        ctx.error("hot_load_trainer", f"hot_load_trainer names {F.show(trainer)}, which is no job of this file", hint)
        return
    job = jobs.get(trainer)
    if job is not None and job.hot_load_deployment_id == ctx.name:
        ctx.error("hot_load_trainer", f'both hot-load scopes at once: job "{trainer}" sets the deprecated '
                  f'hot_load_deployment_id = "{ctx.name}" (PER_DEPLOYMENT) and this deployment names it as '
                  "hot_load_trainer (PER_TRAINER)",
                  f'Remove hot_load_deployment_id from [jobs."{trainer}"]: the server rejects mixing them '
                  "(hotload flow mismatch).")  # fmt: skip


def _check_privileged(good: dict[str, Any], cp: ControlPlaneSettings, ctx: _Ctx) -> None:
    """extra_args/extra_values (superuser), preemptible (admin): an error on the embedded emulator."""
    for key, who in PRIVILEGED_FIELDS.items():
        if not good.get(key):
            continue
        if cp.is_local:
            ctx.error(key, f"{key} needs {who} API key, and the embedded emulator's key is a customer key",
                      f"Remove {key}, or serve an emulator with `rlorinfra control-plane serve --superuser-key KEY` "
                      "and point [control_plane] url at it.")  # fmt: skip
        else:
            ctx.warning(key, f"{key} needs {who} API key on the real control plane", "Customer keys get HTTP 400.")


def dependency_edges(deployments: Mapping[str, DeploymentSpec]) -> dict[str, tuple[str, ...]]:
    """Address -> the addresses it depends on (today only deployment -> job)."""
    return {spec.address: spec.depends_on for spec in deployments.values()}


def find_cycles(edges: Mapping[str, tuple[str, ...]]) -> list[tuple[str, ...]]:
    """Every dependency cycle in ``edges``, each once, as the addresses along it (depth-first)."""
    cycles: list[tuple[str, ...]] = []
    seen_sets: set[frozenset[str]] = set()
    done: set[str] = set()

    def visit(node: str, stack: list[str]) -> None:
        if node in stack:
            cycle = tuple(stack[stack.index(node) :])
            if frozenset(cycle) not in seen_sets:
                seen_sets.add(frozenset(cycle))
                cycles.append(cycle)
            return
        if node in done:
            return
        stack.append(node)
        for target in edges.get(node, ()):
            visit(target, stack)
        stack.pop()
        done.add(node)

    for start in sorted(edges):
        visit(start, [])
    return cycles


def _check_cycles(deployments: Mapping[str, DeploymentSpec], c: Collector) -> None:
    for cycle in find_cycles(dependency_edges(deployments)):
        report_cycle(cycle, c)


def report_cycle(cycle: tuple[str, ...], c: Collector) -> None:
    """One error for a dependency cycle, at its first deployment's table."""
    first = next((a for a in cycle if a.startswith("deployment.")), cycle[0])
    name = first.split(".", 1)[1]
    chain = " -> ".join((*cycle, cycle[0]))
    c.error(f"dependency cycle: {chain}", "Break the cycle: a resource cannot wait for itself.",
            key="hot_load_trainer", where=("deployments", name, "hot_load_trainer"), address=first)  # fmt: skip
