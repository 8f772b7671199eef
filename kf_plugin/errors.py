"""The exceptions kf_plugin raises.

Everything derives from :class:`KfError`, so a bot can catch the whole family in
one place.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence


class KfError(Exception):
    """Base class of every error raised by kf_plugin."""


class ConfigError(KfError):
    """A ``KF_*`` setting is missing or invalid; the message names the key."""


@dataclass(frozen=True)
class RuleProblem:
    """One problem found in a rule file."""

    file: str
    line: Optional[int]
    message: str
    rule: Optional[str] = None

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        who = f" rule {self.rule!r}:" if self.rule else ""
        return f"{where}:{who} {self.message}"


class RuleFileError(KfError):
    """A rule file could not be loaded; :attr:`problems` lists every problem found."""

    def __init__(self, problems: Sequence[RuleProblem]):
        self.problems: List[RuleProblem] = list(problems)
        count = len(self.problems)
        header = f"{count} problem{'s' if count != 1 else ''} in rule file"
        super().__init__("\n".join([header + ":"] + [f"  {p}" for p in self.problems]))


class BadPush(KfError):
    """An inbound request is not an acceptable WeChat push.

    :attr:`status` is the HTTP status the webhook answers with (400, 403 or 413).
    """

    def __init__(self, status: int, reason: str):
        self.status = status
        self.reason = reason
        super().__init__(f"{status}: {reason}")
