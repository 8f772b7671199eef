"""Filters decide whether a handler or a rule applies to a pushed message.

A filter is any callable taking a wechatpy message and returning a truth value.
Instances of :class:`Filter` compose with ``&``, ``|`` and ``~`` (short-circuit,
left to right) and print readably, so ``repr(rule.filter)`` says why a rule
matched::

    >>> Keyword("人工") & Event("CLICK")
    Keyword('人工') & Event('CLICK')

Ready-made filters are UPPER_CASE instances (:data:`ALL`, :data:`NOTHING`,
:data:`TEXT`, :data:`EVENT`); filters that take arguments are classes.

Each filter also says what a push must meet before it can hold
(:meth:`Filter.requires`, a :class:`~kf_plugin.requirements.Requirements`);
``&`` and ``|`` combine those too. That is all a router's index reads, so a
filter of your own that declares its requirements is indexed like these.
The message fields the filters read come from :mod:`kf_plugin.messages`.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Iterable, List, Optional, Pattern, Tuple, Union

from .folding import FULL, Folding, FoldingLike
from .messages import (
    QR_SCENE_PREFIX,
    SUBSCRIBE_EVENTS,
    TEXT_KINDS,
    channel_of,
    event_key_of,
    event_of,
    folded_text_of,
    msg_type_of,
    sender_of,
    text_of,
)
from .requirements import ANYTHING, Requirements, all_of, any_of, requirements_of

__all__ = [
    "Filter", "ALL", "NOTHING", "TEXT", "EVENT", "Keyword", "Regex", "Event", "EventKey",
    "EventKeyRegex", "MsgType", "Users", "Channel", "CHANNELS", "as_filter", "required_keyword", "Requirements",
]

MATCH_MODES = ("contains", "exact", "prefix")
#: Where a push can come from: the Official Account's webhook, or 微信客服 (through WeCom).
CHANNELS = ("oa", "wecom")


class Filter:
    """Base class: subclasses implement :meth:`check` and ``__repr__``, and may override :meth:`requires`."""

    def check(self, message: Any) -> bool:
        raise NotImplementedError

    def requires(self) -> Optional[Requirements]:
        """What a push must meet before this filter can hold; ``None`` or ``Requirements()``: ask me about any.

        Routers with many handlers read this to skip the handlers a push cannot match (a filter requiring
        keywords is only asked when its text holds one of them), so a filter of your own that declares its
        requirements is as cheap to have many of as the built-in ones. Declare only what :meth:`check` truly
        needs: a push the declaration rules out never reaches it.
        """
        return ANYTHING

    def __call__(self, message: Any) -> bool:
        return bool(self.check(message))

    def __and__(self, other: Any) -> "Filter":
        return _And(self, as_filter(other))

    def __rand__(self, other: Any) -> "Filter":
        return _And(as_filter(other), self)

    def __or__(self, other: Any) -> "Filter":
        return _Or(self, as_filter(other))

    def __ror__(self, other: Any) -> "Filter":
        return _Or(as_filter(other), self)

    def __invert__(self) -> "Filter":
        return _Not(self)


FilterLike = Union[Filter, Callable[[Any], Any]]


def as_filter(value: FilterLike) -> Filter:
    """Wrap any callable as a :class:`Filter`; filters pass through unchanged."""
    if isinstance(value, Filter):
        return value
    if callable(value):
        return _Callable(value)
    raise TypeError(f"a filter must be callable, not {type(value).__name__}")


class _Callable(Filter):
    def __init__(self, func: Callable[[Any], Any]):
        self.func = func

    def check(self, message: Any) -> bool:
        return bool(self.func(message))

    def __repr__(self) -> str:
        return getattr(self.func, "__qualname__", None) or repr(self.func)


class _Compound(Filter):
    symbol = ""

    def __init__(self, *parts: Filter):
        flat: List[Filter] = []
        for part in parts:
            if isinstance(part, _Compound) and type(part) is type(self):  # (a & b) & c is a & b & c
                flat.extend(part.parts)
            else:
                flat.append(part)
        self.parts: Tuple[Filter, ...] = tuple(flat)

    def __repr__(self) -> str:
        def show(part: Filter) -> str:
            text = repr(part)
            return f"({text})" if isinstance(part, _Compound) else text
        return f" {self.symbol} ".join(show(p) for p in self.parts)


class _And(_Compound):
    symbol = "&"

    def check(self, message: Any) -> bool:
        return all(part(message) for part in self.parts)

    def requires(self) -> Requirements:
        return all_of([requirements_of(part) for part in self.parts])


class _Or(_Compound):
    symbol = "|"

    def check(self, message: Any) -> bool:
        return any(part(message) for part in self.parts)

    def requires(self) -> Requirements:
        return any_of([requirements_of(part) for part in self.parts])


class _Not(Filter):
    def __init__(self, inner: Filter):
        self.inner = inner

    def check(self, message: Any) -> bool:
        return not self.inner(message)

    def __repr__(self) -> str:
        inner = repr(self.inner)
        return f"~({inner})" if isinstance(self.inner, _Compound) else f"~{inner}"


class _All(Filter):
    def check(self, message: Any) -> bool:
        return True

    def __repr__(self) -> str:
        return "ALL"


class _Nothing(Filter):
    """Holds for no push: the condition of a rule that acts on something else than a push (a trigger)."""

    def check(self, message: Any) -> bool:
        return False

    def __repr__(self) -> str:
        return "NOTHING"


def required_keyword(filter: Filter) -> Optional["Keyword"]:
    """A Keyword every message ``filter`` holds for satisfies (the words its requirements name), if any."""
    required = requirements_of(filter)
    return Keyword(*required.keywords, folding=required.folding) if required.keywords else None


_AN_EVENT = Requirements(kinds=("event",))


def _args_repr(values: Iterable[Any]) -> str:
    return ", ".join(repr(v) for v in values)


class MsgType(Filter):
    """The message's MsgType is one of ``types`` (``text``, ``image``, ``event``, ...)."""

    def __init__(self, *types: str):
        if not types:
            raise ValueError("MsgType needs at least one message type")
        self.types = tuple(types)
        self._wanted = frozenset(t.lower() for t in types)

    def check(self, message: Any) -> bool:
        return msg_type_of(message) in self._wanted

    def requires(self) -> Requirements:
        return Requirements(kinds=self._wanted)

    def __repr__(self) -> str:
        return f"MsgType({_args_repr(self.types)})"


class Keyword(Filter):
    """The user's text holds one of ``words``.

    ``match`` is ``contains`` (default), ``exact`` or ``prefix``. Words and text are
    folded before they are compared: by default width (NFKC), case, Traditional
    Chinese and its variants, and surrounding spaces; ``folding`` names fewer
    (``folding=["width", "case"]``, see :class:`~kf_plugin.folding.Folding`).
    Looks at text messages and at the speech recognition of voice messages.

    :raises ValueError: no word, a blank word, an unknown match mode or folding.
    """

    def __init__(self, *words: str, match: str = "contains", folding: FoldingLike = FULL):
        if match not in MATCH_MODES:
            raise ValueError(f"match must be one of {', '.join(MATCH_MODES)}, not {match!r}")
        self.folding = Folding.of(folding)
        folded = tuple(self.folding(w) for w in words)
        if not folded or not all(folded):
            raise ValueError("Keyword needs at least one non-blank word")
        self.words = tuple(words)
        self.match = match
        self.folded = folded

    def check(self, message: Any) -> bool:
        text = folded_text_of(message, self.folding)
        if text is None:
            return False
        if self.match == "exact":
            return text in self.folded
        if self.match == "prefix":
            return text.startswith(self.folded)
        return any(word in text for word in self.folded)

    def requires(self) -> Requirements:
        # An exact or prefix match holds the word too: "contains one of the words" is required in every mode.
        return Requirements(kinds=TEXT_KINDS, keywords=self.words, folding=self.folding)

    def __repr__(self) -> str:
        mode = "" if self.match == "contains" else f", match={self.match!r}"
        folding = "" if self.folding == FULL else f", folding={list(self.folding.names)!r}"
        return f"Keyword({_args_repr(self.words)}{mode}{folding})"


def _compile(pattern: Union[str, Pattern[str]], flags: int = 0) -> Pattern[str]:
    return pattern if isinstance(pattern, re.Pattern) else re.compile(pattern, flags)


class Regex(Filter):
    """The user's text, as sent, contains a match of ``pattern`` (``re.search``).

    Nothing is folded: a pattern says exactly what it matches (``[转轉]人工``, ``(?i)help``).
    """

    def __init__(self, pattern: Union[str, Pattern[str]], flags: int = 0):
        self.pattern = _compile(pattern, flags)

    def check(self, message: Any) -> bool:
        text = text_of(message)
        return text is not None and self.pattern.search(text) is not None

    def requires(self) -> Requirements:
        return Requirements(kinds=TEXT_KINDS, patterns=(self.pattern,))

    def __repr__(self) -> str:
        return f"Regex({self.pattern.pattern!r})"


class Event(Filter):
    """The push is one of the events ``names``, compared case-insensitively.

    ``subscribe`` also matches a follow through a parametric QR code.
    """

    def __init__(self, *names: str):
        if not names:
            raise ValueError("Event needs at least one event name")
        self.names = tuple(names)
        wanted = {n.lower() for n in names}
        if "subscribe" in wanted:
            wanted |= SUBSCRIBE_EVENTS
        self._wanted = frozenset(wanted)

    def check(self, message: Any) -> bool:
        return event_of(message) in self._wanted

    def requires(self) -> Requirements:
        return Requirements(kinds=("event",), events=self._wanted)

    def __repr__(self) -> str:
        return f"Event({_args_repr(self.names)})"


class EventKey(Filter):
    """The event's EventKey equals ``key`` exactly.

    For a follow through a parametric QR code the scene is compared without
    its ``qrscene_`` prefix, so ``EventKey("123123")`` matches
    ``qrscene_123123`` (and ``EventKey("qrscene_123123")`` does too).
    """

    def __init__(self, key: str):
        self.key = key

    def check(self, message: Any) -> bool:
        actual = event_key_of(message)
        if actual is None:
            return False
        if actual == self.key:
            return True
        return event_of(message) in SUBSCRIBE_EVENTS and QR_SCENE_PREFIX + actual == self.key

    def requires(self) -> Requirements:
        return _AN_EVENT

    def __repr__(self) -> str:
        return f"EventKey({self.key!r})"


class EventKeyRegex(Filter):
    """The event's EventKey (scene without ``qrscene_`` for follows) matches ``pattern`` (``re.search``)."""

    def __init__(self, pattern: Union[str, Pattern[str]], flags: int = 0):
        self.pattern = _compile(pattern, flags)

    def check(self, message: Any) -> bool:
        key = event_key_of(message)
        return key is not None and self.pattern.search(key) is not None

    def requires(self) -> Requirements:
        return _AN_EVENT

    def __repr__(self) -> str:
        return f"EventKeyRegex({self.pattern.pattern!r})"


class Users(Filter):
    """The sender's openid is one of ``openids``.

    It requires nothing the index can use (every push has a sender): alone it is asked about every push.
    """

    def __init__(self, *openids: str):
        if not openids:
            raise ValueError("Users needs at least one openid")
        self.openids = tuple(openids)
        self._wanted = frozenset(openids)

    def check(self, message: Any) -> bool:
        return sender_of(message) in self._wanted

    def __repr__(self) -> str:
        return f"Users({_args_repr(self.openids)})"


class Channel(Filter):
    """The push came through ``channel``: ``oa`` (the Official Account's webhook) or ``wecom`` (微信客服).

    A message says its channel in a ``channel`` attribute; wechatpy's messages have none and are ``oa``.
    """

    def __init__(self, channel: str):
        if channel not in CHANNELS:
            raise ValueError(f"unknown channel {channel!r} (one of {', '.join(CHANNELS)})")
        self.channel = channel

    def check(self, message: Any) -> bool:
        return channel_of(message) == self.channel

    def __repr__(self) -> str:
        return f"Channel({self.channel!r})"


ALL: Filter = _All()
NOTHING: Filter = _Nothing()
TEXT: Filter = MsgType("text")
EVENT: Filter = MsgType("event")
