"""While a user waits for a human: the queue policy, and the context text an agent is shown.

Both are settings of a rule file (``queue:`` and ``context:``) or built in Python::

    QueuePolicy(notice="您前面还有 {ahead} 位", cancel=["取消"], cancel_text="已取消", timeout=600)
    ContextTemplate("{rule}：{message}\\n最近：{recent}")

Templates use ``str.format`` syntax with named placeholders only (``{{`` and ``}}`` write a brace itself);
an unknown placeholder or a lone brace is refused when the object is built, never when a user is waiting.
"""
from __future__ import annotations

import difflib
import math
import string
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Sequence, Tuple, TypeVar, Union

from .folding import FULL, Folding

__all__ = ["QueuePolicy", "ContextTemplate", "NOTICE_PLACEHOLDERS", "CONTEXT_PLACEHOLDERS", "check_template",
           "check_notice", "check_notice_fallback", "check_context", "DEPENDS_ON", "unused_without"]

#: What a queue notice may say: the user's place (1-based), how many wait before them, how many wait in all.
NOTICE_PLACEHOLDERS = ("position", "ahead", "count")
#: What the agent's context text may say: the rule (or trigger) that handed off, the message that did, the
#: user's recent messages and their openid.
CONTEXT_PLACEHOLDERS = ("rule", "message", "recent", "openid")
#: Settings that do nothing unless one of these others is set too.
DEPENDS_ON: Mapping[str, Tuple[str, ...]] = {
    "cancel_text": ("cancel",),
    "timeout_text": ("timeout",),
    "notice_every": ("notice", "notice_fallback"),
}
_Result = TypeVar("_Result")


def _braced(names: Sequence[str]) -> str:
    shown = [f"{{{name}}}" for name in names]
    return shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} and {shown[-1]}"


def check_template(text: str, allowed: Sequence[str]) -> Tuple[str, ...]:
    """The placeholders ``text`` uses, each once, in order of first use.

    :raises ValueError: a placeholder not in ``allowed`` (with a did-you-mean), a placeholder with a format
        or conversion (``{rule!r}``, ``{count:3}``), or a lone ``{`` or ``}``.
    """
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError:
        raise ValueError("a lone { or } (write {{ or }} for a brace itself)") from None
    used: Dict[str, None] = {}
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if name not in allowed:
            close = difflib.get_close_matches(name, allowed, n=1)
            hint = f" (did you mean {{{close[0]}}}?)" if close else ""
            choice = f"the placeholders are {_braced(allowed)}" if allowed else "it takes no placeholders"
            raise ValueError(f"unknown placeholder {{{name}}}{hint}; {choice}")
        if spec or conversion:
            raise ValueError(f"placeholder {{{name}}} takes no format or conversion: write {{{name}}}")
        used[name] = None
    return tuple(used)


def check_notice(text: str) -> Tuple[str, ...]:
    """The placeholders of a queue notice. :raises ValueError: as :func:`check_template`."""
    return check_template(text, NOTICE_PLACEHOLDERS)


def check_notice_fallback(text: str) -> None:
    """:raises ValueError: the text is a bad template, or uses a placeholder (it is sent when they are unknown)."""
    used = check_template(text, NOTICE_PLACEHOLDERS)
    if used:
        raise ValueError(f"cannot use {_braced(used)}: it is sent when the queue gives no position")


def check_context(text: str) -> Tuple[str, ...]:
    """The placeholders of a context template. :raises ValueError: as :func:`check_template`."""
    return check_template(text, CONTEXT_PLACEHOLDERS)


def unused_without(name: str) -> str:
    """Why setting ``name`` (a key of :data:`DEPENDS_ON`) alone is refused, as the end of a sentence."""
    return f"has no effect without {' or '.join(DEPENDS_ON[name])}"


def _text(name: str, value: Optional[str]) -> None:
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise ValueError(f"{name} must be a text that is not blank, not {value!r}")


def _positive(name: str, value: Optional[float]) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")


def _named(name: str, check: Callable[[str], _Result], text: str) -> _Result:
    """``check(text)``, its error prefixed with the setting's name. :raises ValueError: as ``check``."""
    try:
        return check(text)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


def _keywords(value: Union[str, Iterable[Any]], fold: Folding) -> Tuple[str, ...]:
    """Cancel keywords folded as they are compared, without repeats; one string is one keyword."""
    items = (value,) if isinstance(value, str) else tuple(value)
    folded = []
    for item in items:
        if not isinstance(item, str) or not fold(item):
            raise ValueError(f"cancel keywords must be texts that are not blank, not {item!r}")
        folded.append(fold(item))
    return tuple(dict.fromkeys(folded))


@dataclass(frozen=True)
class QueuePolicy:
    """What happens while a user waits in the queue for a human (none of it once an agent has them).

    ``quiet``: the bot's own handlers do not answer a queued user (``while_queued: quiet``); ``False`` lets
    them answer as before (``while_queued: bot``). ``notice``: a text telling the user their place, with
    ``{position}``, ``{ahead}`` and ``{count}``; ``notice_fallback``: the text when the place is unknown;
    ``notice_every``: seconds between two notices to one user. ``cancel``: texts that, typed alone, cancel
    the wait (compared trimmed and folded by ``folding``, the rule file's, every folding by default), answered
    with ``cancel_text``. ``timeout``: seconds after which a queued user is returned to the bot, told
    ``timeout_text``.

    :raises ValueError: a blank text, a bad template, a placeholder in ``notice_fallback``, a blank cancel
        keyword, a duration that is not a positive number, ``cancel_text``/``timeout_text`` without
        ``cancel``/``timeout``, or an unknown folding.
    """

    quiet: bool = True
    notice: Optional[str] = None
    notice_fallback: Optional[str] = None
    notice_every: float = 60.0
    cancel: Tuple[str, ...] = ()
    cancel_text: Optional[str] = None
    timeout: Optional[float] = None
    timeout_text: Optional[str] = None
    folding: Folding = FULL
    _notice_uses: Tuple[str, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("notice", "notice_fallback", "cancel_text", "timeout_text"):
            _text(name, getattr(self, name))
        _positive("notice_every", self.notice_every)
        _positive("timeout", self.timeout)
        # Frozen: normalised once, here, so comparing a message is one set lookup.
        object.__setattr__(self, "folding", Folding.of(self.folding))
        object.__setattr__(self, "cancel", _keywords(self.cancel, self.folding))
        if self.notice is not None:
            object.__setattr__(self, "_notice_uses", _named("notice", check_notice, self.notice))
        if self.notice_fallback is not None:
            _named("notice_fallback", check_notice_fallback, self.notice_fallback)
        for name, needs in (("cancel_text", self.cancel), ("timeout_text", self.timeout)):
            if getattr(self, name) is not None and not needs:
                raise ValueError(f"{name} {unused_without(name)}")

    def is_cancel(self, text: Optional[str]) -> bool:
        """Whether ``text`` (a message's text; ``None`` for a push without one) is one of the cancel keywords."""
        return text is not None and self.folding(text) in self.cancel

    def notice_text(self, position: Optional[int] = None, count: Optional[int] = None) -> Optional[str]:
        """The notice for a user at ``position`` (1-based) among ``count`` waiting; either may be unknown.

        ``notice`` filled in when everything it uses is known, else ``notice_fallback``, else ``None``
        (nothing to send).

        :raises ValueError: ``position`` below 1 or ``count`` below 0.
        """
        if position is not None and position < 1:
            raise ValueError(f"a queue position counts from 1, not {position!r}")
        if count is not None and count < 0:
            raise ValueError(f"a queue count cannot be negative, not {count!r}")
        known: Dict[str, int] = {}
        if position is not None:
            known.update(position=position, ahead=position - 1)
        if count is not None:
            known["count"] = count
        if self.notice is not None and all(name in known for name in self._notice_uses):
            return self.notice.format_map(known)
        if self.notice_fallback is not None:
            return self.notice_fallback.format_map({})   # turns {{ and }} into braces, as in notice
        return None


@dataclass(frozen=True)
class ContextTemplate:
    """The text shown to the agent with a hand-off (``kfsession/create``'s ``text``).

    ``text`` may use ``{rule}``, ``{message}``, ``{recent}`` and ``{openid}``; ``separator`` goes between
    the recent messages.

    :raises ValueError: ``text`` is blank, uses another placeholder, or has a lone brace.
    """

    text: str
    separator: str = " / "
    _uses: Tuple[str, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _text("context", self.text)
        object.__setattr__(self, "_uses", _named("context", check_context, self.text))

    @property
    def uses_recent(self) -> bool:
        """Whether rendering needs the user's recent messages (worth fetching only then)."""
        return "recent" in self._uses

    def render(self, rule: str, message: str, recent: Sequence[str], openid: str) -> str:
        """The text for a hand-off by ``rule`` of the user ``openid``, whose ``message`` triggered it.

        ``recent``: the user's last messages, oldest first.

        :raises TypeError: ``recent`` is a single string (it would be read letter by letter).
        """
        if isinstance(recent, str):
            raise TypeError("recent must be a sequence of messages, not one string")
        return self.text.format_map({"rule": rule, "message": message, "recent": self.separator.join(recent),
                                     "openid": openid})
