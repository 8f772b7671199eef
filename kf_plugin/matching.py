"""Finding the handlers that may match a message without asking every one of them.

Each handler's filter declares what it requires of a push (:meth:`~kf_plugin.filters.Filter.requires`,
:class:`~kf_plugin.requirements.Requirements`), and the index reads nothing else, so a filter of a bot's own
joins it on the same terms as the built-in ones. A handler that requires keywords can only match a text that
contains one of its words: one Aho-Corasick automaton over every such word finds, in a single pass over the
text, the handlers worth asking (one automaton for each way handlers fold their words, usually one). The
others are listed by the pushes they may take: a handler requiring an event is only asked about events (about
a click only if it may take a click), one requiring a kind of message only about messages (which kind of
message is not told apart). A handler that requires patterns is skipped
when one search of all such patterns together (an alternation, one per set of flags) finds nothing in the
text. The candidates are then tried in their original order with their full filters, so results are exactly
those of a linear scan.
"""
from __future__ import annotations

import re
from typing import Any, Dict, Iterable, List, Optional, Pattern, Sequence, Set, Tuple

import ahocorasick

from .folding import Folding
from .messages import event_of, folded_text_of, msg_type_of, text_of
from .requirements import Requirements, requirements_of

__all__ = ["KeywordIndex", "candidates"]

#: Which pushes a list of positions is for: ``("message", None)``, or ``("event", name)`` — the name is ``None``
#: when events are not told apart and ``""`` for an event no handler names.
Slot = Tuple[str, Optional[str]]
#: Beyond this many event names handlers require, events share one list (one per name would cost memory).
_MAX_EVENT_SLOTS = 32


def _may_match(declared: Requirements, slot: Slot) -> bool:
    kind, event = slot
    if kind == "message":  # any kind but an event: which one is not told apart
        return declared.events is None and (declared.kinds is None or bool(declared.kinds - {"event"}))
    if declared.kinds is not None and "event" not in declared.kinds:
        return False
    return declared.events is None or event is None or event in declared.events


def _slot_lists(declared: Sequence[Tuple[int, Requirements]]) -> Tuple[Dict[Slot, List[int]], Set[str]]:
    """The positions for each slot, ascending, and the event names that have a slot of their own."""
    events: Set[str] = set().union(*(r.events for _, r in declared if r.events is not None))
    if len(events) > _MAX_EVENT_SLOTS:
        events = set()
    slots: List[Slot] = [("message", None)]
    if events:
        slots += [("event", event) for event in sorted(events)] + [("event", "")]
    else:
        slots.append(("event", None))
    lists: Dict[Slot, List[int]] = {slot: [] for slot in slots}
    for position, requirements in declared:
        for slot, positions in lists.items():
            if _may_match(requirements, slot):
                positions.append(position)
    return lists, events


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
    """Positions of ``entries`` (handlers or anything else) worth trying for a message.

    An entry's requirements are those of its ``filter`` (none for an entry without one, such as a router).

    :raises TypeError: a filter's ``requires()`` returned something else than ``Requirements`` or ``None``.
    """

    def __init__(self, entries: Sequence[Any]):
        declared = [requirements_of(getattr(entry, "filter", None)) for entry in entries]
        #: Positions not found through keywords, whose kinds, events and patterns decide instead.
        self.always: List[int] = [position for position, required in enumerate(declared) if not required.keywords]
        self.indexed = len(entries) - len(self.always)
        self._automata = _automata([(position, required) for position, required in enumerate(declared)
                                    if required.keywords])
        self._lists, self._events = _slot_lists([(position, declared[position]) for position in self.always])
        self._regexes = _alternations([(position, pattern) for position in self.always
                                       for pattern in declared[position].patterns])
        self.regex_indexed = len(set().union(*(members for _, members in self._regexes)))
        # The positions left when given joined patterns miss, by (slot, which ones missed): usually the same
        # few lists, and filtering a thousand regex rules out afresh for every message costs more than the search.
        self._pruned: Dict[Tuple[Slot, int], List[int]] = {}

    def positions(self, message: Any) -> Iterable[int]:
        """Every position that may match ``message``, in ascending order."""
        slot, always = self._slot_of(message)
        if self._regexes:
            always = self._without_missed_patterns(slot, always, message)
        hits: Set[int] = set()
        for folding, automaton in self._automata:
            text = folded_text_of(message, folding)
            if text:
                for _, positions in automaton.iter(text):
                    hits.update(positions)
        return sorted(hits.union(always)) if hits else always

    def _slot_of(self, message: Any) -> Tuple[Slot, List[int]]:
        if msg_type_of(message) != "event":
            slot: Slot = ("message", None)
        elif not self._events:
            slot = ("event", None)
        else:
            event = event_of(message)
            slot = ("event", event if event in self._events else "")
        return slot, self._lists[slot]

    def _without_missed_patterns(self, slot: Slot, positions: List[int], message: Any) -> List[int]:
        text = text_of(message)
        missed = 0  # bit i: the i-th joined pattern found nothing
        for bit, (together, _) in enumerate(self._regexes):
            if text is None or together.search(text) is None:
                missed |= 1 << bit
        if not missed:
            return positions
        pruned = self._pruned.get((slot, missed))
        if pruned is None:
            dropped = set().union(*(members for bit, (_, members) in enumerate(self._regexes) if missed >> bit & 1))
            pruned = [position for position in positions if position not in dropped]
            if len(self._pruned) < _MAX_PRUNED:
                self._pruned[(slot, missed)] = pruned
        return pruned


def _automata(declared: Sequence[Tuple[int, Requirements]]) -> List[Tuple[Folding, ahocorasick.Automaton]]:
    """For each folding the requirements name, the automaton over the words folded so."""
    by_folding: Dict[Folding, List[Tuple[int, Sequence[str]]]] = {}
    for position, required in declared:
        by_folding.setdefault(required.folding, []).append((position, required.keywords or ()))
    return [(folding, _automaton(keywords)) for folding, keywords in by_folding.items()]


def _automaton(keywords: Iterable[Tuple[int, Sequence[str]]]) -> ahocorasick.Automaton:
    """An automaton finding, in a folded text, the positions one of whose words it contains."""
    by_word: Dict[str, List[int]] = {}
    for position, words in keywords:
        for word in set(words):
            by_word.setdefault(word, []).append(position)
    automaton = ahocorasick.Automaton()
    for word, positions in by_word.items():
        automaton.add_word(word, tuple(positions))
    automaton.make_automaton()
    return automaton


def candidates(entries: Sequence[Any], index: Optional[KeywordIndex], message: Any) -> Iterable[Any]:
    """``entries`` worth trying for ``message``, in order (all of them without an index)."""
    if index is None:
        return entries
    return (entries[position] for position in index.positions(message))
