"""Resource kinds and addresses (DESIGN.md §3).

Every managed thing is a resource with an address ``kind.name``: ``job.grpo-policy``
(an RLOR trainer job, keyed by display name) or ``deployment.grpo-rollout`` (a
serving deployment, keyed by deployment ID). Addresses are what plans, state,
events and the command line name resources by.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    """A resource kind; its value is the address prefix and the state section key."""

    JOB = "job"
    DEPLOYMENT = "deployment"

    @property
    def plural(self) -> str:
        """The config table and state section name (``jobs``, ``deployments``)."""
        return f"{self.value}s"


@dataclass(frozen=True, order=True)
class Address:
    """``kind.name``: one resource, by kind and by the name the config declares it under.

    Ordered by kind, then name, so sorted addresses group by kind.
    """

    kind: Kind
    name: str

    def __str__(self) -> str:
        return f"{self.kind.value}.{self.name}"

    @classmethod
    def job(cls, name: str) -> Address:
        """The address of trainer job ``name``."""
        return cls(Kind.JOB, name)

    @classmethod
    def parse(cls, text: str, *, known: Iterable[Address] = ()) -> Address:
        """``job.NAME`` / ``deployment.NAME``, or a bare ``NAME`` when unambiguous.

        A bare name resolves to the one known address carrying it; with none it is a
        job (the only kind there used to be); with several it is ambiguous (ValueError).
        """
        kind_text, dot, rest = text.partition(".")
        if dot and rest and kind_text in {k.value for k in Kind}:
            return cls(Kind(kind_text), rest)
        matches = sorted({a for a in known if a.name == text})
        if len(matches) > 1:
            spelled = " or ".join(f"`{a}`" for a in matches)
            raise ValueError(f"`{text}` is ambiguous: write {spelled}")
        return matches[0] if matches else cls.job(text)
