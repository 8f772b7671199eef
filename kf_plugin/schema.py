"""The shape of a rule file, as pydantic models (strict types, no unknown keys).

The loader maps validation errors back to file lines; these models only say
what is allowed.
"""
from __future__ import annotations

import datetime as dt
import difflib
import re
from typing import Annotated, Any, Callable, Dict, FrozenSet, List, Literal, Optional, Tuple, TypeVar, Union
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Tag,
    ValidationInfo,
    field_validator,
)
from wechatpy.events import EVENT_TYPES
from wechatpy.messages import MESSAGE_TYPES

from .folding import FOLDINGS, Folding
from .hours import BusinessHours, parse_weekdays
from .messages import WECOM_EVENTS
from .queueing import (
    DEPENDS_ON,
    ContextTemplate,
    QueuePolicy,
    check_context,
    check_notice,
    check_notice_fallback,
    unused_without,
)
from .wecom.texts import WeComTexts, check_scene
from .window import ACTIONS, Quota

__all__ = ["FileModel", "RuleModel", "QueueModel", "WeComModel", "fields_at", "SUPPORTED_VERSIONS", "KNOWN_EVENTS",
           "KNOWN_MSG_TYPES", "UNION_TAGS", "parse_duration"]

SUPPORTED_VERSIONS = (1,)
KNOWN_MSG_TYPES = frozenset(MESSAGE_TYPES) | {"event"}
KNOWN_EVENTS = frozenset(EVENT_TYPES) | WECOM_EVENTS | {
    "subscribe_msg_popup_event", "subscribe_msg_change_event", "subscribe_msg_sent_event",
}
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_T = TypeVar("_T")
#: The names pydantic puts in an error's location for the form a value took (a text, or a mapping by scene):
#: no key of the file, so the loader leaves them out.
UNION_TAGS = frozenset({"<text>", "<by scene>"})


def parse_duration(text: str) -> float:
    """``"48h"``, ``"60s"``, ``"1m"``, ``"2d"`` → seconds. :raises ValueError: other text."""
    match = _DURATION.fullmatch(text)
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"{text!r} is not a duration like 48h, 60s, 1m or 2d")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _listify(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


def _known(known: FrozenSet[str], what: str) -> Callable[[str], str]:
    def check(item: str) -> str:
        if item.lower() not in known:
            close = difflib.get_close_matches(item.lower(), known, n=1)
            raise ValueError(f"unknown {what} {item!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        return item
    return check


def _non_empty(items: List[Any]) -> List[Any]:
    if not items:
        raise ValueError("must list at least one entry")
    return items


def _valid_regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regular expression: {exc}") from None
    return value


def _check_with(parse: Callable[[_T], object]) -> Callable[[_T], _T]:
    """A validator that keeps the value as written once ``parse`` accepts it."""
    def check(value: _T) -> _T:
        parse(value)
        return value
    return check


Text = Annotated[str, AfterValidator(_not_blank)]
Pattern = Annotated[str, AfterValidator(_valid_regex)]
Duration = Annotated[str, AfterValidator(_check_with(parse_duration))]
# A string or a non-empty list of strings, each checked on its own (so errors point at the entry).
_ONE_OR_MORE = BeforeValidator(_listify)
_AT_LEAST_ONE = AfterValidator(_non_empty)
MsgTypes = Annotated[List[Annotated[str, AfterValidator(_known(KNOWN_MSG_TYPES, "message type"))]], _ONE_OR_MORE,
                     _AT_LEAST_ONE]
Events = Annotated[List[Annotated[str, AfterValidator(_known(KNOWN_EVENTS, "event"))]], _ONE_OR_MORE, _AT_LEAST_ONE]
Texts = Annotated[List[Text], _ONE_OR_MORE, _AT_LEAST_ONE]
# Any of the foldings, none included: an empty list folds nothing but surrounding spaces.
Foldings = Annotated[List[Annotated[str, AfterValidator(_known(frozenset(FOLDINGS), "folding"))]], _ONE_OR_MORE]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


def _at_least_one(value: int) -> int:
    if value < 1:
        raise ValueError(f"must be a whole number of messages, at least 1, not {value}")
    return value


class RuleModel(_Model):
    name: Text
    enabled: bool = True
    msg_type: Optional[MsgTypes] = None
    keywords: Optional[Texts] = None
    match: Literal["contains", "exact", "prefix"] = "contains"
    regex: Optional[Pattern] = None
    event: Optional[Events] = None
    event_key: Optional[Text] = None
    event_key_regex: Optional[Pattern] = None
    users: Optional[Texts] = None
    channel: Optional[Literal["oa", "wecom"]] = None
    kf_account: Optional[Text] = None
    reply: Optional[Text] = None
    require_online: bool = False
    fallback_to_pool: bool = False
    handoff: Literal["transfer", "session"] = "transfer"
    notice: Optional[Text] = None
    servicer: Optional[Text] = None
    after_unanswered: Optional[Annotated[int, AfterValidator(_at_least_one)]] = None


def _count(value: Any) -> Optional[int]:
    """``"unlimited"`` → ``None`` (no limit); a whole number of at least 1 as it is."""
    if value == "unlimited":
        return None
    if type(value) is int and value >= 1:
        return value
    raise ValueError(f"must be a whole number of messages (at least 1) or unlimited, not {value!r}")


def _date(value: Any) -> dt.date:
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    raise ValueError(f"{value!r} is not a date like 2026-10-01")


class QuotaModel(_Model):
    count: Annotated[Optional[int], BeforeValidator(_count)]
    within: Duration

    def to_quota(self) -> Quota:
        return Quota(self.count, parse_duration(self.within))


class QuotasModel(_Model):
    message: Optional[QuotaModel] = None
    click: Optional[QuotaModel] = None
    follow: Optional[QuotaModel] = None
    scan: Optional[QuotaModel] = None
    payment: Optional[QuotaModel] = None

    def to_quotas(self) -> Dict[str, Quota]:
        return {action: getattr(self, action).to_quota() for action in ACTIONS if getattr(self, action) is not None}


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown timezone {value!r} (use an IANA name like Asia/Shanghai)") from None
    return value


def _clock_time(value: str) -> str:
    if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d|24:00", value):
        raise ValueError(f"{value!r} is not a time like \"09:00\"")
    return value


class BusinessHoursModel(_Model):
    timezone: Annotated[str, AfterValidator(_timezone)] = "Asia/Shanghai"
    weekdays: Annotated[List[str], BeforeValidator(_listify), AfterValidator(_check_with(parse_weekdays))] = ["mon-fri"]
    open: Annotated[str, AfterValidator(_clock_time)]
    close: Annotated[str, AfterValidator(_clock_time)]
    closed_dates: List[Annotated[Any, AfterValidator(_date)]] = []
    closed_text: Optional[Text] = None

    def to_hours(self) -> BusinessHours:
        """:raises ValueError: unknown timezone or a malformed closed date."""
        return BusinessHours.parse(self.timezone, self.weekdays, self.open, self.close, self.closed_dates,
                                   self.closed_text)


class QueueModel(_Model):
    while_queued: Literal["quiet", "bot"] = "quiet"
    notice: Optional[Annotated[Text, AfterValidator(_check_with(check_notice))]] = None
    notice_fallback: Optional[Annotated[Text, AfterValidator(_check_with(check_notice_fallback))]] = None
    notice_every: Optional[Duration] = None
    cancel: Optional[Texts] = None
    cancel_text: Optional[Text] = None
    timeout: Optional[Duration] = None
    timeout_text: Optional[Text] = None

    @field_validator(*DEPENDS_ON)
    @classmethod
    def _used(cls, value: Optional[str], info: ValidationInfo) -> Optional[str]:
        """A setting that does nothing alone is a mistake (a misspelt key beside it, say): refuse it."""
        assert info.field_name is not None
        needed = DEPENDS_ON[info.field_name]
        # A needed key missing from data failed its own validation and is reported already.
        if value is not None and all(info.data.get(name, "invalid") is None for name in needed):
            raise ValueError(unused_without(info.field_name))
        return value

    def to_policy(self, folding: Folding) -> QueuePolicy:
        """The policy this section describes, its durations in seconds, its cancel words folded by ``folding``."""
        return QueuePolicy(
            quiet=self.while_queued == "quiet", notice=self.notice, notice_fallback=self.notice_fallback,
            notice_every=parse_duration(self.notice_every) if self.notice_every else QueuePolicy.notice_every,
            cancel=tuple(self.cancel or ()), cancel_text=self.cancel_text,
            timeout=parse_duration(self.timeout) if self.timeout else None, timeout_text=self.timeout_text,
            folding=folding)


def _welcome_form(value: Any) -> Optional[str]:
    return "<text>" if isinstance(value, str) else "<by scene>" if isinstance(value, dict) else None


Scene = Annotated[str, AfterValidator(check_scene)]
Welcome = Annotated[Union[Annotated[Text, Tag("<text>")], Annotated[Dict[Scene, Text], Tag("<by scene>")]],
                    Discriminator(_welcome_form, custom_error_type="welcome_form",
                                  custom_error_message="must be a text, or a mapping of scene to text")]


class WeComModel(_Model):
    """The ``wecom:`` section: what 微信客服 sends with an event's code (see :mod:`kf_plugin.wecom.texts`)."""

    welcome_text: Optional[Welcome] = None
    queue_text: Optional[Text] = None
    taken_text: Optional[Text] = None
    end_text: Optional[Text] = None

    def to_texts(self) -> WeComTexts:
        return WeComTexts(self.welcome_text, self.queue_text, self.taken_text, self.end_text)


class FileModel(_Model):
    version: int
    fallback_text: Optional[Text] = None
    handoff_text: Optional[Text] = None
    unknown_users: Literal["attempt", "refuse"] = "attempt"
    quotas: Optional[QuotasModel] = None
    business_hours: Optional[BusinessHoursModel] = None
    queue: Optional[QueueModel] = None
    context: Optional[Annotated[Text, AfterValidator(_check_with(check_context))]] = None
    wecom: Optional[WeComModel] = None
    folding: Foldings = list(FOLDINGS)
    rules: List[Any]

    @field_validator("version")
    @classmethod
    def _supported(cls, value: int) -> int:
        if value not in SUPPORTED_VERSIONS:
            raise ValueError(f"unsupported version {value}; this kf_plugin reads version "
                             f"{', '.join(map(str, SUPPORTED_VERSIONS))}")
        return value

    def to_context(self) -> Optional[ContextTemplate]:
        return ContextTemplate(self.context) if self.context is not None else None


def fields_at(path: Tuple[Union[str, int], ...]) -> frozenset:
    """The keys allowed in the mapping at ``path`` of the file (for did-you-mean hints)."""
    if len(path) >= 2 and path[0] == "rules":
        return frozenset(RuleModel.model_fields)
    if path[:1] == ("business_hours",):
        return frozenset(BusinessHoursModel.model_fields)
    if path[:1] == ("queue",):
        return frozenset(QueueModel.model_fields)
    if path[:1] == ("wecom",):
        return frozenset(WeComModel.model_fields)
    if path[:1] == ("quotas",):
        return frozenset(QuotaModel.model_fields if len(path) >= 2 else QuotasModel.model_fields)
    return frozenset(FileModel.model_fields)
