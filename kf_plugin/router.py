"""A message router for wechatpy bots (wechatpy has none).

Handlers are tried in order; the first whose filter holds and which returns
something other than ``None`` answers the message::

    router = MessageRouter()

    @router.on(Keyword("你好"))
    def greet(message):
        return "你好！"

A handler returns a wechatpy reply, a string (sent as a text reply) or ``None``
(let the next handler try). Other routers can be included, which is how the
kf rules sit in front of a bot's own handlers.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import (
    Any,
    Callable,
    Iterable,
    Iterator,
    List,
    Optional,
    Sequence,
    Tuple,
    Union,
)

from .filters import ALL, Filter, FilterLike, as_filter
from .matching import KeywordIndex, candidates

__all__ = ["Handler", "MessageRouter", "Match"]

Callback = Callable[[Any], Any]
BeforeHook = Callable[[Any], Any]
AfterHook = Callable[[Any, Any, Optional["Handler"]], Any]


@dataclass(frozen=True)
class Handler:
    """A callback and the filter that admits messages to it."""

    filter: Filter
    callback: Callback
    name: str

    def __call__(self, message: Any) -> Any:
        return self.callback(message)


@dataclass(frozen=True)
class Match:
    """The result of :meth:`MessageRouter.dispatch_with_handler`: who answered, and what."""

    handler: Optional[Handler]
    result: Any


Entry = Union[Handler, "MessageRouter"]
#: From this many entries on, consulting the keyword index costs less than asking each entry (bench/rules_scale.py).
INDEX_MIN_ENTRIES = 6


class MessageRouter:
    """Ordered handlers, first match wins, with before/after middleware.

    Safe to read from many threads while another thread replaces handlers:
    the handler list is swapped, never mutated in place. With many handlers, a
    keyword index (:mod:`kf_plugin.matching`) skips those whose required
    keywords are not in the text — same results, a cost that barely grows.
    """

    def __init__(self, name: str = "router"):
        self.name = name
        self._entries: Tuple[Entry, ...] = ()
        self._plan: Tuple[Tuple[Entry, ...], Optional[KeywordIndex]] = ((), None)
        self._before: Tuple[BeforeHook, ...] = ()
        self._after: Tuple[AfterHook, ...] = ()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<MessageRouter {self.name!r} with {len(self._entries)} entries>"

    # -- registration -----------------------------------------------------

    def add(self, filter: FilterLike, callback: Callback, *, name: Optional[str] = None,
            first: bool = False) -> Handler:
        """Register ``callback`` for messages that pass ``filter``.

        ``first=True`` puts it before every handler registered so far.
        """
        callback_name: str = getattr(callback, "__name__", repr(callback))
        handler = Handler(as_filter(filter), callback, name or callback_name)
        self._insert(handler, first)
        return handler

    def on(self, filter: FilterLike = ALL, *, name: Optional[str] = None,
           first: bool = False) -> Callable[[Callback], Callback]:
        """Decorator form of :meth:`add`; returns the function unchanged."""
        def register(callback: Callback) -> Callback:
            self.add(filter, callback, name=name, first=first)
            return callback
        return register

    def include(self, router: "MessageRouter", *, first: bool = False) -> None:
        """Consult ``router``'s handlers at this point of the order (its middleware too).

        :raises ValueError: when that would make a router include itself.
        """
        if router is self or self in router._routers_below():
            raise ValueError(f"including {router!r} in {self!r} would make a cycle")
        self._insert(router, first)

    def replace(self, entries: Sequence[Entry]) -> None:
        """Swap all handlers at once (used to reload rules without a gap)."""
        with self._lock:
            self._entries = tuple(entries)

    def before(self, hook: BeforeHook) -> BeforeHook:
        """Register ``hook(message)``, run before routing.

        A hook that returns something other than ``None`` answers the message
        itself and no handler runs.
        """
        with self._lock:
            self._before += (hook,)
        return hook

    def after(self, hook: AfterHook) -> AfterHook:
        """Register ``hook(message, result, handler)``, run after routing.

        Its return value replaces the result (return ``result`` to keep it);
        ``handler`` is ``None`` when nothing answered.
        """
        with self._lock:
            self._after += (hook,)
        return hook

    def _insert(self, entry: Entry, first: bool) -> None:
        with self._lock:
            self._entries = (entry,) + self._entries if first else self._entries + (entry,)

    def _routers_below(self) -> List["MessageRouter"]:
        found: List[MessageRouter] = []
        for entry in self._entries:
            if isinstance(entry, MessageRouter):
                found.append(entry)
                found.extend(entry._routers_below())
        return found

    @property
    def handlers(self) -> Tuple[Handler, ...]:
        """Every handler in the order they are tried, included routers flattened."""
        flat: List[Handler] = []
        for entry in self._entries:
            flat.extend(entry.handlers if isinstance(entry, MessageRouter) else (entry,))
        return tuple(flat)

    # -- dispatch ---------------------------------------------------------

    def _entries_for(self, message: Any) -> Iterable[Entry]:
        """The entries worth trying for ``message``, in order (the index skips hopeless ones)."""
        entries, index = self._plan
        if entries is not self._entries:
            # Built on first use after a change, so registering many handlers stays linear.
            entries = self._entries
            index = KeywordIndex(entries) if len(entries) >= INDEX_MIN_ENTRIES else None
            self._plan = (entries, index)
        return candidates(entries, index, message)

    def candidates(self, message: Any) -> Iterator[Handler]:
        """The handlers whose filter admits ``message``, in order."""
        for entry in self._entries_for(message):
            if isinstance(entry, MessageRouter):
                yield from entry.candidates(message)
            elif entry.filter(message):
                yield entry

    def dispatch_with_handler(self, message: Any, *, skip: Optional[Entry] = None) -> Match:
        """Route ``message`` and tell which handler answered (``skip``: as for :meth:`dispatch`)."""
        return Match(*self._route(message, skip))

    def dispatch(self, message: Any, *, skip: Optional[Entry] = None) -> Any:
        """Route ``message``; the first non-``None`` handler result, or ``None``.

        ``skip``: an entry already asked without an answer (see :meth:`asks_first`), not asked again.
        """
        return self._route(message, skip)[1]

    def asks_first(self, router: "MessageRouter") -> bool:
        """Whether ``router`` is asked before anything else (the first entry, and no middleware here).

        Then asking ``router`` on its own, and only if it answers nothing ``dispatch(message, skip=router)``,
        routes exactly as :meth:`dispatch` does.
        """
        return not self.has_middleware and self._entries[:1] == (router,)

    @property
    def has_middleware(self) -> bool:
        """Whether before or after hooks are registered here."""
        return bool(self._before or self._after)

    def has_more_than(self, router: "MessageRouter") -> bool:
        """Whether anything besides ``router`` could answer here (another entry, or middleware)."""
        return self.has_middleware or any(entry is not router for entry in self._entries)

    def _route(self, message: Any, skip: Optional[Entry] = None) -> Tuple[Optional[Handler], Any]:
        for before in self._before:
            early = before(message)
            if early is not None:
                return None, early
        answered: Optional[Handler] = None
        result = None
        for entry in self._entries_for(message):
            if entry is skip:
                continue
            if isinstance(entry, MessageRouter):
                answered, result = entry._route(message)
            elif entry.filter(message):
                answered, result = entry, entry.callback(message)
            if result is not None:
                break
            answered = None
        for after in self._after:
            result = after(message, result, answered)
        return answered, result
