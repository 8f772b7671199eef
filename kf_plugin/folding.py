"""How a keyword and a message's text are normalised before they are compared.

Three foldings, each on unless left out:

- ``width``: full-width and half-width forms, and compatibility characters (NFKC): ``ＨＥＬＰ`` is ``HELP``.
- ``case``: upper and lower case (``str.casefold``): ``HELP`` is ``help``.
- ``traditional``: Traditional Chinese, Simplified Chinese and the variants Taiwan and Hong Kong write fold to one
  character each (OpenCC's dictionaries, :mod:`kf_plugin.hanzi`): ``轉人工`` is ``转人工``, ``看著`` is ``看着``.

Surrounding spaces are always trimmed (an ``exact`` keyword compares the trimmed text).
"""
from __future__ import annotations

import difflib
import unicodedata
from typing import Callable, Iterable, Tuple, Union

from .hanzi import simplified_table

__all__ = ["Folding", "FoldingLike", "FOLDINGS", "FULL"]

#: The foldings there are, in the order they apply.
FOLDINGS = ("width", "case", "traditional")


def _width(text: str) -> str:
    return unicodedata.normalize("NFKC", text)


def _case(text: str) -> str:
    return text.casefold()


def _traditional(text: str) -> str:
    # An ASCII text holds no Chinese character: skip the table lookups.
    return text if text.isascii() else text.translate(simplified_table())


_STEPS = {"width": _width, "case": _case, "traditional": _traditional}


class Folding:
    """Some of :data:`FOLDINGS`, applied in that order, then surrounding spaces trimmed: ``folding(text)``.

    ``Folding()`` folds all three; ``Folding(["width", "case"])`` leaves Traditional Chinese as written;
    ``Folding([])`` only trims. Names compare case-insensitively.

    :raises ValueError: an unknown name (with the closest known one).
    :raises TypeError: a single string, or a name that is not a string.
    """

    __slots__ = ("names", "cache_key", "_steps")

    def __init__(self, names: Iterable[str] = FOLDINGS):
        if isinstance(names, str):
            raise TypeError(f"Folding takes a list of foldings, not the string {names!r}")
        wanted = set()
        for name in names:
            if not isinstance(name, str):
                raise TypeError(f"a folding is a name ({', '.join(FOLDINGS)}), not {name!r}")
            if name.lower() not in FOLDINGS:
                close = difflib.get_close_matches(name.lower(), FOLDINGS, n=1)
                raise ValueError(f"unknown folding {name!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
                                 + f"; the foldings are {', '.join(FOLDINGS)}")
            wanted.add(name.lower())
        #: The foldings applied, in the order of :data:`FOLDINGS`.
        self.names: Tuple[str, ...] = tuple(name for name in FOLDINGS if name in wanted)
        #: Where a message keeps its text folded this way (see :func:`kf_plugin.messages.folded_text_of`).
        self.cache_key = "_kf_folded_text" + ("" if self.names == FOLDINGS else ":" + ",".join(self.names))
        self._steps: Tuple[Callable[[str], str], ...] = tuple(_STEPS[name] for name in self.names)

    @classmethod
    def of(cls, value: "FoldingLike") -> "Folding":
        """``value`` as a :class:`Folding`: a folding passes through, a list of names is read.

        :raises ValueError: an unknown name. :raises TypeError: not a list of names.
        """
        return value if isinstance(value, Folding) else cls(value)

    def __call__(self, text: str) -> str:
        for step in self._steps:
            text = step(text)
        return text.strip()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Folding) and other.names == self.names

    def __hash__(self) -> int:
        return hash(self.names)

    def __repr__(self) -> str:
        return f"Folding({list(self.names)!r})"

    def __str__(self) -> str:
        return ", ".join(self.names) if self.names else "none (only surrounding spaces are trimmed)"


FoldingLike = Union[Folding, Iterable[str]]
#: Every folding: what keywords use unless told otherwise.
FULL = Folding()
