"""What a filter requires of a push before it can hold: the part of a filter the rule index reads.

A filter that declares :class:`Requirements` (from :meth:`kf_plugin.filters.Filter.requires`) promises that it
holds only for pushes meeting all of them; the index then skips it for every other push without asking it. A
filter that declares nothing (``None`` or ``Requirements()``) is asked about every push. Declaring less than a
filter needs only costs speed; declaring more than it needs makes it miss pushes it would have matched.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, FrozenSet, Iterable, Optional, Pattern, Sequence, Tuple, Union

from .folding import FULL, Folding, FoldingLike
from .messages import SUBSCRIBE_EVENTS

__all__ = ["Requirements", "ANYTHING", "requirements_of", "all_of", "any_of"]

PatternLike = Union[str, Pattern[str]]


@dataclass(frozen=True, init=False)
class Requirements:
    """Conditions a push must meet for a filter to hold (``None``: no condition).

    ``kinds``: its MsgType is one of these (``text``, ``voice``, ``event``, ...).
    ``events``: it is an event push and its event is one of these (``subscribe`` also covers a follow through a
    parametric QR code, which wechatpy names ``subscribe_scan``).
    ``keywords``: its text (Content or voice Recognition, folded by ``folding``) contains one of these words.
    ``folding``: how the text and the words are folded before they are compared (:class:`~kf_plugin.folding.Folding`
    or a list of its names; every folding by default, as :func:`~kf_plugin.messages.fold` does).
    ``patterns``: its text contains a match (``re.search``) of each of these patterns.

    Names compare case-insensitively and words are folded, as the filters compare them.

    :raises ValueError: ``kinds``, ``events`` or ``keywords`` given empty (no push could meet it: leave it
        ``None`` instead), a blank name or word, or an unknown folding.
    :raises TypeError: a single string where a collection of them belongs, or a pattern that is neither a string
        nor a compiled ``str`` pattern.
    """

    kinds: Optional[FrozenSet[str]]
    events: Optional[FrozenSet[str]]
    keywords: Optional[Tuple[str, ...]]
    patterns: Tuple[Pattern[str], ...]
    folding: Folding

    def __init__(self, *, kinds: Optional[Iterable[str]] = None, events: Optional[Iterable[str]] = None,
                 keywords: Optional[Iterable[str]] = None, patterns: Iterable[PatternLike] = (),
                 folding: FoldingLike = FULL):
        folding = Folding.of(folding)
        kind_names = _names("kinds", kinds, str.lower)
        event_names = _names("events", events, str.lower)
        if event_names is not None and SUBSCRIBE_EVENTS.intersection(event_names):
            event_names += tuple(SUBSCRIBE_EVENTS)
        # Frozen: the fields are set once, here; words and patterns keep their order (the first word is shown first).
        object.__setattr__(self, "kinds", frozenset(kind_names) if kind_names is not None else None)
        object.__setattr__(self, "events", frozenset(event_names) if event_names is not None else None)
        object.__setattr__(self, "keywords", _names("keywords", keywords, folding))
        object.__setattr__(self, "patterns", _patterns(patterns))
        object.__setattr__(self, "folding", folding)


def _names(label: str, values: Optional[Iterable[str]], normalise: Callable[[str], str]) -> Optional[Tuple[str, ...]]:
    """``values`` normalised, without repeats, in their order; ``None`` stays ``None`` (no condition)."""
    if values is None:
        return None
    if isinstance(values, str):
        raise TypeError(f"Requirements {label} must be a collection of strings, not the string {values!r}")
    normalised = []
    for value in values:
        if not isinstance(value, str) or not normalise(value):
            raise ValueError(f"Requirements {label} must be non-blank strings, not {value!r}")
        normalised.append(normalise(value))
    if not normalised:
        raise ValueError(f"Requirements {label} is empty, so no push could meet it; leave it None to allow any")
    return tuple(dict.fromkeys(normalised))


def _patterns(values: Iterable[PatternLike]) -> Tuple[Pattern[str], ...]:
    if isinstance(values, (str, re.Pattern)):
        raise TypeError(f"Requirements patterns must be a collection of patterns, not the single {values!r}")
    compiled = []
    for value in values:
        pattern = re.compile(value) if isinstance(value, str) else value
        if not isinstance(pattern, re.Pattern) or not isinstance(pattern.pattern, str):
            raise TypeError(f"Requirements patterns must be strings or compiled str patterns, not {value!r}")
        compiled.append(pattern)
    return tuple(dict.fromkeys(compiled))


ANYTHING = Requirements()


def requirements_of(filter: Any) -> Requirements:
    """``filter.requires()``, with ``None`` (and a filter without the method) read as :data:`ANYTHING`.

    :raises TypeError: ``requires()`` returned something else than :class:`Requirements` or ``None``.
    """
    requires = getattr(filter, "requires", None)
    declared = requires() if callable(requires) else None
    if declared is None:
        return ANYTHING
    if not isinstance(declared, Requirements):
        raise TypeError(f"{filter!r}.requires() returned a {type(declared).__name__}, not Requirements or None")
    return declared


def _common(sets: Sequence[Optional[FrozenSet[str]]]) -> Optional[FrozenSet[str]]:
    """What every one of ``sets`` allows (``None``: anything). When they share nothing the filter cannot hold
    at all, and any one of them is still true of it: the first is kept (an empty set would be refused)."""
    given = [names for names in sets if names is not None]
    if not given:
        return None
    return frozenset.intersection(*given) or given[0]


def all_of(parts: Sequence[Requirements]) -> Requirements:
    """What a push must meet for every one of ``parts`` to hold (as ``&`` needs).

    Kinds and events narrow to those all parts allow; every part's patterns are required; the keywords are one
    part's, with that part's folding (any part's words are required, and one set is what the index can look up).
    """
    worded = next((part for part in parts if part.keywords is not None), None)
    return Requirements(
        kinds=_common([part.kinds for part in parts]),
        events=_common([part.events for part in parts]),
        keywords=worded.keywords if worded is not None else None,
        patterns=tuple(pattern for part in parts for pattern in part.patterns),
        folding=worded.folding if worded is not None else FULL,
    )


def any_of(parts: Sequence[Requirements]) -> Requirements:
    """What a push must meet for at least one of ``parts`` to hold (as ``|`` needs).

    Only kinds and events carry over, and only when every part names them: then the push is of one of the kinds
    or events some part names.
    """
    def union(sets: Sequence[Optional[FrozenSet[str]]]) -> Optional[FrozenSet[str]]:
        given = [names for names in sets if names is not None]
        return frozenset().union(*given) if given and len(given) == len(sets) else None
    return Requirements(kinds=union([part.kinds for part in parts]), events=union([part.events for part in parts]))
