"""Diagnostics of a config check: every error and warning, with file, job, key and line.

``validate_config`` returns a ``Report`` instead of raising at the first
problem, so ``rlorinfra validate`` can print (or ``--json``) all of them at
once. ``Report.config_or_raise`` turns errors into one ``ConfigError``.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlorinfra.config.model import Config
from rlorinfra.errors import ConfigError

FORMAT_VERSION = 1
ERROR = "error"
WARNING = "warning"

KeyPath = tuple[str, ...]


@dataclass(frozen=True)
class Diagnostic:
    """One problem (``error``) or note (``warning``) about the config file."""

    severity: str
    summary: str  # names the key, e.g. 'lora_rank must be an integer >= 0, got -1'
    detail: str = ""  # what to do about it
    file: str = ""
    job: str | None = None
    key: str | None = None
    line: int | None = None
    address: str | None = None  # a resource other than a job, e.g. ``deployment.grpo-rollout``

    @property
    def resource_address(self) -> str | None:
        """The address of the resource it is about (``job.x``, ``deployment.y``), None for file-level problems."""
        if self.address is not None:
            return self.address
        return None if self.job is None else f"job.{self.job}"

    def message(self) -> str:
        """One line: ``file:line: job "x": summary. detail`` (or ``file:line: deployment.x: ...``)."""
        where = f"{self.file}:{self.line}" if self.line else self.file
        if self.job is not None:
            where += f': job "{self.job}"'
        elif self.address is not None:
            where += f": {self.address}"
        text = f"{where}: {self.summary}"
        if not text.endswith((".", "?")):
            text += "."
        return f"{text} {self.detail}" if self.detail else text

    def to_json(self) -> dict[str, Any]:
        """The ``diagnostics[]`` element of ``validate --json``."""
        return {
            "severity": self.severity,
            "summary": self.summary,
            "detail": self.detail,
            "file": self.file,
            "job": self.job,
            "key": self.key,
            "line": self.line,
            "address": self.resource_address,
        }


@dataclass(frozen=True)
class Report:
    """Outcome of checking one config file: the ``Config`` (when valid) and all diagnostics."""

    path: Path
    diagnostics: tuple[Diagnostic, ...]
    config: Config | None = None
    fatal: bool = False  # the file could not be read at all (missing, directory, not UTF-8)

    @property
    def errors(self) -> tuple[Diagnostic, ...]:
        """The error diagnostics, in file order."""
        return tuple(d for d in self.diagnostics if d.severity == ERROR)

    @property
    def warnings(self) -> tuple[Diagnostic, ...]:
        """The warning diagnostics, in file order."""
        return tuple(d for d in self.diagnostics if d.severity == WARNING)

    @property
    def valid(self) -> bool:
        """True when there is no error (warnings allowed)."""
        return not self.errors and self.config is not None

    def to_json(self) -> dict[str, Any]:
        """The ``validate --json`` document (``format_version`` 1)."""
        return {
            "format_version": FORMAT_VERSION,
            "valid": self.valid,
            "error_count": len(self.errors),
            "warning_count": len(self.warnings),
            "diagnostics": [d.to_json() for d in self.diagnostics],
        }

    def config_or_raise(self) -> Config:
        """The valid ``Config``, or a ``ConfigError`` listing every problem, one per line."""
        if self.valid:
            assert self.config is not None
            return self.config
        raise self.error()

    def error(self) -> ConfigError:
        """The ``ConfigError`` for an invalid report."""
        problems = tuple(d.message() for d in self.errors)
        if self.fatal:
            first = self.errors[0]
            return ConfigError(first.summary, first.detail, problems=problems)
        count = len(problems)
        noun = "problem" if count == 1 else "problems"
        detail = "\n".join(problems) + "\n\nFix them and run `rlorinfra validate` again."
        return ConfigError(f"Invalid configuration: {count} {noun} in {self.path}", detail, problems=problems)


# --------------------------------------------------------------------------- collecting


@dataclass
class Pending:
    """A diagnostic whose line is looked up once all checks ran."""

    severity: str
    summary: str
    detail: str
    job: str | None
    key: str | None
    where: KeyPath
    line: int | None = None
    address: str | None = None


@dataclass
class Collector:
    """Gathers diagnostics during a check; lines are resolved at the end, best effort."""

    file: str
    text: str = ""
    pending: list[Pending] = field(default_factory=list)
    _index: dict[KeyPath, int] | None = None

    def error(self, summary: str, detail: str = "", *, job: str | None = None, key: str | None = None,
              where: KeyPath = (), line: int | None = None, address: str | None = None) -> None:  # fmt: skip
        """Record an error at the TOML key path ``where``."""
        self.pending.append(Pending(ERROR, summary, detail, job, key, where, line, address))

    def warning(self, summary: str, detail: str = "", *, job: str | None = None, key: str | None = None,
                where: KeyPath = (), address: str | None = None) -> None:  # fmt: skip
        """Record a warning at the TOML key path ``where``."""
        self.pending.append(Pending(WARNING, summary, detail, job, key, where, address=address))

    @property
    def has_errors(self) -> bool:
        """True once any error was recorded."""
        return any(p.severity == ERROR for p in self.pending)

    def diagnostics(self) -> tuple[Diagnostic, ...]:
        """The final diagnostics, with line numbers where the text shows them."""
        if self._index is None and any(p.where and p.line is None for p in self.pending):
            self._index = line_index(self.text)
        index = self._index or {}
        found = [
            Diagnostic(p.severity, p.summary, p.detail, self.file, p.job, p.key,
                       p.line if p.line is not None else lookup_line(index, p.where), p.address)
            for p in self.pending
        ]  # fmt: skip
        # File order reads best; diagnostics without a line keep their place at the end.
        return tuple(sorted(found, key=lambda d: (d.line is None, d.line or 0)))


# --------------------------------------------------------------------------- line lookup

# A bare or quoted key, possibly dotted: the part of a line before ``=``.
_SIMPLE_KEY = r"""(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*')"""
_KEY_RE = re.compile(rf"^\s*({_SIMPLE_KEY}(?:\s*\.\s*{_SIMPLE_KEY})*)\s*=")
_HEADER_RE = re.compile(r"^\s*\[\[?(.*?)\]\]?\s*(?:#.*)?$")


def line_index(text: str) -> dict[KeyPath, int]:
    """Map each table header and key path to the first line it appears on (best effort).

    Each header and key is parsed with ``tomllib`` on its own, so quoting and
    dots are handled exactly as TOML does; lines inside multi-line strings may
    be misread, which only costs a line number.
    """
    index: dict[KeyPath, int] = {}
    for number, table, key in _scan(text):
        index.setdefault(table + key, number)
    return index


def path_at_line(text: str, line: int) -> KeyPath:
    """The table (plus the key, if that line has one) in effect at ``line``; locates syntax errors."""
    found: KeyPath = ()
    for number, table, key in _scan(text):
        if number > line:
            break
        found = table + key if number == line else table
    return found


def _scan(text: str) -> Iterator[tuple[int, KeyPath, KeyPath]]:
    """Yield ``(line number, table, key)`` for header lines (key ``()``) and key lines."""
    table: KeyPath = ()
    for number, raw in enumerate(text.splitlines(), start=1):
        header = _HEADER_RE.match(raw)
        if header and raw.lstrip().startswith("["):
            path = _parse_key(header.group(1))
            if path is not None:
                table = path
                yield number, table, ()
            continue
        key = _KEY_RE.match(raw)
        path = _parse_key(key.group(1)) if key else None
        if path is not None:
            yield number, table, path


def _parse_key(key_text: str) -> KeyPath | None:
    try:
        doc: Any = tomllib.loads(f"{key_text} = 0")
    except (ValueError, RecursionError):
        return None
    path: list[str] = []
    while isinstance(doc, dict) and len(doc) == 1:
        name, doc = next(iter(doc.items()))
        path.append(name)
    return tuple(path) or None


def lookup_line(index: dict[KeyPath, int], where: KeyPath) -> int | None:
    """The line of ``where``, else of its closest enclosing table that has one."""
    for end in range(len(where), 0, -1):
        line = index.get(where[:end])
        if line is not None:
            return line
    return None
