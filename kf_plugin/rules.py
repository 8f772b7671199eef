"""Rules: declarative conditions plus an action (transfer or text reply).

The YAML loader builds these; Python users build the same objects directly::

    Rule.build("ask-for-human", keywords=["人工", "客服"])          # also matches 轉人工 for 转人工
    Rule.build("exact-script", keywords="转人工", folding=["width", "case"])   # Traditional text does not match
    Rule.build("vip-menu", event="CLICK", event_key="CONTACT_VIP", kf_account="vip1@gh_example")
    Rule.build("stuck", after_unanswered=3)   # a trigger: the 3rd message in a row nothing answered
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
)

from wechatpy.replies import BaseReply, TextReply

from .filters import (
    NOTHING,
    Channel,
    Event,
    EventKey,
    EventKeyRegex,
    Filter,
    Keyword,
    MsgType,
    Regex,
    Users,
)
from .folding import FULL, Folding, FoldingLike
from .hours import BusinessHours
from .messages import TEXT_KINDS, channel_of
from .queueing import ContextTemplate, QueuePolicy
from .replies import ServicerTransfer, TransferReply
from .router import Handler, MessageRouter
from .wecom.texts import WeComTexts
from .window import Quota

__all__ = ["Transfer", "Reply", "Rule", "RuleSet", "build_filter", "rule_of"]

Names = Union[str, Sequence[str]]
HANDOFF_MODES = ("transfer", "session")
DEFAULT_FALLBACK_TEXT = "客服暂时不在线，请稍后再试。"
DEFAULT_HANDOFF_TEXT = "正在为您接入人工客服，请稍候。"


@dataclass(frozen=True)
class Transfer:
    """Hand the user to customer service, to ``kf_account`` when given.

    ``require_online``: hand off only if an agent (the designated one, when
    set) is online, else answer the fallback text. ``fallback_to_pool``: the
    designated agent is offline → any online agent. ``session``: open a kf
    session with the least busy online agent (``kfsession/create``) and answer
    with a text — the reliable hand-off for event triggers. ``notice``: a
    customer-service text sent to the user right after the hand-off.

    A 微信客服 customer is moved with ``service_state/trans`` instead: to
    ``servicer`` (a WeCom userid) when given, else to the pool; when the servicer
    cannot take them, ``fallback_to_pool`` sends them to the pool, else the
    fallback text answers. The Official Account's options (``kf_account``,
    ``require_online``, ``session``, ``notice``) do not apply there.
    """

    kf_account: Optional[str] = None
    require_online: bool = False
    fallback_to_pool: bool = False
    session: bool = False
    notice: Optional[str] = None
    servicer: Optional[str] = None

    @property
    def needs_agents(self) -> bool:
        """Whether handing off depends on who is online (on the Official Account)."""
        return self.require_online or self._falls_back or self.session

    @property
    def _falls_back(self) -> bool:
        return self.fallback_to_pool and self.kf_account is not None

    @property
    def api_options(self) -> Tuple[str, ...]:
        """The options (as the rule file spells them) that only work with the WeChat API."""
        return tuple(name for name, on in (("require_online", self.require_online),
                                           ("fallback_to_pool", self._falls_back),
                                           ("handoff: session", self.session), ("notice", bool(self.notice))) if on)

    def respond(self, message: Any) -> BaseReply:
        """The plain transfer reply (what the rule answers when nothing is known of the agents); for a
        微信客服 customer, the move to the servicer or the pool."""
        if channel_of(message) == "wecom":
            return ServicerTransfer(self.servicer, to_pool=self.fallback_to_pool or not self.servicer,
                                    message=message)
        return TransferReply(kf_account=self.kf_account, message=message)

    def __str__(self) -> str:
        how = "open a session with" if self.session else "transfer to"
        text = f"{how} {self.kf_account}" if self.kf_account else f"{how} customer service"
        options = [name for name, on in (("if online", self.require_online), ("else any agent", self.fallback_to_pool),
                                         ("then notify", bool(self.notice))) if on]
        if self.servicer:
            options.append(f"on 微信客服 servicer {self.servicer}")
        return text + (f" ({', '.join(options)})" if options else "")


@dataclass(frozen=True)
class Reply:
    """Answer with a plain text instead of a transfer."""

    text: str

    def respond(self, message: Any) -> BaseReply:
        return TextReply(content=self.text, message=message)

    def __str__(self) -> str:
        return f"reply {self.text!r}"


Action = Union[Transfer, Reply]


def _action(kf_account: Optional[str], reply: Optional[str], require_online: bool, fallback_to_pool: bool,
            handoff: str, notice: Optional[str], servicer: Optional[str]) -> Action:
    """The action the options of :meth:`Rule.build` describe. :raises ValueError: options that contradict."""
    if handoff not in HANDOFF_MODES:
        raise ValueError(f"handoff must be one of {', '.join(HANDOFF_MODES)}, not {handoff!r}")
    if reply is not None:
        clashing = [key for key, value in (("kf_account", kf_account), ("require_online", require_online),
                                           ("fallback_to_pool", fallback_to_pool), ("notice", notice),
                                           ("handoff", handoff != "transfer"), ("servicer", servicer)) if value]
        if clashing:
            raise ValueError(f"a rule either replies with a text or hands off, not both: "
                             f"reply does not go with {', '.join(clashing)}")
        return Reply(reply)
    if fallback_to_pool and kf_account is None and servicer is None:
        raise ValueError("fallback_to_pool needs a kf_account or a servicer to fall back from")
    return Transfer(kf_account, require_online, fallback_to_pool, handoff == "session", notice, servicer)


def _as_tuple(value: Optional[Names]) -> Tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def build_filter(*, msg_type: Optional[Names] = None, keywords: Optional[Names] = None,
                 match: str = "contains", regex: Optional[str] = None, event: Optional[Names] = None,
                 event_key: Optional[str] = None, event_key_regex: Optional[str] = None,
                 users: Optional[Names] = None, channel: Optional[str] = None,
                 folding: FoldingLike = FULL) -> Filter:
    """Combine rule conditions into one filter; every given condition must hold.

    ``match`` and ``folding`` say how ``keywords`` compare (see :class:`~kf_plugin.filters.Keyword`); ``regex``
    is matched against the text as sent.

    :raises ValueError: no condition given, a condition is invalid (bad regex,
        blank keyword, unknown match mode or folding), or the conditions contradict each
        other (text conditions on an event, say) so the rule could never match.
    """
    folding = Folding.of(folding)
    types = {t.lower() for t in _as_tuple(msg_type)}
    wants_text = bool(keywords) or regex is not None
    wants_event = bool(_as_tuple(event)) or event_key is not None or event_key_regex is not None
    if wants_text and wants_event:
        raise ValueError("keywords/regex look at messages and event/event_key at events: "
                         "no push has both, so this rule could never match")
    if types and wants_text and not types & TEXT_KINDS:
        raise ValueError(f"keywords/regex need msg_type text or voice, not {', '.join(sorted(types))}")
    if types and wants_event and "event" not in types:
        raise ValueError(f"event conditions need msg_type event, not {', '.join(sorted(types))}")

    parts: List[Filter] = []
    if types:
        parts.append(MsgType(*_as_tuple(msg_type)))
    if _as_tuple(event):
        parts.append(Event(*_as_tuple(event)))
    if event_key is not None:
        parts.append(EventKey(event_key))
    if event_key_regex is not None:
        parts.append(EventKeyRegex(event_key_regex))
    if users is not None:
        parts.append(Users(*_as_tuple(users)))
    if keywords:
        parts.append(Keyword(*_as_tuple(keywords), match=match, folding=folding))
    if regex is not None:
        parts.append(Regex(regex))
    if channel is not None:   # alone it is no condition: it narrows the others to one channel
        checked = Channel(channel)
        if not parts:
            raise ValueError("channel narrows a rule's conditions to one channel; give the conditions too")
        parts.append(checked)
    if not parts:
        raise ValueError("a rule needs at least one condition "
                         "(msg_type, keywords, regex, event, event_key, event_key_regex or users)")
    combined = parts[0]
    for part in parts[1:]:
        combined = combined & part
    return combined


@dataclass(frozen=True)
class Rule:
    """A named rule: when :attr:`filter` holds, :attr:`action` answers.

    :attr:`origin` says where the rule was written (``rules.yaml:12``), if known. A rule with
    :attr:`after_unanswered` is a trigger instead: it matches no push (its filter is :data:`NOTHING`) and acts
    on the user's ``after_unanswered``-th message in a row that the bot's handlers left unanswered.

    :raises ValueError: ``after_unanswered`` is not a whole number of at least 1, or comes with a filter; or
        a rule has neither.
    """

    name: str
    filter: Filter = NOTHING
    action: Action = field(default_factory=Transfer)
    enabled: bool = True
    origin: Optional[str] = None
    after_unanswered: Optional[int] = None

    def __post_init__(self) -> None:
        count = self.after_unanswered
        if count is None:
            if self.filter is NOTHING:
                raise ValueError(f"rule {self.name!r} needs a filter, or after_unanswered")
            return
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"after_unanswered must be a whole number of at least 1, not {count!r}")
        if self.filter is not NOTHING:
            raise ValueError(f"after_unanswered cannot be combined with a filter ({self.filter!r}): "
                             "it is a trigger of its own, not a condition on a push")

    @classmethod
    def build(cls, name: str, *, kf_account: Optional[str] = None, reply: Optional[str] = None,
              require_online: bool = False, fallback_to_pool: bool = False, handoff: str = "transfer",
              notice: Optional[str] = None, servicer: Optional[str] = None, enabled: bool = True,
              origin: Optional[str] = None, after_unanswered: Optional[int] = None, folding: FoldingLike = FULL,
              **conditions: Any) -> "Rule":
        """Build a rule from the same keys as the YAML file.

        ``reply`` answers with that text instead of handing off. Otherwise the
        options of :class:`Transfer` apply; ``handoff`` is ``transfer`` (the
        passive reply, default) or ``session``. Conditions are those of
        :func:`build_filter`, or instead ``after_unanswered`` (see :class:`Rule`).
        ``folding``: how keywords compare, the file's ``folding`` setting (every folding by default).

        :raises ValueError: bad conditions, options that contradict each other,
            an unknown folding, or ``after_unanswered`` with any condition.
        """
        action = _action(kf_account, reply, require_online, fallback_to_pool, handoff, notice, servicer)
        folding = Folding.of(folding)
        if after_unanswered is None:
            return cls(name, build_filter(folding=folding, **conditions), action, enabled, origin)
        given = [key for key, value in conditions.items() if value is not None]
        if given:
            raise ValueError(f"after_unanswered cannot be combined with {', '.join(given)}: "
                             "it is a trigger of its own, not a condition on a push")
        return cls(name, NOTHING, action, enabled, origin, after_unanswered)

    def __call__(self, message: Any) -> BaseReply:
        return self.action.respond(message)

    def as_handler(self, respond: Optional[Callable[["Rule", Any], Any]] = None) -> Handler:
        """This rule as a router handler; ``respond(rule, message)`` replaces the plain action."""
        return Handler(self.filter, self if respond is None else _Bound(self, respond), self.name)


@dataclass(frozen=True)
class _Bound:
    rule: Rule
    respond: Callable[[Rule, Any], Any]

    def __call__(self, message: Any) -> Any:
        return self.respond(self.rule, message)


def rule_of(handler: Optional[Handler]) -> Optional[Rule]:
    """The rule ``handler`` answers for (made by :meth:`Rule.as_handler`), or ``None``."""
    callback = handler.callback if handler is not None else None
    if isinstance(callback, _Bound):
        return callback.rule
    return callback if isinstance(callback, Rule) else None


@dataclass(frozen=True)
class RuleSet:
    """The rules of one file (or built in Python), in order, with the file's settings.

    ``fallback_text``: what a rule answers when it cannot hand off.
    ``handoff_text``: the answer to a session hand-off. ``quotas`` and
    ``unknown_users``: the 48-hour window (see :mod:`kf_plugin.window`).
    ``business_hours``: when hand-offs are taken. ``queue``: what happens while a
    user waits for a human. ``context``: the text shown to the agent. ``wecom``: the
    texts 微信客服 sends with an event's code (welcome, pool, taken, end). ``folding``:
    the file's ``folding`` setting, which the loader builds its rules' keywords
    with (rules built in Python carry their own, ``Rule.build(..., folding=…)``);
    ``kf-plugin route`` shows a message's text folded so.

    :raises ValueError: two rules share a name, or two active triggers the same count.
    """

    rules: Tuple[Rule, ...] = ()
    fallback_text: Optional[str] = None
    source: Optional[str] = None
    handoff_text: Optional[str] = None
    quotas: Mapping[str, Quota] = field(default_factory=dict)
    unknown_users: str = "attempt"
    business_hours: Optional[BusinessHours] = None
    queue: QueuePolicy = field(default_factory=QueuePolicy)
    context: Optional[ContextTemplate] = None
    wecom: WeComTexts = field(default_factory=WeComTexts)
    folding: Folding = FULL

    def __post_init__(self) -> None:
        object.__setattr__(self, "folding", Folding.of(self.folding))  # a list of names is a Folding too
        seen = set()
        for rule in self.rules:
            if rule.name in seen:
                raise ValueError(f"two rules are named {rule.name!r}")
            seen.add(rule.name)
        # Two triggers at one count could not both act: refuse rather than let the order decide unseen.
        counts: Dict[int, str] = {}
        for rule in self.active:
            count = rule.after_unanswered
            if count is not None and count in counts:
                raise ValueError(f"rules {counts[count]!r} and {rule.name!r} both act after {count} unanswered "
                                 "messages; only one can")
            if count is not None:
                counts[count] = rule.name

    @classmethod
    def of(cls, rules: Iterable[Rule], **kwargs: Any) -> "RuleSet":
        return cls(tuple(rules), **kwargs)

    @property
    def active(self) -> Tuple[Rule, ...]:
        return tuple(rule for rule in self.rules if rule.enabled)

    @property
    def needs_agents(self) -> bool:
        """Whether any active rule depends on who is online."""
        return any(isinstance(r.action, Transfer) and r.action.needs_agents for r in self.active)

    def needing_api(self) -> List[Tuple[Rule, Tuple[str, ...]]]:
        """The active rules that only work with the WeChat API, each with the options that need it."""
        return [(r, r.action.api_options) for r in self.active
                if isinstance(r.action, Transfer) and r.action.api_options]

    @property
    def unanswered_triggers(self) -> Tuple[Rule, ...]:
        """The active rules with ``after_unanswered``, fewest messages first."""
        triggers = [rule for rule in self.active if rule.after_unanswered is not None]
        return tuple(sorted(triggers, key=lambda rule: rule.after_unanswered or 0))

    def handlers(self, respond: Optional[Callable[[Rule, Any], Any]] = None) -> List[Handler]:
        """The active rules that match pushes, as router handlers (triggers match none, so they are left out)."""
        return [rule.as_handler(respond) for rule in self.active if rule.after_unanswered is None]

    def to_router(self, name: str = "kf rules") -> MessageRouter:
        router = MessageRouter(name)
        router.replace(self.handlers())
        return router
