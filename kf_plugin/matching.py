"""Finding the handlers that may match a message without asking every one of them.

A handler whose filter *requires* a keyword — a :class:`~kf_plugin.filters.Keyword`,
alone or inside an ``&`` — can only match a text that contains one of its
words (``contains``, ``exact`` and ``prefix`` all imply that). One Aho-Corasick
automaton over every such word finds, in a single pass over the text, the
handlers worth asking. Likewise a handler that requires an event (``Event``)
is only asked about events, and one that requires a text (``Regex``) only
about messages. A handler that requires a :class:`~kf_plugin.filters.Regex`
is skipped when one search of all such patterns together (an alternation, one
per set of flags) finds nothing in the text. The candidates are then tried in
their original order with their full filters, so results are exactly those of
a linear scan.
"""
from __future__ import annotations

import re
from typing import Any, Dict, Iterable, List, Optional, Pattern, Sequence, Set, Tuple

import ahocorasick

from .filters import (
    Event,
    EventKey,
    EventKeyRegex,
    Filter,
    Keyword,
    Regex,
    _And,
)
from .messages import folded_text_of, msg_type_of, text_of

__all__ = ["KeywordIndex", "required_keyword", "required_regex"]


_NEEDS_EVENT = (Event, EventKey, EventKeyRegex)
_NEEDS_TEXT = (Keyword, Regex)


def _parts(filter: Filter) -> Sequence[Filter]:
    return filter.parts if isinstance(filter, _And) else (filter,)


def required_kind(filter: Filter) -> Optional[str]:
    """``"event"`` or ``"message"`` when ``filter`` can only hold for that kind of push."""
    for part in _parts(filter):
        if isinstance(part, _NEEDS_EVENT):
            return "event"
        if isinstance(part, _NEEDS_TEXT):
            return "message"
    return None


def required_keyword(filter: Filter) -> Optional[Keyword]:
    """The Keyword a message must satisfy for ``filter`` to hold, if there is one."""
    if isinstance(filter, Keyword):
        return filter
    if isinstance(filter, _And):
        return next((part for part in filter.parts if isinstance(part, Keyword)), None)
    return None


def required_regex(filter: Filter) -> Optional[Pattern[str]]:
    """The pattern a message's text must contain for ``filter`` to hold, if there is one."""
    return next((part.pattern for part in _parts(filter) if isinstance(part, Regex)), None)


# Patterns whose meaning depends on their own group numbers or names change meaning (or fail) when
# joined with others: backreferences, conditionals on a group, named groups. (Verbose ones are left
# out too: a comment would swallow what follows it.)
_SELF_REFERENCE = re.compile(r"\\[1-9]|\(\?P[=<]|\(\?\(|\(\?<[^=!]")


def _alternations(patterns: Sequence[Tuple[int, Pattern[str]]]) -> List[Tuple[Pattern[str], Set[int]]]:
    """One search for many patterns: their positions grouped by flags, each group joined into one pattern.

    Patterns that cannot be joined safely are left out (their handlers are always tried).
    """
    groups: Dict[int, List[Tuple[int, Pattern[str]]]] = {}
    for position, pattern in patterns:
        if (isinstance(pattern.pattern, str) and not pattern.flags & re.VERBOSE
                and not _SELF_REFERENCE.search(pattern.pattern)):
            groups.setdefault(pattern.flags, []).append((position, pattern))
    joined = []
    for flags, members in groups.items():
        try:
            together = re.compile("|".join(f"(?:{pattern.pattern})" for _, pattern in members), flags)
        except re.error:  # e.g. a global flag such as (?i) inside: ask each handler instead
            continue
        joined.append((together, {position for position, _ in members}))
    return joined


_MAX_PRUNED = 64


class KeywordIndex:
    """Positions of ``entries`` (handlers or anything else) worth trying for a message."""

    def __init__(self, entries: Sequence[Any]):
        by_word: Dict[str, List[int]] = {}
        self.always: List[int] = []
        self._for_kind: Dict[Optional[str], List[int]] = {"event": [], "message": []}
        patterns: List[Tuple[int, Pattern[str]]] = []
        for position, entry in enumerate(entries):
            keyword = required_keyword(entry.filter) if hasattr(entry, "filter") else None
            if keyword is None:
                self.always.append(position)
                kind = required_kind(entry.filter) if hasattr(entry, "filter") else None
                for name, positions in self._for_kind.items():
                    if kind is None or kind == name:
                        positions.append(position)
                pattern = required_regex(entry.filter) if hasattr(entry, "filter") else None
                if pattern is not None:
                    patterns.append((position, pattern))
                continue
            for word in set(keyword.folded):
                by_word.setdefault(word, []).append(position)
        self.indexed = len(entries) - len(self.always)
        self._regexes = _alternations(patterns)
        self.regex_indexed = sum(len(positions) for _, positions in self._regexes)
        # The positions left when given joined patterns miss, by (kind, which ones missed): usually the same
        # few lists, and filtering a thousand regex rules out afresh for every message costs more than the search.
        self._pruned: Dict[Tuple[str, int], List[int]] = {}
        self._automaton: Optional[ahocorasick.Automaton] = None
        if by_word:
            self._automaton = ahocorasick.Automaton()
            for word, positions in by_word.items():
                self._automaton.add_word(word, tuple(positions))
            self._automaton.make_automaton()

    def positions(self, message: Any) -> Iterable[int]:
        """Every position that may match ``message``, in ascending order."""
        kind = "event" if msg_type_of(message) == "event" else "message"
        always = self._without_missed_patterns(kind, message) if self._regexes else self._for_kind[kind]
        text = folded_text_of(message) if self._automaton is not None else None
        if not text:
            return always
        hits: Set[int] = set()
        for _, positions in self._automaton.iter(text):
            hits.update(positions)
        return sorted(hits.union(always)) if hits else always

    def _without_missed_patterns(self, kind: str, message: Any) -> List[int]:
        text = text_of(message)
        missed = 0  # bit i: the i-th joined pattern found nothing
        for bit, (together, _) in enumerate(self._regexes):
            if text is None or together.search(text) is None:
                missed |= 1 << bit
        positions = self._for_kind[kind]
        if not missed:
            return positions
        pruned = self._pruned.get((kind, missed))
        if pruned is None:
            dropped = set().union(*(members for bit, (_, members) in enumerate(self._regexes) if missed >> bit & 1))
            pruned = [position for position in positions if position not in dropped]
            if len(self._pruned) < _MAX_PRUNED:
                self._pruned[(kind, missed)] = pruned
        return pruned


def candidates(entries: Sequence[Any], index: Optional[KeywordIndex], message: Any) -> Iterable[Any]:
    """``entries`` worth trying for ``message``, in order (all of them without an index)."""
    if index is None:
        return entries
    return (entries[position] for position in index.positions(message))
